package endpoint

// LoRAResidence is where a model server holds one LoRA adapter's weights.
type LoRAResidence struct {
	// OnGPU: the adapter occupies a GPU slot and serves at once; otherwise
	// it is only in the host (CPU) cache and must be activated first.
	OnGPU bool
	// Pinned adapters are exempt from eviction.
	Pinned bool
}

// FreeGPUAdapterSlots is how many GPU adapter slots are unoccupied (0 when
// the capacity is unknown).
func (m *Metrics) FreeGPUAdapterSlots() int {
	return max(m.MaxActiveModels-m.GPULoadedAdapters, 0)
}

// BusyGPUAdapters counts the GPU-resident adapters with requests running.
func (m *Metrics) BusyGPUAdapters() int {
	n := 0
	for name, r := range m.LoRAResidency {
		if _, running := m.ActiveModels[name]; r.OnGPU && running {
			n++
		}
	}
	return n
}

// HasIdleGPUAdapter reports whether an unpinned GPU-resident adapter has no
// request running, so loading another adapter evicts one nobody waits on.
func (m *Metrics) HasIdleGPUAdapter() bool {
	for name, r := range m.LoRAResidency {
		if _, running := m.ActiveModels[name]; r.OnGPU && !r.Pinned && !running {
			return true
		}
	}
	return false
}
