package prefix

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// exportPool returns endpoints whose reported KV caches give them
// different capacities (in 16-token blocks): 100, 2,000 and 80,000 blocks
// (5,000 a shard, more than one batch), and the default for one reporting
// nothing.
func exportPool() []*endpoint.Endpoint {
	eps := newEndpoints(4)
	for i, blocks := range []int{100, 2000, 80_000} {
		eps[i].SetMetrics(&endpoint.Metrics{CacheBlockSize: 16, CacheNumBlocks: blocks})
	}
	return eps
}

// TestExportReplays: exporting a producer's index and replaying it with
// ApplyRemote into a fresh producer gives every endpoint the same blocks
// in the same order, shard by shard, in batches of at most exportChunk
// hashes labelled with the block size in use.
func TestExportReplays(t *testing.T) {
	t.Parallel()
	eps := exportPool()
	h := &scheduler.Handle{Log: logr.Discard(), Endpoints: func() []*endpoint.Endpoint { return eps }}
	params := DefaultParams()
	params.LRUCapacityPerServer = 3000
	a, b := newProducer(t, params, h), newProducer(t, params, h)
	route(a, eps, req("m", "", text("routed", 4096)), result(eps[:1], eps[3]))
	r := rand.New(rand.NewPCG(7, 7))
	shared := chain("shared", 200)
	for i := range 600 {
		e := eps[r.IntN(len(eps))]
		a.insert(e, chain(fmt.Sprint(i), 1+r.IntN(256)), 16)
		if i%10 == 0 { // blocks several endpoints hold, touched again and again
			a.insert(e, shared[:1+r.IntN(len(shared))], 16)
		}
	}
	for range 150 { // the big endpoint's lists span several batches
		a.insert(eps[2], chain(fmt.Sprint(r.Uint64()), 256), 16)
	}

	batches := 0
	a.Export(func(batch []Insertion) bool {
		batches++
		n := 0
		for _, ins := range batch {
			n += len(ins.Hashes)
			if ins.Producer != ProducerType || ins.BlockSizeTokens != 16 || len(ins.Hashes) == 0 {
				t.Fatalf("insertion %s/%d/%d hashes, want %s/16/some", ins.Producer, ins.BlockSizeTokens, len(ins.Hashes), ProducerType)
			}
		}
		if n > exportChunk {
			t.Fatalf("batch of %d hashes, want at most %d", n, exportChunk)
		}
		if applied, unknown := b.ApplyRemote(batch); applied != len(batch) || unknown != 0 {
			t.Fatalf("ApplyRemote = %d applied, %d unknown; want %d, 0", applied, unknown, len(batch))
		}
		return true
	})
	if want := a.index.Len()/exportChunk + 1; batches < want {
		t.Errorf("%d batches for %d entries, want at least %d", batches, a.index.Len(), want)
	}
	for i, e := range eps {
		want := lruOf(a.index, e)
		if len(want) == 0 {
			t.Fatalf("fixture: endpoint %d holds nothing", i)
		}
		if diff := cmp.Diff(want, lruOf(b.index, e)); diff != "" {
			t.Errorf("endpoint %d (%d blocks): replayed LRU differs (-exported +replayed):\n%s", i, len(want), diff)
		}
	}
	checkInvariants(t, b.index)
}

// TestExportStops: Export returns as soon as fn says stop, and a producer
// that never routed labels its blocks with its configured block size.
func TestExportStops(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, Params{BlockSizeTokens: 32, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 100_000}, nil)
	eps := newEndpoints(3)
	for _, e := range eps {
		pr.index.Insert(e, chain(e.Name, 5000), 100_000)
	}
	calls := 0
	pr.Export(func(batch []Insertion) bool {
		calls++
		if batch[0].BlockSizeTokens != 32 {
			t.Errorf("block size %d, want the configured 32", batch[0].BlockSizeTokens)
		}
		return false
	})
	if calls != 1 {
		t.Errorf("fn called %d times after saying stop, want once", calls)
	}
	empty := newProducer(t, DefaultParams(), nil)
	empty.Export(func([]Insertion) bool { t.Error("fn called for an empty index"); return true })

	// Before its first request, an auto-tuning producer labels blocks with
	// the size the pool reports.
	eps[0].SetMetrics(&endpoint.Metrics{CacheBlockSize: 64, CacheNumBlocks: 1000})
	tuned := newProducer(t, DefaultParams(), &scheduler.Handle{Log: logr.Discard(), Endpoints: func() []*endpoint.Endpoint { return eps[:1] }})
	tuned.index.Insert(eps[0], chain("x", 3), 100)
	tuned.Export(func(batch []Insertion) bool {
		if batch[0].BlockSizeTokens != 64 {
			t.Errorf("block size %d, want the pool's 64", batch[0].BlockSizeTokens)
		}
		return true
	})
}

