package flowcontrol

import (
	"cmp"
	"container/heap"
	"slices"

	"github.com/openepp/openepp/pkg/scheduler"
)

// item is one waiting request. Every field but done is guarded by
// Controller.mu. Whoever removes a queued item (dispatcher, expiry, Stop or
// the waiter itself on cancellation) decides its outcome, under the lock;
// the first three send that decision on done, which has room for exactly
// one value, so they never block on a waiter that has gone.
type item struct {
	q    scheduler.QueuedRequest
	flow *flow
	// index is the item's position in flow.items (a heap).
	index int
	// older and newer link all waiting items in arrival order, so that TTL
	// expiry only looks at the oldest.
	older, newer *item
	queued       bool
	// done receives nil (dispatched) or the refusal.
	done chan *Error
}

// flow is one (flow ID, priority) queue: a heap ordered by its band's
// ordering policy. It exists only while it has waiting requests.
type flow struct {
	id    string
	band  *band
	items []*item
	bytes int64
}

// The heap.Interface methods; only container/heap calls them.

func (f *flow) Len() int { return len(f.items) }
func (f *flow) Less(i, j int) bool {
	return f.band.ordering.Less(&f.items[i].q, &f.items[j].q)
}
func (f *flow) Swap(i, j int) {
	f.items[i], f.items[j] = f.items[j], f.items[i]
	f.items[i].index, f.items[j].index = i, j
}
func (f *flow) Push(x any) {
	it := x.(*item)
	it.index = len(f.items)
	f.items = append(f.items, it)
}
func (f *flow) Pop() any {
	n := len(f.items) - 1
	it := f.items[n]
	f.items[n] = nil
	f.items = f.items[:n]
	return it
}

// band is one priority level. It exists only while it has waiting requests,
// so its chooser's state (whose turn it is) lasts as long as the band is
// busy.
type band struct {
	priority int
	limits   Band
	ordering scheduler.OrderingPolicy
	chooser  scheduler.FlowChooser
	// flows holds the band's flows in creation order; byID indexes them.
	flows    []*flow
	byID     map[string]*flow
	requests int64
	bytes    int64
	// heads is scratch space for next, kept to avoid an allocation per
	// dispatch.
	heads []*scheduler.QueuedRequest
}

// next returns the request the band would dispatch now: the chooser picks
// the flow, the flow's heap top is its ordering policy's first.
func (b *band) next() *item {
	b.heads = b.heads[:0]
	for _, f := range b.flows {
		b.heads = append(b.heads, &f.items[0].q)
	}
	i := b.chooser.Choose(b.heads, b.ordering)
	clear(b.heads)
	if i < 0 || i >= len(b.flows) {
		i = 0 // a misbehaving chooser must not stop the dispatcher
	}
	return b.flows[i].items[0]
}

// template returns the band configuration for priority p.
func (c *Controller) template(p int) Band {
	cfg := c.conf()
	if b, ok := cfg.Bands[p]; ok {
		return b
	}
	if p < 0 && cfg.NegativeBand != nil {
		return *cfg.NegativeBand
	}
	return cfg.DefaultBand
}

// findBand returns the live band for priority p and where it is (or would
// be) in c.active, which is sorted by priority, highest first.
func (c *Controller) findBand(p int) (*band, int) {
	i, ok := slices.BinarySearchFunc(c.active, p, func(b *band, p int) int { return cmp.Compare(p, b.priority) })
	if ok {
		return c.active[i], i
	}
	return nil, i
}

// checkCapacity refuses r if queueing it would exceed a global or band
// limit. Only waiting requests count.
func (c *Controller) checkCapacity(r Request) *Error {
	cfg := c.conf()
	if m := cfg.MaxRequests; m > 0 && c.requests+1 > m {
		return capacityError("the queue (all bands)", c.requests, m, "requests", r)
	}
	if m := cfg.MaxBytes; m > 0 && c.bytes+r.Bytes > m {
		return capacityError("the queue (all bands)", c.bytes, m, "bytes", r)
	}
	limits := c.template(r.Priority)
	var requests, bytes int64
	if b, _ := c.findBand(r.Priority); b != nil {
		requests, bytes = b.requests, b.bytes
	}
	if m := limits.MaxRequests; m > 0 && requests+1 > m {
		return capacityError(bandName(r.Priority), requests, m, "requests", r)
	}
	if m := limits.MaxBytes; m > 0 && bytes+r.Bytes > m {
		return capacityError(bandName(r.Priority), bytes, m, "bytes", r)
	}
	return nil
}

// push queues it, creating its band and flow as needed.
func (c *Controller) push(it *item) {
	b, i := c.findBand(it.q.Priority)
	if b == nil {
		t := c.template(it.q.Priority)
		b = &band{priority: it.q.Priority, limits: t, ordering: t.Ordering, byID: map[string]*flow{}}
		if b.ordering == nil {
			b.ordering = defaultOrdering
		}
		fairness := t.Fairness
		if fairness == nil {
			fairness = defaultFairness
		}
		b.chooser = fairness.NewChooser()
		c.active = slices.Insert(c.active, i, b)
	}
	f := b.byID[it.q.FlowID]
	if f == nil {
		f = &flow{id: it.q.FlowID, band: b}
		b.byID[f.id] = f
		b.flows = append(b.flows, f)
	}
	it.flow = f
	it.queued = true
	heap.Push(f, it)
	c.account(it, 1)

	it.older = c.newest
	if c.newest != nil {
		c.newest.newer = it
	} else {
		c.oldest = it
	}
	c.newest = it
	c.depth(f)
}

// remove takes it off its queue and forgets a flow or band that empties.
func (c *Controller) remove(it *item) {
	f := it.flow
	b := f.band
	heap.Remove(f, it.index)
	it.queued = false
	c.account(it, -1)

	if it.older != nil {
		it.older.newer = it.newer
	} else {
		c.oldest = it.newer
	}
	if it.newer != nil {
		it.newer.older = it.older
	} else {
		c.newest = it.older
	}
	it.older, it.newer = nil, nil
	c.depth(f)

	if len(f.items) == 0 {
		delete(b.byID, f.id)
		b.flows = slices.DeleteFunc(b.flows, func(g *flow) bool { return g == f })
	}
	if b.requests == 0 {
		if _, i := c.findBand(b.priority); i < len(c.active) && c.active[i] == b {
			c.active = slices.Delete(c.active, i, i+1)
		}
	}
}

// account adds (sign 1) or subtracts (sign -1) it from every counter.
func (c *Controller) account(it *item, sign int64) {
	n := it.q.Bytes * sign
	it.flow.bytes += n
	it.flow.band.requests += sign
	it.flow.band.bytes += n
	c.requests += sign
	c.bytes += n
	c.queued.Store(c.requests)
}

func (c *Controller) depth(f *flow) {
	if obs := c.conf().Observer; obs != nil {
		obs.Depth(f.id, f.band.priority, len(f.items), f.bytes)
	}
}
