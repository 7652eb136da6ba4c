package prefix

import "github.com/openepp/openepp/pkg/endpoint"

// Occupancy is implemented by prefix sources that can tell how many blocks
// they believe each endpoint holds. prefix-cache-scorer uses it to place
// prompts no endpoint holds (cold requests) where the least cached state
// lives, as SGLang's cache-aware router sends them to the smallest tree.
type Occupancy interface {
	// Occupancy sets out[i] to the number of blocks eps[i] is believed to
	// hold (0 for an endpoint the source does not know). len(out) must be
	// at least len(eps).
	Occupancy(eps []*endpoint.Endpoint, out []float64)
}

var _ Occupancy = (*Producer)(nil)

// Occupancy implements Occupancy from the producer's index.
func (p *Producer) Occupancy(eps []*endpoint.Endpoint, out []float64) {
	p.index.Occupancy(eps, out)
}

// Occupancy sets out[i] to the number of blocks the index holds for eps[i]:
// the length of its LRU, bounded by its capacity. It takes each shard's read
// lock once and allocates nothing.
func (ix *Index) Occupancy(eps []*endpoint.Endpoint, out []float64) {
	snap := ix.slots.Load()
	sc := ix.scratch.Get().(*matchScratch)
	defer ix.scratch.Put(sc)
	if cap(sc.slots) < len(eps) {
		sc.slots = make([]int32, len(eps))
	}
	slots := sc.slots[:len(eps)]
	for i, e := range eps {
		out[i] = 0
		slots[i] = none
		if s, ok := snap.byAddr[e.HostPort]; ok && snap.bySlot[s] != nil {
			slots[i] = s
		}
	}
	for _, s := range ix.shards {
		s.mu.RLock()
		for i, slot := range slots {
			if slot != none && int(slot) < len(s.lists) {
				out[i] += float64(s.lists[slot].n)
			}
		}
		s.mu.RUnlock()
	}
}
