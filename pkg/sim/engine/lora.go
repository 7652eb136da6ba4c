package engine

import "slices"

// noLoRA is the adapter index of requests for the base model.
const noLoRA = -1

// adapters tracks LoRA adapters by small integer index: their names, cache
// roots, which ones occupy the MaxLoRAs GPU slots, and how many running and
// waiting requests use each.
type adapters struct {
	maxSlots int
	names    []string
	roots    []uint64
	index    map[string]int32
	running  []int32 // running requests per adapter
	waiting  []int32 // waiting requests per adapter
	lastUsed []uint64
	slots    []int32 // loaded adapters, at most maxSlots
	loads    uint64  // adapter loads so far
}

func newAdapters(maxSlots int) *adapters {
	return &adapters{maxSlots: maxSlots, index: make(map[string]int32)}
}

// intern returns the index of name, registering it on first use.
func (a *adapters) intern(name, model string) int32 {
	if i, ok := a.index[name]; ok {
		return i
	}
	i := int32(len(a.names))
	a.index[name] = i
	a.names = append(a.names, name)
	a.roots = append(a.roots, rootHash(model, name))
	a.running = append(a.running, 0)
	a.waiting = append(a.waiting, 0)
	a.lastUsed = append(a.lastUsed, 0)
	return i
}

// acquire makes adapter i resident for a request about to start at
// iteration stamp. It returns ok=false when every slot holds an adapter that
// running requests still use, and loaded=true when the adapter had to be
// loaded (which costs the iteration LoRALoadDelay).
func (a *adapters) acquire(i int32, stamp uint64) (ok, loaded bool) {
	a.lastUsed[i] = stamp
	if slices.Contains(a.slots, i) {
		return true, false
	}
	if len(a.slots) < a.maxSlots {
		a.slots = append(a.slots, i)
		a.loads++
		return true, true
	}
	victim := -1
	for s, j := range a.slots {
		if a.running[j] > 0 {
			continue
		}
		if victim < 0 || a.lastUsed[j] < a.lastUsed[a.slots[victim]] {
			victim = s
		}
	}
	if victim < 0 {
		return false, false
	}
	a.slots[victim] = i
	a.loads++
	return true, true
}

// active returns the sorted names of adapters with a nonzero count.
func (a *adapters) active(counts []int32) []string {
	var out []string
	for i, n := range counts {
		if n > 0 {
			out = append(out, a.names[i])
		}
	}
	slices.Sort(out)
	return out
}

// resident returns the sorted names of loaded adapters.
func (a *adapters) resident() []string {
	out := make([]string, 0, len(a.slots))
	for _, i := range a.slots {
		out = append(out, a.names[i])
	}
	slices.Sort(out)
	return out
}
