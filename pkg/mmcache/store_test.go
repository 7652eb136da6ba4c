package mmcache

import (
	"slices"
	"testing"
)

// order returns c's items, most recently used first.
func (c *lru) order() []uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []uint64
	for i := c.head; i != none; i = c.entries[i].next {
		out = append(out, c.entries[i].hash)
	}
	return out
}

func TestLRUEvictsLeastRecentlyRouted(t *testing.T) {
	t.Parallel()
	s := newStore()
	const hp = "10.0.0.1:8000"
	s.record(hp, []uint64{1, 2, 3}, 3)
	if got := s.get(hp).order(); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Fatalf("order %v, want [3 2 1]", got)
	}
	s.record(hp, []uint64{1}, 3) // 1 is used again: 2 is now the oldest
	s.record(hp, []uint64{4}, 3)
	if got := s.get(hp).order(); !slices.Equal(got, []uint64{4, 1, 3}) {
		t.Fatalf("order %v, want [4 1 3]", got)
	}
	if n, _ := s.count(hp, []uint64{1, 2, 3, 4}); n != 3 {
		t.Errorf("holds %d of 1..4, want 3 (2 evicted)", n)
	}
	// Freed entries are reused: the list never outgrows the capacity.
	for h := range uint64(100) {
		s.record(hp, []uint64{h + 10}, 3)
	}
	if c := s.get(hp); len(c.entries) != 3 || len(c.slot) != 3 {
		t.Errorf("%d entries, %d indexed after 100 inserts at capacity 3", len(c.entries), len(c.slot))
	}
	if got := s.get(hp).order(); !slices.Equal(got, []uint64{109, 108, 107}) {
		t.Errorf("order %v, want [109 108 107]", got)
	}
	// A lower budget (a reload) applies at the endpoint's next record.
	s.record(hp, []uint64{200}, 2)
	if got := s.get(hp).order(); !slices.Equal(got, []uint64{200, 109}) {
		t.Errorf("after shrinking to 2: %v, want [200 109]", got)
	}
	// One request with more items than fit keeps its last ones.
	s.record(hp, []uint64{7, 8, 9}, 2)
	if got := s.get(hp).order(); !slices.Equal(got, []uint64{9, 8}) {
		t.Errorf("three items at capacity 2: %v, want [9 8]", got)
	}
	if n, _ := s.count("10.0.0.2:8000", []uint64{9}); n != 0 {
		t.Errorf("an unknown endpoint holds %d items", n)
	}
}

func TestStorePurgesDepartedEndpoints(t *testing.T) {
	t.Parallel()
	s := newStore()
	pool := eps(3)
	for _, e := range pool {
		s.record(e.HostPort, []uint64{1}, 10)
	}
	if n := s.purge(nil); n != 0 {
		t.Errorf("an empty pool purged %d endpoints", n)
	}
	if n := s.purge(pool[1:]); n != 1 || s.get(pool[0].HostPort) != nil || s.get(pool[1].HostPort) == nil {
		t.Errorf("purged %d; want only %s forgotten", n, pool[0].HostPort)
	}
}

func TestCapacityFromBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ mb, want int }{
		{1, 16384},
		{2048, 2048 * 16384},
		{maxCacheSizeMB, maxItemsPerServer},
	} {
		p := ProducerParams{CacheSizeInMBPerServer: tc.mb}
		if got := p.capacityItems(); got != tc.want {
			t.Errorf("%d MiB: %d items, want %d", tc.mb, got, tc.want)
		}
	}
}
