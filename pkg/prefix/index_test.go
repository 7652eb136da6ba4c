package prefix

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
)

func TestNewIndexShards(t *testing.T) {
	t.Parallel()
	for _, n := range []int{-1, 3, 12, 128} {
		if _, err := NewIndex(IndexOptions{Shards: n}); err == nil {
			t.Errorf("Shards %d accepted", n)
		}
	}
	for _, n := range []int{0, 1, 2, 16, 64} {
		if _, err := NewIndex(IndexOptions{Shards: n}); err != nil {
			t.Errorf("Shards %d: %v", n, err)
		}
	}
}

func TestMatchLeadingBlocks(t *testing.T) {
	t.Parallel()
	h := chain("p", 6)
	tests := []struct {
		name string
		held [][]uint64 // what each endpoint was given, by Insert
		want []int
	}{
		{name: "nothing held", held: [][]uint64{nil, nil}, want: []int{0, 0}},
		{name: "whole prompt", held: [][]uint64{h, nil}, want: []int{6, 0}},
		{name: "leading part", held: [][]uint64{h[:2], h[:5]}, want: []int{2, 5}},
		{name: "first block missing stops at 0", held: [][]uint64{h[1:], nil}, want: []int{0, 0}},
		{name: "gap stops the count", held: [][]uint64{slices.Concat(h[:2], h[3:]), h[:1]}, want: []int{2, 1}},
		{name: "other prompt only", held: [][]uint64{chain("q", 6), nil}, want: []int{0, 0}},
	}
	for _, shards := range []int{1, 16} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("shards=%d/%s", shards, tc.name), func(t *testing.T) {
				t.Parallel()
				ix := mustIndex(t, shards)
				eps := newEndpoints(len(tc.held))
				for i, hs := range tc.held {
					ix.Insert(eps[i], hs, 1000)
				}
				m := ix.Match(h, 16)
				if diff := cmp.Diff(tc.want, blocksOf(m, eps)); diff != "" {
					t.Errorf("blocks (-want +got):\n%s", diff)
				}
				if m.TotalBlocks != len(h) || m.BlockSizeTokens != 16 {
					t.Errorf("TotalBlocks %d BlockSizeTokens %d, want %d 16", m.TotalBlocks, m.BlockSizeTokens, len(h))
				}
				checkInvariants(t, ix)
			})
		}
	}
}

func TestMatchEmpty(t *testing.T) {
	t.Parallel()
	ix := mustIndex(t, 0)
	ep := newEndpoints(1)[0]
	ix.Insert(ep, chain("p", 3), 10)
	for _, hs := range [][]uint64{nil, {}} {
		if m := ix.Match(hs, 16); m.Any() || m.TotalBlocks != 0 || m.Ratio(ep) != 0 {
			t.Errorf("Match(%v) = %+v, want empty", hs, m)
		}
	}
	ix.Insert(nil, chain("p", 3), 10)
	ix.Insert(ep, nil, 10)
	if ix.Len() != 3 || ix.Endpoints() != 1 {
		t.Errorf("nil endpoint or empty hashes changed the index: len %d endpoints %d", ix.Len(), ix.Endpoints())
	}
}

func TestLRUOrderAndEviction(t *testing.T) {
	t.Parallel()
	ix := mustIndex(t, 1) // one shard: exact LRU
	eps := newEndpoints(2)
	a, b := eps[0], eps[1]
	h := chain("p", 5)
	steps := []struct {
		name     string
		insert   []uint64
		capacity int
		want     []uint64 // a's LRU, most recent first
	}{
		{name: "a prompt's first block is its most recent", insert: h[:3], capacity: 3, want: []uint64{h[0], h[1], h[2]}},
		{name: "new block evicts the least recent", insert: h[3:4], capacity: 3, want: []uint64{h[3], h[0], h[1]}},
		{name: "re-inserting touches without evicting", insert: h[1:2], capacity: 3, want: []uint64{h[1], h[3], h[0]}},
		{name: "capacity shrink evicts down", insert: h[4:5], capacity: 2, want: []uint64{h[4], h[1]}},
		{name: "capacity growth keeps all", insert: h[:2], capacity: 5, want: []uint64{h[0], h[1], h[4]}},
	}
	ix.Insert(b, h, 100) // another endpoint's entries share the chains
	for _, st := range steps {
		ix.Insert(a, st.insert, st.capacity)
		if diff := cmp.Diff(st.want, lruOf(ix, a)); diff != "" {
			t.Fatalf("%s: LRU (-want +got):\n%s", st.name, diff)
		}
		checkInvariants(t, ix)
	}
	if got := lruOf(ix, b); !slices.Equal(got, h) {
		t.Errorf("endpoint b's entries changed: %v", got)
	}
}