// TestExportSkipsPurged: endpoints purged before or during an export are
// not exported (any more); the others are, whole.
func TestExportSkipsPurged(t *testing.T) {
	t.Parallel()
	ix, replay := mustIndex(t, 4), mustIndex(t, 4)
	eps := newEndpoints(3)
	for _, e := range eps {
		ix.Insert(e, chain(e.Name, 100), 1000)
	}
	ix.Purge(eps[1:])
	got := map[string]int{}
	ix.export("p", 16, 10, func(batch []Insertion) bool {
		for _, ins := range batch {
			got[ins.HostPort] += len(ins.Hashes)
			if ins.HostPort == eps[2].HostPort {
				replay.Insert(eps[2], ins.Hashes, 1000)
			}
		}
		ix.Purge(eps[2:])
		return true
	})
	if got[eps[0].HostPort] != 0 || got[eps[1].HostPort] != 10 || got[eps[2].HostPort] != 100 {
		t.Errorf("exported blocks by endpoint %v; want none of %s, the first batch of %s, all of %s",
			got, eps[0].HostPort, eps[1].HostPort, eps[2].HostPort)
	}
	if diff := cmp.Diff(lruOf(ix, eps[2]), lruOf(replay, eps[2])); diff != "" {
		t.Errorf("replay differs (-want +got):\n%s", diff)
	}
}

// exportMutation changes e's list in ix between two batches of an export.
type exportMutation func(ix *Index, e *endpoint.Endpoint, r *rand.Rand, copiedLast uint64)

// touch re-inserts, in turn, the entries of e's list that are the given
// numbers of places more recent than h (0: h itself), as they stand now.
func touch(ix *Index, e *endpoint.Endpoint, h uint64, places ...int) {
	lru := lruOf(ix, e) // most recent first
	at := slices.Index(lru, h)
	var hs []uint64
	for _, p := range places {
		if at >= 0 && at-p >= 0 {
			hs = append(hs, lru[at-p])
		}
	}
	for _, h := range hs {
		ix.Insert(e, []uint64{h}, exportCap)
	}
}

const exportCap = 50

var exportMutations = map[string]exportMutation{
	"insert new": func(ix *Index, e *endpoint.Endpoint, r *rand.Rand, _ uint64) {
		ix.Insert(e, chain(fmt.Sprint(r.Uint64()), 1+r.IntN(30)), exportCap)
	},
	"touch random": func(ix *Index, e *endpoint.Endpoint, r *rand.Rand, _ uint64) {
		lru := lruOf(ix, e)
		ix.Insert(e, []uint64{lru[r.IntN(len(lru))], lru[r.IntN(len(lru))]}, exportCap)
	},
	"touch last copied":           func(ix *Index, e *endpoint.Endpoint, _ *rand.Rand, h uint64) { touch(ix, e, h, 0) },
	"touch next":                  func(ix *Index, e *endpoint.Endpoint, _ *rand.Rand, h uint64) { touch(ix, e, h, 1) },
	"touch last copied then next": func(ix *Index, e *endpoint.Endpoint, _ *rand.Rand, h uint64) { touch(ix, e, h, 0, 1) },
	"touch next then last copied": func(ix *Index, e *endpoint.Endpoint, _ *rand.Rand, h uint64) { touch(ix, e, h, 1, 0) },
	"touch next and new": func(ix *Index, e *endpoint.Endpoint, r *rand.Rand, h uint64) {
		touch(ix, e, h, 1, 0)
		ix.Insert(e, chain(fmt.Sprint(r.Uint64()), 1+r.IntN(5)), exportCap)
	},
	"evict last copied and next": func(ix *Index, e *endpoint.Endpoint, r *rand.Rand, _ uint64) {
		ix.Insert(e, chain(fmt.Sprint(r.Uint64()), exportCap-1), exportCap)
	},
	"nothing": func(*Index, *endpoint.Endpoint, *rand.Rand, uint64) {},
}

