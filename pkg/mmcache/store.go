package mmcache

import (
	"sync"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
)

// store holds one LRU of item hashes per endpoint, by HostPort (the
// server's cache outlives a relabelled pod's new *Endpoint). It has no
// parameters of its own, so a reloaded producer keeps it (Inherit); the
// capacity comes with each call.
type store struct {
	mu     sync.RWMutex
	caches map[string]*lru
}

func newStore() *store { return &store{caches: map[string]*lru{}} }

func (s *store) get(hostPort string) *lru {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.caches[hostPort]
}

// record makes items the most recently used of hostPort's LRU, which
// holds at most capacity items.
func (s *store) record(hostPort string, items []uint64, capacity int) {
	c := s.get(hostPort)
	if c == nil {
		s.mu.Lock()
		if c = s.caches[hostPort]; c == nil {
			c = newLRU()
			s.caches[hostPort] = c
		}
		s.mu.Unlock()
	}
	c.record(items, capacity)
}

// count returns how many of items hostPort's LRU holds.
func (s *store) count(hostPort string, items []uint64) (int, [len(request.MediaModalities)]int) {
	if c := s.get(hostPort); c != nil {
		return c.count(items)
	}
	return 0, [len(request.MediaModalities)]int{}
}

// purge forgets the endpoints not in pool and returns how many. An empty
// pool purges nothing: more likely a gap in discovery than every server
// gone.
func (s *store) purge(pool []*endpoint.Endpoint) int {
	if len(pool) == 0 {
		return 0
	}
	in := make(map[string]bool, len(pool))
	for _, e := range pool {
		in[e.HostPort] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for hp := range s.caches {
		if !in[hp] {
			delete(s.caches, hp)
			n++
		}
	}
	return n
}

// endpointUsage is one endpoint's share of the store.
type endpointUsage struct {
	key             string // the HostPort; DumpState names it
	items, capacity int
}

// usage lists every endpoint's share.
func (s *store) usage() []endpointUsage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]endpointUsage, 0, len(s.caches))
	for hp, c := range s.caches {
		c.mu.RLock()
		out = append(out, endpointUsage{key: hp, items: len(c.slot), capacity: c.capacity})
		c.mu.RUnlock()
	}
	return out
}

// none marks the end of an LRU list.
const none int32 = -1

// lru is one endpoint's items, most recently used first: a doubly linked
// list threaded through a slice by 32-bit links, with a hash index. Freed
// entries are reused; the slice keeps its high-water mark.
type lru struct {
	mu               sync.RWMutex
	slot             map[uint64]int32
	entries          []entry
	head, tail, free int32
	capacity         int
}

type entry struct {
	hash       uint64
	prev, next int32
}

func newLRU() *lru {
	return &lru{slot: map[uint64]int32{}, head: none, tail: none, free: none}
}

// count returns how many of items c holds, in all and by modality (an item
// hash's top two bits).
func (c *lru) count(items []uint64) (n int, by [len(request.MediaModalities)]int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, h := range items {
		if _, ok := c.slot[h]; ok {
			n++
			by[h>>62]++
		}
	}
	return n, by
}

func (c *lru) record(items []uint64, capacity int) {
	capacity = max(capacity, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.capacity = capacity
	for len(c.slot) > capacity { // a reload lowered the budget
		c.evict()
	}
	for _, h := range items {
		if i, ok := c.slot[h]; ok {
			c.unlink(i)
			c.pushFront(i)
			continue
		}
		if len(c.slot) >= capacity {
			c.evict()
		}
		i := c.alloc(h)
		c.pushFront(i)
		c.slot[h] = i
	}
}

func (c *lru) alloc(h uint64) int32 {
	if i := c.free; i != none {
		c.free = c.entries[i].next
		c.entries[i] = entry{hash: h}
		return i
	}
	c.entries = append(c.entries, entry{hash: h})
	return int32(len(c.entries) - 1)
}

// evict drops the least recently used item.
func (c *lru) evict() {
	i := c.tail
	if i == none {
		return
	}
	c.unlink(i)
	delete(c.slot, c.entries[i].hash)
	c.entries[i].next = c.free
	c.free = i
}

func (c *lru) unlink(i int32) {
	e := &c.entries[i]
	if e.prev != none {
		c.entries[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next != none {
		c.entries[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = none, none
}

func (c *lru) pushFront(i int32) {
	e := &c.entries[i]
	e.prev, e.next = none, c.head
	if c.head != none {
		c.entries[c.head].prev = i
	}
	c.head = i
	if c.tail == none {
		c.tail = i
	}
}
