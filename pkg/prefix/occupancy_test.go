package prefix

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIndexOccupancy(t *testing.T) {
	ix, err := NewIndex(IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eps := newEndpoints(4)
	hashes := func(from, n int) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(from+i)*0x9e3779b97f4a7c15 | 1
		}
		return out
	}
	ix.Insert(eps[0], hashes(0, 100), 1000)
	ix.Insert(eps[1], hashes(0, 10), 1000)
	ix.Insert(eps[1], hashes(0, 10), 1000)  // same blocks again: no growth
	ix.Insert(eps[2], hashes(500, 300), 64) // capacity bounds it (per shard, rounded up)
	out := make([]float64, len(eps))
	ix.Occupancy(eps, out)
	if diff := cmp.Diff([]float64{100, 10}, out[:2]); diff != "" {
		t.Errorf("occupancy (-want +got):\n%s", diff)
	}
	if out[2] < 48 || out[2] > 64+DefaultShards {
		t.Errorf("endpoint 2 holds %v blocks, want about its capacity 64", out[2])
	}
	if out[3] != 0 {
		t.Errorf("unknown endpoint holds %v blocks", out[3])
	}
	ix.Purge(eps[1:])
	ix.Occupancy(eps, out)
	if out[0] != 0 {
		t.Errorf("purged endpoint still holds %v blocks", out[0])
	}
	if raceEnabled {
		return
	}
	if allocs := testing.AllocsPerRun(20, func() { ix.Occupancy(eps, out) }); allocs > 0 {
		t.Errorf("%v allocations per Occupancy, want 0", allocs)
	}
}