func TestCapacityIsPerEndpoint(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 16} {
		ix := mustIndex(t, shards)
		eps := newEndpoints(3)
		caps := []int{64, 1024, 4096}
		for i, e := range eps {
			for p := range 50 {
				ix.Insert(e, chain(fmt.Sprintf("%d-%d", i, p), 100), caps[i])
			}
		}
		for i, e := range eps {
			n := len(lruOf(ix, e))
			// Sharding splits the capacity into ceil(cap/shards) per shard, so
			// the total may exceed cap by less than shards and falls short of
			// it when hashes spread unevenly.
			if n > caps[i]+shards-1 || n < caps[i]*3/4 {
				t.Errorf("shards=%d endpoint %d: %d entries for capacity %d", shards, i, n, caps[i])
			}
		}
		checkInvariants(t, ix)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	ix := mustIndex(t, 4)
	eps := newEndpoints(4)
	h := chain("p", 8)
	for _, e := range eps[:3] {
		ix.Insert(e, h, 100)
	}
	if n := ix.Purge(eps[1:2]); n != 2 {
		t.Fatalf("Purge removed %d endpoints, want 2", n)
	}
	if diff := cmp.Diff([]int{0, 8, 0, 0}, blocksOf(ix.Match(h, 16), eps)); diff != "" {
		t.Errorf("after purge (-want +got):\n%s", diff)
	}
	if ix.Len() != 8 || ix.Endpoints() != 1 {
		t.Errorf("len %d endpoints %d, want 8 and 1", ix.Len(), ix.Endpoints())
	}
	checkInvariants(t, ix)
	// Freed slots are quarantined for one purge, then reused; a reused slot
	// never shows the departed endpoint's blocks.
	ix.Insert(eps[3], h[:2], 100)
	ix.Purge(eps[1:4])
	ix.Insert(newEndpoints(5)[4], chain("q", 1), 100)
	if diff := cmp.Diff([]int{0, 8, 0, 2}, blocksOf(ix.Match(h, 16), eps)); diff != "" {
		t.Errorf("after slot reuse (-want +got):\n%s", diff)
	}
	if n := ix.Purge(nil); n != 3 || ix.Len() != 0 {
		t.Errorf("Purge(nil) removed %d, left %d entries; want 3 and 0", n, ix.Len())
	}
	checkInvariants(t, ix)
}

// TestAddressIsIdentity: a new *Endpoint for the same address (a label
// change) is the same model server, so it keeps the cache history.
func TestAddressIsIdentity(t *testing.T) {
	t.Parallel()
	ix := mustIndex(t, 0)
	old := newEndpoints(1)[0]
	relabelled := endpoint.New(endpoint.Spec{Name: old.Name, Address: old.Address, Port: old.Port, Labels: map[string]string{"role": "decode"}})
	h := chain("p", 4)
	ix.Insert(old, h[:2], 100)
	if got := ix.Match(h, 16).Blocks(relabelled); got != 2 {
		t.Errorf("relabelled endpoint matches %d blocks, want 2", got)
	}
	ix.Insert(relabelled, h, 100)
	ix.Purge([]*endpoint.Endpoint{relabelled})
	if got := ix.Match(h, 16).Blocks(relabelled); got != 4 || ix.Endpoints() != 1 {
		t.Errorf("after purge keeping the new pointer: %d blocks, %d endpoints; want 4, 1", got, ix.Endpoints())
	}
	if _, stale := ix.slots.Load().byEP[old]; stale {
		t.Error("purge kept the stale pointer")
	}
}

// refModel is the obviously correct index the real one is compared with:
// per endpoint and shard, the hashes most recent first.
type refModel struct {
	ix    *Index // for shardIndex only
	lists map[[2]int][]uint64
}

func (r refModel) insert(e int, hs []uint64, capacity int) {
	per := (capacity + len(r.ix.shards) - 1) / len(r.ix.shards)
	for i := len(hs) - 1; i >= 0; i-- {
		key := [2]int{e, r.ix.shardIndex(hs[i])}
		l := r.lists[key]
		if len(l) > per {
			l = l[:per]
		}
		if j := slices.Index(l, hs[i]); j >= 0 {
			l = slices.Delete(l, j, j+1)
		} else if len(l) >= per {
			l = l[:per-1]
		}
		r.lists[key] = slices.Insert(l, 0, hs[i])
	}
}

func (r refModel) holds(e int, h uint64) bool {
	return slices.Contains(r.lists[[2]int{e, r.ix.shardIndex(h)}], h)
}

func (r refModel) forget(e int) {
	for key := range r.lists {
		if key[0] == e {
			delete(r.lists, key)
		}
	}
}

func (r refModel) match(hs []uint64, n int) []int {
	out := make([]int, n)
	for e := range n {
		for _, h := range hs {
			if !r.holds(e, h) {
				break
			}
			out[e]++
		}
	}
	return out
}

func TestAgainstReference(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 4} {
		for _, seed := range []uint64{1, 2, 3} {
			t.Run(fmt.Sprintf("shards=%d/seed=%d", shards, seed), func(t *testing.T) {
				t.Parallel()
				ix := mustIndex(t, shards)
				compareWithReference(t, ix, refModel{ix: ix, lists: map[[2]int][]uint64{}}, seed)
			})
		}
	}
}

