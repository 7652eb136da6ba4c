package eviction

import (
	"container/heap"
	"sync"
	"time"
)

// Lease is one dispatched request, from dispatch until its stream ends.
type Lease struct {
	ID         string
	Priority   int
	Dispatched time.Time

	// Owned by the Tracker, under its lock.
	seq      uint64
	revoke   func()
	index    int // position in the victim heap; -1 when not in it
	revoked  bool
	ended    bool
	issuedAt time.Time
}

// Tracker holds the leases in flight and, in a heap, the revocable ones in
// revocation order. It is safe for concurrent use.
type Tracker struct {
	filter   Filter
	ordering Ordering

	mu      sync.Mutex
	victims victimHeap
	tracked int
	seq     uint64
	// onEnded is told, once per revoked lease, when its stream ends: the
	// revocation is confirmed.
	onEnded func(l *Lease, now time.Time)
}

// NewTracker returns a tracker revoking what filter allows in ordering's
// order (nil: Sheddable and PriorityThenTime).
func NewTracker(filter Filter, ordering Ordering) *Tracker {
	if filter == nil {
		filter = NewSheddable()
	}
	if ordering == nil {
		ordering = NewPriorityThenTime()
	}
	t := &Tracker{filter: filter, ordering: ordering}
	t.victims.before = ordering.Before
	return t
}

// Track records a request dispatched at now. revoke ends its exchange; it
// is called at most once, under the reclaimer's lock, so it must neither
// block nor end the lease itself (End confirms through that lock): it
// starts the end, which reaches End later.
func (t *Tracker) Track(id string, priority int, now time.Time, revoke func()) *Lease {
	l := &Lease{ID: id, Priority: priority, Dispatched: now, revoke: revoke, index: -1}
	evictable := t.filter.Evictable(l)
	t.mu.Lock()
	t.seq++
	l.seq = t.seq
	t.tracked++
	if evictable {
		heap.Push(&t.victims, l)
	}
	t.mu.Unlock()
	return l
}

// End records that l's stream ended, however it ended; a second call does
// nothing. A revoked lease's end confirms its revocation.
func (t *Tracker) End(l *Lease, now time.Time) {
	t.mu.Lock()
	if l.ended {
		t.mu.Unlock()
		return
	}
	l.ended = true
	t.tracked--
	if l.index >= 0 {
		heap.Remove(&t.victims, l.index)
	}
	confirm := l.revoked
	onEnded := t.onEnded
	t.mu.Unlock()
	if confirm && onEnded != nil {
		onEnded(l, now)
	}
}

// Len reports the leases in flight and how many of them are revocable.
func (t *Tracker) Len() (tracked, evictable int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tracked, len(t.victims.leases)
}

// next is the priority of the lease that would be revoked first.
func (t *Tracker) next() (priority int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.victims.leases) == 0 {
		return 0, false
	}
	return t.victims.leases[0].Priority, true
}

// revokeUpTo revokes up to n leases, in order, whose priority is below
// bound (the demand's priority: a decision never revokes at the priority
// it frees capacity for), and returns them.
func (t *Tracker) revokeUpTo(n, bound int, now time.Time) []*Lease {
	var out []*Lease
	t.mu.Lock()
	for len(out) < n && len(t.victims.leases) > 0 && t.victims.leases[0].Priority < bound {
		l := heap.Pop(&t.victims).(*Lease)
		l.revoked, l.issuedAt = true, now
		out = append(out, l)
	}
	t.mu.Unlock()
	for _, l := range out {
		l.revoke()
	}
	return out
}

// victimHeap orders revocable leases by the Ordering.
type victimHeap struct {
	leases []*Lease
	before func(a, b *Lease) bool
}

func (h *victimHeap) Len() int           { return len(h.leases) }
func (h *victimHeap) Less(i, j int) bool { return h.before(h.leases[i], h.leases[j]) }
func (h *victimHeap) Swap(i, j int) {
	h.leases[i], h.leases[j] = h.leases[j], h.leases[i]
	h.leases[i].index, h.leases[j].index = i, j
}
func (h *victimHeap) Push(x any) {
	l := x.(*Lease)
	l.index = len(h.leases)
	h.leases = append(h.leases, l)
}
func (h *victimHeap) Pop() any {
	n := len(h.leases) - 1
	l := h.leases[n]
	h.leases[n] = nil
	h.leases = h.leases[:n]
	l.index = -1
	return l
}