// TestExportWhileInserting: whatever inserts change a list between two
// batches (an entry touched before or after its turn, the walk's position
// itself moved or evicted, new entries), replaying the export rebuilds the
// list exactly as it stood when the walk ended.
func TestExportWhileInserting(t *testing.T) {
	t.Parallel()
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range exportMutations {
			if !yield(k) {
				return
			}
		}
	})
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 11))
		ix, replay := mustIndex(t, 1), mustIndex(t, 1)
		e := newEndpoints(1)[0]
		ix.Insert(e, chain(fmt.Sprint("fill", seed), exportCap), exportCap)
		var final []uint64
		var applied []string
		ix.export("p", 16, 1+r.IntN(9), func(batch []Insertion) bool {
			for _, ins := range batch {
				replay.Insert(e, ins.Hashes, exportCap)
			}
			final = lruOf(ix, e)
			if len(applied) < 4 { // at most 196 pushes, within the walk's bound of 4 turnovers
				name := names[r.IntN(len(names))]
				applied = append(applied, name)
				exportMutations[name](ix, e, r, batch[len(batch)-1].Hashes[0])
			}
			return true
		})
		if diff := cmp.Diff(final, lruOf(replay, e)); diff != "" {
			t.Fatalf("seed %d, mutations %q: replay differs from the list at the end of the walk (-want +got):\n%s", seed, applied, diff)
		}
		checkInvariants(t, ix)
	}
}

// TestExportEndsUnderEndlessInserts: a list that grows faster than the
// walk advances is walked for a bounded number of entries.
func TestExportEndsUnderEndlessInserts(t *testing.T) {
	t.Parallel()
	ix := mustIndex(t, 1)
	e := newEndpoints(1)[0]
	ix.Insert(e, chain("start", exportCap), exportCap)
	copied, i := 0, 0
	ix.export("p", 16, 1, func(batch []Insertion) bool {
		copied += len(batch[0].Hashes)
		i++
		ix.Insert(e, chain(fmt.Sprint("more", i), 10), exportCap)
		return true
	})
	if want := exportCap + exportTurnovers*exportCap; copied != want {
		t.Errorf("copied %d entries, want the bound %d", copied, want)
	}
}

// TestExportConcurrent exports repeatedly while inserts, matches and
// purges run (-race checks the locking); every batch stays in bounds.
func TestExportConcurrent(t *testing.T) {
	t.Parallel()
	ix := mustIndex(t, 4)
	eps := newEndpoints(8)
	prompts := make([][]uint64, 16)
	for i := range prompts {
		prompts[i] = chain(fmt.Sprint(i), 24)
	}
	known := map[string]bool{}
	for _, e := range eps {
		known[e.HostPort] = true
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() { matchAndInsert(t, ix, eps, prompts, uint64(g)) })
	}
	wg.Go(func() {
		for i := range 20 {
			ix.Purge(eps[i%2:])
		}
	})
	wg.Go(func() {
		for range 20 {
			ix.export("p", 16, 1+len(prompts), func(batch []Insertion) bool {
				n := 0
				for _, ins := range batch {
					n += len(ins.Hashes)
					if !known[ins.HostPort] || slices.Contains(ins.Hashes, 0) {
						t.Errorf("exported %q with hashes %v", ins.HostPort, ins.Hashes)
					}
				}
				if n > 1+len(prompts) {
					t.Errorf("batch of %d hashes", n)
				}
				return true
			})
		}
	})
	wg.Wait()
	checkInvariants(t, ix)
}
