package prefix

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// benchEndpoints is the pool size of the benchmarks.
const benchEndpoints = 100

// promptSizes are the benchmarked prompt sizes; with the default 64-byte
// blocks and 256-block cap, 100 KiB is hashed and matched as 16 KiB.
var promptSizes = []struct {
	name  string
	bytes int
}{{"1KiB", 1 << 10}, {"100KiB", 100 << 10}}

// warm is the shared benchmark fixture: a producer with default parameters
// whose index holds lruCapacityPerServer unrelated blocks for each of 100
// endpoints (3.1 M entries), plus the benchmark prompts, held whole by some
// endpoints and in part by as many more.
var warm struct {
	once sync.Once
	pr   *Producer
	eps  []*endpoint.Endpoint
}

func warmProducer(b *testing.B) (*Producer, []*endpoint.Endpoint) {
	warm.once.Do(func() {
		pr, err := NewProducer(ProducerType, Params{BlockSizeTokens: DefaultBlockSizeTokens, MaxPrefixBlocksToMatch: DefaultMaxPrefixBlocksToMatch, LRUCapacityPerServer: DefaultLRUCapacityPerServer}, nil)
		if err != nil {
			b.Fatal(err)
		}
		eps := newEndpoints(benchEndpoints)
		r := rand.New(rand.NewPCG(1, 1))
		for _, e := range eps {
			fill(pr.index, e, r, DefaultLRUCapacityPerServer)
		}
		for _, size := range promptSizes {
			for _, holders := range []int{4, benchEndpoints / 2} {
				hold(pr, eps, benchRequest(size.bytes, holders), holders)
			}
		}
		warm.pr, warm.eps = pr, eps
	})
	return warm.pr, warm.eps
}

// hold records rq's prompt whole for the first holders endpoints and half
// of it for as many more.
func hold(pr *Producer, eps []*endpoint.Endpoint, rq *scheduler.Request, holders int) {
	st := scheduler.NewState(1, time.Time{})
	pr.Produce(context.Background(), st, rq, eps)
	hs := pr.find(st).hashes
	for _, e := range eps[:holders] {
		pr.index.Insert(e, hs, DefaultLRUCapacityPerServer)
	}
	for _, e := range eps[holders : 2*holders] {
		pr.index.Insert(e, hs[:len(hs)/2], DefaultLRUCapacityPerServer)
	}
}

// fill inserts n random block hashes for e, a prompt of 256 blocks at a time.
func fill(ix *Index, e *endpoint.Endpoint, r *rand.Rand, n int) {
	hs := make([]uint64, 256)
	for done := 0; done < n; done += len(hs) {
		for i := range hs {
			hs[i] = r.Uint64()
		}
		ix.Insert(e, hs[:min(len(hs), n-done)], DefaultLRUCapacityPerServer)
	}
}

func benchRequest(size, holders int) *scheduler.Request {
	return req("meta-llama/Llama-3.1-8B-Instruct", "", text(fmt.Sprintf("holders-%d", holders), size))
}

// BenchmarkMatch measures the index lookup alone (prompt already hashed) and
// Produce, the whole per-request cost: hashing, matching, the State record.
// holders=4: four endpoints hold the prompt and four hold half of it (the
// usual case); holders=50: every endpoint holds it whole or half, so every
// block has 50 to 100 holders (a worst case).
func BenchmarkMatch(b *testing.B) {
	pr, eps := warmProducer(b)
	for _, size := range promptSizes {
		for _, holders := range []int{4, benchEndpoints / 2} {
			rq := benchRequest(size.bytes, holders)
			st := scheduler.NewState(1, time.Time{})
			pr.Produce(context.Background(), st, rq, eps)
			hashes := pr.find(st).hashes
			if m, _ := pr.Match(st); m.Len() != 2*holders {
				b.Fatalf("fixture: %d endpoints matched, want %d", m.Len(), 2*holders)
			}
			name := fmt.Sprintf("prompt=%s/endpoints=%d/holders=%d", size.name, benchEndpoints, holders)
			b.Run("index/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					pr.index.Match(hashes, DefaultBlockSizeTokens)
				}
			})
			b.Run("produce/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					recordKey.Set(st, nil) // as for a new request
					pr.Produce(context.Background(), st, rq, eps)
				}
			})
		}
	}
}