// compareWithReference applies random inserts and purges to ix and ref and
// compares their matches after every operation.
func compareWithReference(t *testing.T, ix *Index, ref refModel, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 9))
	eps := newEndpoints(6)
	prompts := make([][]uint64, 8)
	for i := range prompts {
		prompts[i] = chain(fmt.Sprintf("%d-%d", seed, i), 12)
	}
	for op := range 600 {
		p := prompts[r.IntN(len(prompts))]
		lo, hi := r.IntN(4), 4+r.IntN(9)
		if e := r.IntN(len(eps)); r.IntN(10) == 0 {
			ix.Purge(slices.DeleteFunc(slices.Clone(eps), func(x *endpoint.Endpoint) bool { return x == eps[e] }))
			ref.forget(e)
		} else {
			capacity := 5 + r.IntN(30)
			ix.Insert(eps[e], p[lo:hi], capacity)
			ref.insert(e, p[lo:hi], capacity)
		}
		if diff := cmp.Diff(ref.match(p, len(eps)), blocksOf(ix.Match(p, 16), eps)); diff != "" {
			t.Fatalf("op %d (-ref +index):\n%s", op, diff)
		}
		if op%25 == 0 {
			ix.Purge(eps) // forgets nobody; releases quarantined slots
			checkInvariants(t, ix)
		}
	}
	if len(ix.shards) > 1 {
		return
	}
	for e := range eps {
		if diff := cmp.Diff(ref.lists[[2]int{e, 0}], lruOf(ix, eps[e])); diff != "" {
			t.Fatalf("endpoint %d LRU (-ref +index):\n%s", e, diff)
		}
	}
}

// TestConcurrentMatchInsertPurge runs matchers, inserters and a purger at
// once; -race checks the locking, checkInvariants the result.
func TestConcurrentMatchInsertPurge(t *testing.T) {
	t.Parallel()
	ix := mustIndex(t, 4)
	eps := newEndpoints(12)
	prompts := make([][]uint64, 16)
	for i := range prompts {
		prompts[i] = chain(fmt.Sprint(i), 24)
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() { matchAndInsert(t, ix, eps, prompts, uint64(g)) })
	}
	wg.Go(func() {
		for i := range 40 {
			ix.Purge(eps[i%3:])
		}
	})
	wg.Wait()
	checkInvariants(t, ix)
}

// matchAndInsert matches random prompts and records every other one for a
// random endpoint, checking each answer is in range.
func matchAndInsert(t *testing.T, ix *Index, eps []*endpoint.Endpoint, prompts [][]uint64, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range 400 {
		p := prompts[r.IntN(len(prompts))]
		m := ix.Match(p, 16)
		for _, b := range blocksOf(m, eps) {
			if b < 0 || b > len(p) {
				t.Errorf("blocks %d outside [0, %d]", b, len(p))
			}
		}
		if i%2 == 0 {
			ix.Insert(eps[r.IntN(len(eps))], p[:1+r.IntN(len(p))], 40+r.IntN(200))
		}
	}
}

// TestMatchSamplesBeyondExactBlocks: past the first exactBlocks blocks a
// match credits an endpoint up to the last sampled block it holds (every
// sampleStride-th, and the last): a whole prompt counts whole, a shorter
// prompt with the same head is found by a longer one, and a hole between
// samples goes unseen.
func TestMatchSamplesBeyondExactBlocks(t *testing.T) {
	t.Parallel()
	const n = 1000
	h := chain("long", n)
	// 600 held: the last probe at or before block 599 is 591 (i%16 == 15).
	holed := slices.Concat(h[:300], h[301:n])
	ix := mustIndex(t, 16)
	eps := newEndpoints(5)
	ix.Insert(eps[0], h, 1<<20)
	ix.Insert(eps[1], h[:600], 1<<20)
	ix.Insert(eps[2], holed, 1<<20)
	ix.Insert(eps[3], h[:200], 1<<20)
	ix.Insert(eps[4], slices.Concat(h[:100], h[101:200]), 1<<20)
	want := []int{n, 592, n, 200, 100}
	if diff := cmp.Diff(want, blocksOf(ix.Match(h, 16), eps)); diff != "" {
		t.Errorf("blocks (-want +got):\n%s", diff)
	}
	// Exactly within exactBlocks: the hole at block 100 stops eps[4].
	if got := blocksOf(ix.Match(h[:250], 16), eps); !cmp.Equal(got, []int{250, 250, 250, 200, 100}) {
		t.Errorf("within exactBlocks: %v", got)
	}
	checkInvariants(t, ix)
}

// TestMatchProbeCount: a long prompt held by many endpoints costs about
// exactBlocks + (n − exactBlocks)/sampleStride probes, not n.
func TestMatchProbeCount(t *testing.T) {
	t.Parallel()
	var sc matchScratch
	for n, want := range map[int]int{0: 0, 10: 10, 256: 256, 257: 257, 272: 257, 273: 258, 2048: 256 + 112} {
		if got := len(sc.probesFor(n)); got != want {
			t.Errorf("probes for %d blocks: %d, want %d", n, got, want)
		}
	}
}
