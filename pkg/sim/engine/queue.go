package engine

import "cmp"

// rank orders requests under the Priority policy: vLLM's (priority,
// arrival_time), with a per-engine arrival counter for the time, so ranks
// are unique and the order is deterministic. A request keeps its rank when
// it is preempted, skipped or put back after a KV transfer.
type rank struct {
	priority int
	arrival  uint64
}

func (r rank) compare(o rank) int {
	if c := cmp.Compare(r.priority, o.priority); c != 0 {
		return c
	}
	return cmp.Compare(r.arrival, o.arrival)
}

// waitQueue is the waiting queue. Under FCFS it is a deque: arrivals join
// the back, and requests put back (preempted, skipped, stopped by a full
// cache, or whose KV landed) rejoin at the front. Under Priority it is a
// binary min-heap on rank, so both pushes mean the same thing. It may hold
// cancelled slots, which the scheduler drops when it pops them.
type waitQueue struct {
	byRank bool
	fifo   deque
	heap   []ranked
}

type ranked struct {
	r    rank
	slot int32
}

func (q *waitQueue) len() int {
	if q.byRank {
		return len(q.heap)
	}
	return q.fifo.len()
}

// pushBack queues an arrival.
func (q *waitQueue) pushBack(slot int32, r rank) {
	if q.byRank {
		q.push(slot, r)
		return
	}
	q.fifo.pushBack(slot)
}

// pushFront puts back a request that was queued before.
func (q *waitQueue) pushFront(slot int32, r rank) {
	if q.byRank {
		q.push(slot, r)
		return
	}
	q.fifo.pushFront(slot)
}

// popFront removes and returns the next request; the caller checks len.
func (q *waitQueue) popFront() int32 {
	if !q.byRank {
		return q.fifo.popFront()
	}
	h := q.heap
	top := h[0].slot
	last := len(h) - 1
	h[0] = h[last]
	q.heap = h[:last]
	q.down(0)
	return top
}

func (q *waitQueue) push(slot int32, r rank) {
	q.heap = append(q.heap, ranked{r: r, slot: slot})
	for i := len(q.heap) - 1; i > 0; {
		parent := (i - 1) / 2
		if q.heap[parent].r.compare(q.heap[i].r) <= 0 {
			break
		}
		q.heap[parent], q.heap[i] = q.heap[i], q.heap[parent]
		i = parent
	}
}

func (q *waitQueue) down(i int) {
	h := q.heap
	for {
		least := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) && h[c].r.compare(h[least].r) < 0 {
				least = c
			}
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}
