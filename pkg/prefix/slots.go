package prefix

import (
	"slices"

	"github.com/openepp/openepp/pkg/endpoint"
)

// slotTable is an immutable snapshot of the endpoint ↔ slot assignment,
// replaced on change, so Match and Insert read it with one atomic load. An
// endpoint is identified by its address: a new *Endpoint for the same
// HostPort (the datastore makes one when labels change) shares the slot, and
// with it the cache history of the same model server.
type slotTable struct {
	bySlot []*endpoint.Endpoint         // latest endpoint at the slot's address; nil when free
	byEP   map[*endpoint.Endpoint]int32 // every pointer seen since the last purge: the fast path
	byAddr map[string]int32
}

// slotFor returns e's slot, assigning one on first sight of its address;
// false when the index already tracks maxSlots addresses.
func (ix *Index) slotFor(e *endpoint.Endpoint) (int32, bool) {
	if slot, ok := ix.slots.Load().byEP[e]; ok {
		return slot, true
	}
	ix.slotMu.Lock()
	defer ix.slotMu.Unlock()
	old := ix.slots.Load()
	if slot, ok := old.byEP[e]; ok {
		return slot, true
	}
	slot, known := old.byAddr[e.HostPort]
	if !known && len(ix.free) == 0 && len(old.bySlot) >= maxSlots {
		return 0, false
	}
	next := old.clone()
	switch {
	case known:
	case len(ix.free) > 0:
		slot, ix.free = ix.free[len(ix.free)-1], ix.free[:len(ix.free)-1]
	default:
		slot = int32(len(next.bySlot))
		next.bySlot = append(next.bySlot, nil)
	}
	next.bySlot[slot] = e
	next.byEP[e] = slot
	next.byAddr[e.HostPort] = slot
	ix.slots.Store(next)
	return slot, true
}

func (t *slotTable) clone() *slotTable {
	c := &slotTable{
		bySlot: slices.Grow(slices.Clone(t.bySlot), 1),
		byEP:   make(map[*endpoint.Endpoint]int32, len(t.byEP)+1),
		byAddr: make(map[string]int32, len(t.byAddr)+1),
	}
	for e, s := range t.byEP {
		c.byEP[e] = s
	}
	for a, s := range t.byAddr {
		c.byAddr[a] = s
	}
	return c
}

// Purge forgets every endpoint whose address is not among keep's and returns
// how many it forgot. It is meant to run periodically against the pool.
//
// A freed slot is reused only after the following Purge, by which time any
// Insert that looked the slot up before this Purge has finished; that Purge
// clears the slot once more in case such an Insert added entries to it
// (entries of a freed slot are never reported by Match).
func (ix *Index) Purge(keep []*endpoint.Endpoint) int {
	live := make(map[string]*endpoint.Endpoint, len(keep))
	for _, e := range keep {
		if e != nil {
			live[e.HostPort] = e
		}
	}
	ix.slotMu.Lock()
	defer ix.slotMu.Unlock()
	old := ix.slots.Load()
	var gone []int32
	for addr, slot := range old.byAddr {
		if live[addr] == nil {
			gone = append(gone, slot)
		}
	}
	if toClear := slices.Concat(gone, ix.quarantine); len(toClear) > 0 {
		ix.dropSlots(toClear)
	}
	ix.free = append(ix.free, ix.quarantine...)
	ix.quarantine = gone
	if len(gone) > 0 || old.hasStale(live) {
		ix.slots.Store(old.keep(live))
	}
	return len(gone)
}

// dropSlots removes every entry of slots, one shard at a time.
func (ix *Index) dropSlots(slots []int32) {
	for _, s := range ix.shards {
		s.mu.Lock()
		for _, slot := range slots {
			s.drop(slot)
		}
		s.table.shrink()
		s.mu.Unlock()
	}
}

// hasStale reports whether t remembers an endpoint pointer that is no longer
// the live one for its address.
func (t *slotTable) hasStale(live map[string]*endpoint.Endpoint) bool {
	for e := range t.byEP {
		if live[e.HostPort] != e {
			return true
		}
	}
	return false
}

// keep returns a copy of t restricted to the live addresses, each bound to
// its live endpoint only, so departed endpoints can be garbage collected.
func (t *slotTable) keep(live map[string]*endpoint.Endpoint) *slotTable {
	c := &slotTable{
		bySlot: make([]*endpoint.Endpoint, len(t.bySlot)),
		byEP:   make(map[*endpoint.Endpoint]int32, len(t.byAddr)),
		byAddr: make(map[string]int32, len(t.byAddr)),
	}
	for addr, slot := range t.byAddr {
		if e := live[addr]; e != nil {
			c.bySlot[slot] = e
			c.byEP[e] = slot
			c.byAddr[addr] = slot
		}
	}
	return c
}
