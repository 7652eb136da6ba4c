package prefix

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func poolOf(eps []*endpoint.Endpoint) *scheduler.Handle {
	return &scheduler.Handle{Endpoints: func() []*endpoint.Endpoint { return eps }}
}

func TestProducerDumpState(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(3)
	// eps[2] has left the pool but is not purged yet: shown by address.
	pr := newProducer(t, Params{BlockSizeTokens: 16, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}, poolOf(eps[:2]))
	a, b := req("m", "", text("a", 700)), req("m", "", text("b", 700))
	n := route(pr, eps, a, result(eps[:1], nil)).TotalBlocks
	route(pr, eps, b, result(eps[:1], eps[1]))
	route(pr, eps, a, result(eps[2:], nil))
	if n == 0 {
		t.Fatal("the prompt has no blocks")
	}
	blocks := func(k int) map[string]any {
		// 1000 blocks over 16 shards is 63 a shard.
		return map[string]any{"blocks": float64(k), "capacityBlocks": 1008.0}
	}
	want := map[string]any{
		"autoTune": false, "blockSizeTokens": 16.0, "blockSizeTokensInUse": 16.0, "maxPrefixBlocksToMatch": 256.0,
		"maxPrefixTokensToMatch": 0.0, "lruCapacityPerServer": 1000.0, "shards": 16.0,
		"entries": float64(4 * n), "endpointCount": 3.0,
		"endpoints":     map[string]any{"ep-0": blocks(2 * n), "ep-1": blocks(n), eps[2].HostPort: blocks(n)},
		"moreEndpoints": 0.0,
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, pr)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

// TestProducerDumpStateCapped: past scheduler.DumpLimit endpoints only those
// holding the most blocks are listed; auto-tuning shows in the block size
// in use and the capacities.
func TestProducerDumpStateCapped(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(scheduler.DumpLimit + 50)
	for _, e := range eps {
		e.SetMetrics(&endpoint.Metrics{CacheBlockSize: 16, CacheNumBlocks: 160}) // 160 blocks of 16 tokens
	}
	pr := newProducer(t, Params{AutoTune: true, BlockSizeTokens: 32, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}, poolOf(eps))
	n := 0
	wantEndpoints := map[string]any{}
	for i, e := range eps {
		n = route(pr, eps, req("m", "", text(fmt.Sprint("a", i), 700)), result([]*endpoint.Endpoint{e}, nil)).TotalBlocks
		if i < scheduler.DumpLimit {
			route(pr, eps, req("m", "", text(fmt.Sprint("b", i), 700)), result([]*endpoint.Endpoint{e}, nil))
			wantEndpoints[e.Name] = map[string]any{"blocks": float64(2 * n), "capacityBlocks": 160.0}
		}
	}
	got := plugintest.Dumped(t, pr)
	want := map[string]any{
		"blockSizeTokensInUse": 16.0, "entries": float64((len(eps) + scheduler.DumpLimit) * n),
		"endpointCount": float64(len(eps)), "endpoints": wantEndpoints, "moreEndpoints": 50.0,
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			delete(got, k) // parameters, checked above
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

// TestProducerDumpWhileRouting dumps while other goroutines route requests
// and purge (run with -race); every dump stays within the index's bounds.
func TestProducerDumpWhileRouting(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(8)
	pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 64}, poolOf(eps[:6]))
	plugintest.DumpWhile(func() {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 100 {
					e := eps[(g+i)%len(eps)]
					route(pr, eps, req("m", "", text(fmt.Sprint(g, "-", i%7), 300)), result([]*endpoint.Endpoint{e}, nil))
					if i%25 == 0 {
						pr.Purge()
					}
				}
			})
		}
		wg.Wait()
	}, func() {
		st := pr.DumpState().(ProducerState)
		sum := 0
		for name, e := range st.Endpoints {
			if e.Blocks > e.CapacityBlocks || name == "ep-6" || name == "ep-7" { // departed: shown by address
				t.Fatalf("endpoint %s: %+v", name, e)
			}
			sum += e.Blocks
		}
		if sum > st.Entries || st.EndpointCount > len(eps) {
			t.Fatalf("inconsistent dump: %+v", st)
		}
	})
}