// BenchmarkMatchParallel is BenchmarkMatch/index under contention from all
// cores, with one insert for every eight matches.
func BenchmarkMatchParallel(b *testing.B) {
	pr, eps := warmProducer(b)
	st := scheduler.NewState(1, time.Time{})
	pr.Produce(context.Background(), st, benchRequest(1<<10, 4), eps)
	hashes := pr.find(st).hashes
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 2))
		fresh := make([]uint64, 16)
		for i := 0; pb.Next(); i++ {
			pr.index.Match(hashes, DefaultBlockSizeTokens)
			if i%8 == 0 {
				for j := range fresh {
					fresh[j] = r.Uint64()
				}
				pr.index.Insert(eps[r.IntN(len(eps))], fresh, DefaultLRUCapacityPerServer)
			}
		}
	})
}

// BenchmarkInsert records a new prompt for one endpoint of the full index,
// so every block evicts one.
func BenchmarkInsert(b *testing.B) {
	pr, eps := warmProducer(b)
	for _, blocks := range []int{16, 256} {
		b.Run(fmt.Sprintf("blocks=%d", blocks), func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 3))
			hs := make([]uint64, blocks)
			b.ReportAllocs()
			for b.Loop() {
				for i := range hs {
					hs[i] = r.Uint64()
				}
				pr.index.Insert(eps[r.IntN(len(eps))], hs, DefaultLRUCapacityPerServer)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*blocks), "ns/block")
		})
	}
}

// BenchmarkExport walks the whole full index (3.1 M entries), as a
// replica serving a snapshot does, with a no-op consumer.
func BenchmarkExport(b *testing.B) {
	pr, _ := warmProducer(b)
	hashes := 0
	b.ReportAllocs()
	for b.Loop() {
		hashes = 0
		pr.Export(func(batch []Insertion) bool {
			for _, ins := range batch {
				hashes += len(ins.Hashes)
			}
			return true
		})
	}
	if hashes != pr.index.Len() {
		b.Fatalf("exported %d hashes, the index holds %d", hashes, pr.index.Len())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hashes), "ns/hash")
}

// indexBytesPerEntry builds an index of entries (endpoint, block) pairs,
// all hashes distinct (the worst case: no sharing in the reverse map), and
// returns the heap it holds per entry.
func indexBytesPerEntry(endpoints, entries int) float64 {
	eps := newEndpoints(endpoints)
	r := rand.New(rand.NewPCG(5, 5))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix, _ := NewIndex(IndexOptions{})
	for _, e := range eps {
		fill(ix, e, r, entries/endpoints)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if ix.Len() != entries/endpoints*endpoints {
		panic(fmt.Sprintf("index holds %d entries, want %d", ix.Len(), entries))
	}
	runtime.KeepAlive(ix)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(ix.Len())
}

// BenchmarkIndexMemory reports the heap held per cached (endpoint, block)
// entry, map and arena overhead included, for 1 M entries over 100 endpoints.
func BenchmarkIndexMemory(b *testing.B) {
	var perEntry float64
	for b.Loop() {
		perEntry = indexBytesPerEntry(benchEndpoints, 1_000_000)
	}
	b.ReportMetric(perEntry, "B/entry")
}

func TestMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1 M-entry index")
	}
	// Not parallel: other tests' allocations would blur the measurement.
	if got := indexBytesPerEntry(benchEndpoints, 1_000_000); got > 100 {
		t.Errorf("%.1f bytes per entry, budget 100", got)
	} else {
		t.Logf("%.1f bytes per (endpoint, block) entry", got)
	}
}
