package engine

import (
	"slices"
	"strings"
	"time"
)

// noLoRA is the adapter index of requests for the base model.
const noLoRA = -1

// tier is where an adapter's weights are, as in vLLM: loading reads them
// from disk into the host (CPU) cache, activating copies them from there
// into a GPU slot. The GPU set is a subset of the host set.
type tier uint8

const (
	onDisk tier = iota // not resident
	onHost             // in the host cache only
	onGPU              // in a GPU slot (and in the host cache)
)

// adapters tracks LoRA adapters by small integer index: their names, cache
// roots, where they are resident, and how many running and waiting requests
// use each.
type adapters struct {
	maxSlots int // GPU slots (MaxLoRAs)
	maxHost  int // host cache capacity (MaxCPULoRAs)
	names    []string
	roots    []uint64
	index    map[string]int32
	running  []int32 // running requests per adapter
	waiting  []int32 // waiting requests per adapter
	lastUsed []uint64
	tier     []tier
	pinned   []bool
	// host holds every resident adapter, slots the GPU ones; both keep
	// insertion order with in-place replacement, which breaks LRU ties.
	host      []int32
	slots     []int32
	numPinned int
	loads     uint64 // adapters moved into a slot to admit a request
	// load and activate are the transitions paid for, by iterations and
	// by LoadLoRA.
	load, activate transitionCounter
	// busyUntil is when the last LoadLoRA finishes: no iteration starts
	// before it.
	busyUntil time.Duration
}

// transitionCounter accumulates the simulated durations of one transition.
type transitionCounter struct {
	count uint64
	total time.Duration
}

func (t *transitionCounter) add(n int, each time.Duration) {
	t.count += uint64(n)
	t.total += time.Duration(n) * each
}

func (t transitionCounter) stats() TransitionStats {
	return TransitionStats{Count: t.count, Seconds: t.total.Seconds()}
}

// newAdapters sizes the tiers from cfg and makes its pinned adapters
// resident in both. Startup loads take no simulated time, so they are not
// counted as transitions.
func newAdapters(cfg Config) *adapters {
	a := &adapters{maxSlots: cfg.MaxLoRAs, maxHost: cfg.MaxCPULoRAs, index: make(map[string]int32)}
	if a.maxHost == 0 || a.maxSlots == 0 {
		a.maxHost = a.maxSlots // no slots: LoRA is off, nothing is cached
	}
	for _, name := range cfg.PinnedLoRAs {
		i := a.intern(name, cfg.Model)
		a.pinned[i] = true
		a.numPinned++
		a.host = append(a.host, i)
		a.slots = append(a.slots, i)
		a.tier[i] = onGPU
	}
	return a
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
	a.tier = append(a.tier, onDisk)
	a.pinned = append(a.pinned, false)
	return i
}

// slotless reports whether adapter name can never get a GPU slot: pinned
// adapters hold them all.
func (a *adapters) slotless(name string) bool {
	if a.numPinned < a.maxSlots {
		return false
	}
	i, ok := a.index[name]
	return !ok || !a.pinned[i]
}

// acquire puts adapter i in a GPU slot for a request about to start at
// iteration stamp. It returns ok=false when every slot holds an adapter that
// is pinned or that running requests still use; loaded when the adapter had
// to be read from disk into the host cache first, activated when it had to
// be copied into a slot. The slot's previous holder stays in the host cache.
func (a *adapters) acquire(i int32, stamp uint64) (ok, loaded, activated bool) {
	a.lastUsed[i] = stamp
	if a.tier[i] == onGPU {
		return true, false, false
	}
	slot := len(a.slots)
	if slot == a.maxSlots {
		slot = a.lru(a.slots, func(j int32) bool { return a.running[j] == 0 && !a.pinned[j] })
		if slot < 0 {
			return false, false, false
		}
		a.tier[a.slots[slot]] = onHost
	}
	loaded = a.tier[i] == onDisk
	if loaded {
		a.cache(i)
	}
	if slot == len(a.slots) {
		a.slots = append(a.slots, i)
	} else {
		a.slots[slot] = i
	}
	a.tier[i] = onGPU
	a.loads++
	return true, loaded, true
}

// cache puts adapter i in the host cache, evicting the least recently used
// adapter that is neither on the GPU nor pinned when it is full. There is
// always one: the cache is at least as large as the GPU slots, and acquire
// frees a slot before it calls cache.
func (a *adapters) cache(i int32) {
	a.tier[i] = onHost
	if len(a.host) < a.maxHost {
		a.host = append(a.host, i)
		return
	}
	v := a.lru(a.host, func(j int32) bool { return a.tier[j] == onHost && !a.pinned[j] })
	a.tier[a.host[v]] = onDisk
	a.host[v] = i
}

