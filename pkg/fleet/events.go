package fleet

import (
	"container/heap"
	"time"
)

// eventKind says what happens at an event.
type eventKind uint8

const (
	evArrival        eventKind = iota // the next request arrives
	evScrape                          // the scraper refreshes one server's metrics
	evEngine                          // one engine's iteration ends (or it wakes)
	evTimeout                         // a client gives up on a request
	evExpire                          // a held request reaches the flow-control TTL
	evPrefillTimeout                  // a decode sidecar stops waiting for a remote prefill
	evBatch                           // a batching window closes (batch.go; server: the replica)
	evEvict                           // a revocation reaches the request's server (evict.go)
	evRecheck                         // flow control looks again after an eviction's grace (evict.go; server: the replica)
	evRetry                           // a client sends an evicted request again (retry.go)
)

// event is one entry of the virtual-time queue. seq orders events at the
// same instant by insertion, which keeps runs deterministic.
type event struct {
	at      time.Duration
	seq     uint64
	kind    eventKind
	server  int32
	version uint32 // evEngine: stale unless equal to the server's version
	id      uint64 // evTimeout, evExpire, evPrefillTimeout, evEvict, evRetry: the request
}

// eventQueue is a min-heap of events by (at, seq).
type eventQueue struct {
	items []event
	seq   uint64
}

func (q *eventQueue) Len() int { return len(q.items) }

func (q *eventQueue) Less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (q *eventQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }

// Push and Pop implement heap.Interface; use push and pop.
func (q *eventQueue) Push(x any) { q.items = append(q.items, x.(event)) }

func (q *eventQueue) Pop() any {
	n := len(q.items) - 1
	e := q.items[n]
	q.items = q.items[:n]
	return e
}

// push schedules e, stamping its sequence number.
func (q *eventQueue) push(e event) {
	q.seq++
	e.seq = q.seq
	heap.Push(q, e)
}

// pop removes and returns the earliest event; the queue must not be empty.
func (q *eventQueue) pop() event { return heap.Pop(q).(event) }