// lru returns the position in list of the least recently used adapter for
// which evictable holds, the first on ties, or -1.
func (a *adapters) lru(list []int32, evictable func(int32) bool) int {
	victim := -1
	for s, j := range list {
		if evictable(j) && (victim < 0 || a.lastUsed[j] < a.lastUsed[list[victim]]) {
			victim = s
		}
	}
	return victim
}

// preload reads adapters into the host cache while it has room, evicting
// nothing, and returns how many it loaded.
func (a *adapters) preload(names []string, model string) int {
	n := 0
	for _, name := range names {
		if len(a.host) >= a.maxHost {
			break
		}
		if name == "" {
			continue
		}
		if i := a.intern(name, model); a.tier[i] == onDisk {
			a.tier[i] = onHost
			a.host = append(a.host, i)
			n++
		}
	}
	return n
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

// resident returns the sorted names of adapters in GPU slots.
func (a *adapters) resident() []string {
	out := make([]string, 0, len(a.slots))
	for _, i := range a.slots {
		out = append(out, a.names[i])
	}
	slices.Sort(out)
	return out
}

// residency returns every adapter in the host cache, sorted by name.
func (a *adapters) residency() []LoRAState {
	if len(a.host) == 0 {
		return nil
	}
	out := make([]LoRAState, 0, len(a.host))
	for _, i := range a.host {
		out = append(out, LoRAState{Name: a.names[i], OnGPU: a.tier[i] == onGPU, Pinned: a.pinned[i]})
	}
	slices.SortFunc(out, func(x, y LoRAState) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// PreloadLoRAs reads the named adapters into the host cache, in order,
// while it has room (vLLM loads its --lora-modules at startup); it evicts
// nothing, takes no simulated time and counts no transition. It is meant
// for an engine that has not started; adapters already resident are
// skipped. It returns how many adapters it loaded (none when LoRA is off).
func (e *Engine) PreloadLoRAs(names []string) int {
	return e.lora.preload(names, e.cfg.Model)
}

// evictableHost reports whether the host cache can take one more adapter:
// it has room, or holds one that is on the host only and not pinned.
func (a *adapters) evictableHost() bool {
	return len(a.host) < a.maxHost || a.lru(a.host, func(j int32) bool { return a.tier[j] == onHost && !a.pinned[j] }) >= 0
}

// drop makes adapter i resident nowhere and unpins it.
func (a *adapters) drop(i int32) {
	if a.pinned[i] {
		a.pinned[i] = false
		a.numPinned--
	}
	a.tier[i] = onDisk
	a.host = slices.DeleteFunc(a.host, func(j int32) bool { return j == i })
	a.slots = slices.DeleteFunc(a.slots, func(j int32) bool { return j == i })
}

// LoadLoRA reads adapter name into the host cache at time now, as vLLM's
// /v1/load_lora_adapter does, evicting the least recently used adapter that
// is on the host only and not pinned when the cache is full. vLLM loads
// between iterations, so the load takes LoRALoadDelay after the iteration
// in flight during which no iteration starts; it counts as a load
// transition. It reports false, changing nothing, when LoRA is off, when
// the adapter is already resident, or when every cached adapter is on the
// GPU or pinned (the adapter then loads when a request first uses it).
func (e *Engine) LoadLoRA(name string, now time.Duration) bool {
	a := e.lora
	if a.maxSlots == 0 || name == "" {
		return false
	}
	if i, ok := a.index[name]; (ok && a.tier[i] != onDisk) || !a.evictableHost() {
		return false
	}
	e.advance(now)
	i := a.intern(name, e.cfg.Model)
	a.lastUsed[i] = e.stamp
	a.cache(i)
	from := max(e.now, a.busyUntil)
	if e.busy {
		from = max(from, e.stepEnd)
	}
	a.busyUntil = from + e.cfg.LoRALoadDelay
	a.load.add(1, e.cfg.LoRALoadDelay)
	return true
}

// UnloadLoRA forgets where adapter name is resident, as vLLM's
// /v1/unload_lora_adapter does: it leaves its GPU slot and the host cache
// and is no longer pinned. Requests already running keep decoding (vLLM
// does not check them); a waiting one loads it again when it starts. It
// reports whether the adapter was resident.
func (e *Engine) UnloadLoRA(name string) bool {
	a := e.lora
	i, ok := a.index[name]
	if !ok || a.tier[i] == onDisk {
		return false
	}
	a.drop(i)
	return true
}
