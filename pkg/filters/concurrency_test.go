package filters

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// newConcurrency builds a detector from raw config, failing the test on error.
func newConcurrency(t testing.TB, raw string) *ConcurrencyDetector {
	t.Helper()
	p, err := ConcurrencyDetectorFactory("c", []byte(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*ConcurrencyDetector)
}

// routedTo is a result whose primary profile targets eps, primary first.
func routedTo(eps ...*endpoint.Endpoint) *scheduler.Result {
	return &scheduler.Result{Primary: "default", Profiles: map[string]*scheduler.ProfileResult{"default": {Targets: eps}}}
}

// promptOf is a request whose prompt is estimated at exactly tokens tokens.
func promptOf(tokens int) *scheduler.Request {
	return &scheduler.Request{Body: &request.Body{Prompt: make([]byte, 4*tokens)}}
}

// send runs PreRequest for a new request of tokens prompt tokens routed to
// e and returns the request's state, with which it can be completed.
func send(d *ConcurrencyDetector, e *endpoint.Endpoint, tokens int) *scheduler.State {
	st := plugintest.State(1)
	d.PreRequest(ctx, st, promptOf(tokens), routedTo(e))
	return st
}

// finish runs ResponseComplete for the request owning st.
func finish(d *ConcurrencyDetector, st *scheduler.State, resp scheduler.Response) {
	d.ResponseComplete(ctx, st, nil, &resp)
}

// sendN sends n requests of tokens prompt tokens each to e.
func sendN(d *ConcurrencyDetector, e *endpoint.Endpoint, n, tokens int) {
	for range n {
		send(d, e, tokens)
	}
}

// inFlightOf returns InFlight as a pair, the form expectations use.
func inFlightOf(d *ConcurrencyDetector, e *endpoint.Endpoint) [2]int64 {
	r, t := d.InFlight(e)
	return [2]int64{r, t}
}

// checkIdle fails unless d holds no endpoint and no request any more.
func checkIdle(t *testing.T, d *ConcurrencyDetector) {
	t.Helper()
	if requests, endpoints := d.Tracker().Size(); requests != 0 || endpoints != 0 {
		t.Errorf("books not empty: %d endpoints, %d requests", endpoints, requests)
	}
}

type manualClock struct{ elapsed atomic.Int64 } // a clock only the test moves

func (c *manualClock) Now() time.Time          { return plugintest.Epoch.Add(time.Duration(c.elapsed.Load())) }
func (c *manualClock) Advance(d time.Duration) { c.elapsed.Add(int64(d)) }

func TestConcurrencyDetectorSaturation(t *testing.T) {
	t.Parallel()
	a, b, c := ep("a", "10.0.0.1", nil, nil), ep("b", "10.0.0.2", nil, nil), ep("c", "10.0.0.3", nil, nil)
	outside := ep("outside", "10.0.0.9", nil, nil)
	tests := []struct {
		name   string
		params string
		// sends are requests per endpoint, each of tokensEach prompt tokens.
		sends      map[*endpoint.Endpoint]int
		tokensEach int
		eps        []*endpoint.Endpoint
		want       float64
	}{
		{name: "requests: empty pool fails closed", params: ``, want: 1},
		{name: "tokens: empty pool fails closed", params: `{"concurrencyMode":"tokens"}`, want: 1},
		{name: "hybrid: empty pool fails closed", params: `{"concurrencyMode":"hybrid"}`, want: 1},
		{name: "requests: idle", params: ``, eps: []*endpoint.Endpoint{a, b}, want: 0},
		{name: "requests: aggregate over capacity", params: `{"maxConcurrency":10}`,
			sends: map[*endpoint.Endpoint]int{a: 10, b: 4}, eps: []*endpoint.Endpoint{a, b, c}, want: 14.0 / 30},
		{name: "requests: tokens ignored", params: `{"maxConcurrency":10,"maxTokenConcurrency":1}`,
			sends: map[*endpoint.Endpoint]int{a: 5}, tokensEach: 100, eps: []*endpoint.Endpoint{a, b}, want: 5.0 / 20},
		{name: "requests: overload above 1, headroom not applied", params: `{"maxConcurrency":2,"headroom":3}`,
			sends: map[*endpoint.Endpoint]int{a: 5, b: 4}, eps: []*endpoint.Endpoint{a, b}, want: 9.0 / 4},
		{name: "requests: load outside the given endpoints ignored", params: `{"maxConcurrency":4}`,
			sends: map[*endpoint.Endpoint]int{a: 2, outside: 50}, eps: []*endpoint.Endpoint{a, b}, want: 2.0 / 8},
		{name: "tokens: aggregate over capacity", params: `{"concurrencyMode":"tokens","maxTokenConcurrency":1000}`,
			sends: map[*endpoint.Endpoint]int{a: 3, b: 1}, tokensEach: 250, eps: []*endpoint.Endpoint{a, b}, want: 1000.0 / 2000},
		{name: "tokens: request count ignored", params: `{"concurrencyMode":"tokens","maxConcurrency":1,"maxTokenConcurrency":1000}`,
			sends: map[*endpoint.Endpoint]int{a: 50}, tokensEach: 0, eps: []*endpoint.Endpoint{a}, want: 0},
		{name: "hybrid: requests dominate", params: `{"concurrencyMode":"hybrid","maxConcurrency":10,"maxTokenConcurrency":1000}`,
			sends: map[*endpoint.Endpoint]int{a: 8}, tokensEach: 10, eps: []*endpoint.Endpoint{a, b}, want: 8.0 / 20},
		{name: "hybrid: tokens dominate", params: `{"concurrencyMode":"hybrid","maxConcurrency":10,"maxTokenConcurrency":1000}`,
			sends: map[*endpoint.Endpoint]int{a: 2}, tokensEach: 600, eps: []*endpoint.Endpoint{a, b}, want: 1200.0 / 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newConcurrency(t, tc.params)
			for e, n := range tc.sends {
				sendN(d, e, n, tc.tokensEach)
			}
			got := d.Saturation(tc.eps, plugintest.Epoch)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-12 })); diff != "" {
				t.Errorf("Saturation (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConcurrencyDetectorFilter(t *testing.T) {
	t.Parallel()
	idle, r3, r4, r5 := ep("idle", "10.0.0.1", nil, nil), ep("r3", "10.0.0.2", nil, nil), ep("r4", "10.0.0.3", nil, nil), ep("r5", "10.0.0.4", nil, nil)
	eps := []*endpoint.Endpoint{idle, r3, r4, r5}
	tests := []struct {
		name       string
		params     string
		tokensEach int
		want       []string
	}{
		{name: "requests at limit dropped", params: `{"maxConcurrency":4}`, want: []string{"idle", "r3"}},
		{name: "headroom raises the limit", params: `{"maxConcurrency":4,"headroom":0.25}`, want: []string{"idle", "r3", "r4"}},
		{name: "fractional limit", params: `{"maxConcurrency":4,"headroom":0.1}`, want: []string{"idle", "r3", "r4"}},
		{name: "requests mode ignores tokens", params: `{"maxConcurrency":100,"maxTokenConcurrency":1}`, tokensEach: 10,
			want: []string{"idle", "r3", "r4", "r5"}},
		{name: "tokens at limit dropped", params: `{"concurrencyMode":"tokens","maxConcurrency":1,"maxTokenConcurrency":40}`, tokensEach: 10,
			want: []string{"idle", "r3"}},
		{name: "tokens with headroom", params: `{"concurrencyMode":"tokens","maxTokenConcurrency":40,"headroom":0.5}`, tokensEach: 10,
			want: []string{"idle", "r3", "r4", "r5"}},
		{name: "hybrid drops on requests", params: `{"concurrencyMode":"hybrid","maxConcurrency":5,"maxTokenConcurrency":1000}`, tokensEach: 10,
			want: []string{"idle", "r3", "r4"}},
		{name: "hybrid drops on tokens", params: `{"concurrencyMode":"hybrid","maxConcurrency":100,"maxTokenConcurrency":30}`, tokensEach: 10,
			want: []string{"idle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newConcurrency(t, tc.params)
			sendN(d, r3, 3, tc.tokensEach)
			sendN(d, r4, 4, tc.tokensEach)
			sendN(d, r5, 5, tc.tokensEach)
			got := d.Filter(ctx, plugintest.State(1), nil, eps)
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConcurrencyDetectorFailsOpen(t *testing.T) {
	t.Parallel()
	d := newConcurrency(t, `{"maxConcurrency":1}`)
	eps := []*endpoint.Endpoint{ep("a", "10.0.0.1", nil, nil), ep("b", "10.0.0.2", nil, nil)}
	send(d, eps[0], 0)
	send(d, eps[1], 0)
	got := d.Filter(ctx, plugintest.State(1), nil, eps)
	if len(got) != 2 || &got[0] != &eps[0] {
		t.Errorf("all at capacity: got %v, want the input slice itself", names(got))
	}
}

func TestConcurrencyDetectorReleasesExactly(t *testing.T) {
	t.Parallel()
	responses := map[string]scheduler.Response{
		"success":   {StatusCode: 200, EndOfStream: true},
		"failure":   {StatusCode: 500, EndOfStream: true},
		"cancelled": {Cancelled: true},
	}
	for _, mode := range []string{ConcurrencyModeRequests, ConcurrencyModeTokens, ConcurrencyModeHybrid} {
		for outcome, resp := range responses {
			t.Run(mode+"/"+outcome, func(t *testing.T) {
				t.Parallel()
				d := newConcurrency(t, `{"concurrencyMode":"`+mode+`"}`)
				a, b := ep("a", "10.0.0.1", nil, nil), ep("b", "10.0.0.2", nil, nil)
				small, large := send(d, a, 7), send(d, a, 300)
				other := send(d, b, 11)
				if diff := cmp.Diff([2]int64{2, 307}, inFlightOf(d, a)); diff != "" {
					t.Fatalf("after PreRequest, a (-want +got):\n%s", diff)
				}
				finish(d, large, resp)
				if diff := cmp.Diff([2]int64{1, 7}, inFlightOf(d, a)); diff != "" {
					t.Errorf("after releasing the large request, a (-want +got):\n%s", diff)
				}
				finish(d, large, resp) // a second completion releases nothing
				if diff := cmp.Diff([2]int64{1, 7}, inFlightOf(d, a)); diff != "" {
					t.Errorf("after a repeated completion, a (-want +got):\n%s", diff)
				}
				finish(d, small, resp)
				finish(d, other, resp)
				for _, e := range []*endpoint.Endpoint{a, b} {
					if diff := cmp.Diff([2]int64{0, 0}, inFlightOf(d, e)); diff != "" {
						t.Errorf("at the end, %s (-want +got):\n%s", e.Name, diff)
					}
				}
				checkIdle(t, d)
			})
		}
	}
}

func TestConcurrencyDetectorCountsPrimaryOnce(t *testing.T) {
	t.Parallel()
	d := newConcurrency(t, ``)
	primary, fallback := ep("primary", "10.0.0.1", nil, nil), ep("fallback", "10.0.0.2", nil, nil)
	st := plugintest.State(1)
	d.PreRequest(ctx, st, promptOf(5), routedTo(primary, fallback))
	d.PreRequest(ctx, st, promptOf(5), routedTo(primary, fallback)) // repeated: ignored
	d.PreRequest(ctx, plugintest.State(2), promptOf(5), &scheduler.Result{})
	d.PreRequest(ctx, plugintest.State(3), nil, routedTo(fallback)) // bodyless: no tokens
	got := [][2]int64{inFlightOf(d, primary), inFlightOf(d, fallback)}
	if diff := cmp.Diff([][2]int64{{1, 5}, {1, 0}}, got); diff != "" {
		t.Errorf("in flight on primary, fallback (-want +got):\n%s", diff)
	}
}

func TestConcurrencyDetectorFollowsServedEndpoint(t *testing.T) {
	t.Parallel()
	d := newConcurrency(t, ``)
	primary, fallback := ep("primary", "10.0.0.1", nil, nil), ep("fallback", "10.0.0.2", nil, nil)
	st := send(d, primary, 9)
	d.ResponseHeaders(ctx, st, nil, &scheduler.Response{Served: " " + fallback.HostPort + " "})
	got := [][2]int64{inFlightOf(d, primary), inFlightOf(d, fallback)}
	if diff := cmp.Diff([][2]int64{{0, 0}, {1, 9}}, got); diff != "" {
		t.Errorf("after the move, primary, fallback (-want +got):\n%s", diff)
	}
	d.ResponseHeaders(ctx, plugintest.State(2), nil, &scheduler.Response{Served: primary.HostPort}) // unknown request
	finish(d, st, scheduler.Response{EndOfStream: true})
	checkIdle(t, d)
}

func TestConcurrencyDetectorCompleteWithoutPreRequest(t *testing.T) {
	t.Parallel()
	d := newConcurrency(t, ``)
	a := ep("a", "10.0.0.1", nil, nil)
	kept := send(d, a, 4)
	finish(d, plugintest.State(2), scheduler.Response{Cancelled: true})
	finish(d, nil, scheduler.Response{Cancelled: true})
	if diff := cmp.Diff([2]int64{1, 4}, inFlightOf(d, a)); diff != "" {
		t.Errorf("unrelated completion changed a (-want +got):\n%s", diff)
	}
	finish(d, kept, scheduler.Response{EndOfStream: true})
	finish(d, plugintest.State(3), scheduler.Response{Cancelled: true})
	if diff := cmp.Diff([2]int64{0, 0}, inFlightOf(d, a)); diff != "" {
		t.Errorf("went below zero (-want +got):\n%s", diff)
	}
	checkIdle(t, d)
}

// TestConcurrencyDetectorConcurrentHooks runs many requests through the
// hooks at once, with readers alongside; under -race it also checks the
// locking. Every request is released, so the books must end empty.
func TestConcurrencyDetectorConcurrentHooks(t *testing.T) {
	t.Parallel()
	d := newConcurrency(t, `{"concurrencyMode":"hybrid","maxConcurrency":10,"maxTokenConcurrency":100}`)
	eps := plugintest.Endpoints(5, 1)
	const goroutines, perGoroutine = 32, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				e := eps[(g+i)%len(eps)]
				st := send(d, e, i%17)
				if i%3 == 0 {
					d.ResponseHeaders(ctx, st, nil, &scheduler.Response{Served: eps[i%len(eps)].HostPort})
				}
				d.Filter(ctx, st, nil, eps)
				d.Saturation(eps, plugintest.Epoch)
				d.InFlight(e)
				finish(d, st, scheduler.Response{Cancelled: i%2 == 0, EndOfStream: i%2 == 1})
				if i%5 == 0 {
					finish(d, plugintest.State(uint64(i)), scheduler.Response{Cancelled: true}) // never sent
				}
			}
		})
	}
	wg.Wait()
	for _, e := range eps {
		if diff := cmp.Diff([2]int64{0, 0}, inFlightOf(d, e)); diff != "" {
			t.Errorf("%s at the end (-want +got):\n%s", e.Name, diff)
		}
	}
	if got := d.Saturation(eps, plugintest.Epoch); got != 0 {
		t.Errorf("Saturation at the end = %v, want 0", got)
	}
	checkIdle(t, d)
}

// TestConcurrencyDetectorSweep runs Start, the safety net for lost completions.
func TestConcurrencyDetectorSweep(t *testing.T) {
	t.Parallel()
	clock, a, gone := &manualClock{}, ep("a", "10.0.0.1", nil, nil), ep("gone", "10.0.0.2", nil, nil)
	h := &scheduler.Handle{Clock: clock, Endpoints: func() []*endpoint.Endpoint { return []*endpoint.Endpoint{a} }}
	p, err := ConcurrencyDetectorFactory("c", []byte(`{"requestTimeout":"20ms"}`), h)
	if err != nil {
		t.Fatal(err)
	}
	d := p.(*ConcurrencyDetector)
	old := send(d, a, 10)
	clock.Advance(10 * time.Millisecond)
	young, departed := send(d, a, 5), send(d, gone, 20)
	clock.Advance(10 * time.Millisecond) // old is requestTimeout old, the others half that
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = d.Start(runCtx) }()
	deadline := time.Now().Add(5 * time.Second) // the checks below fail if the sweep never ran
	for n, _ := d.Tracker().Size(); n != 1 && time.Now().Before(deadline); n, _ = d.Tracker().Size() {
		time.Sleep(time.Millisecond)
	}
	finish(d, old, scheduler.Response{EndOfStream: true})
	finish(d, departed, scheduler.Response{Cancelled: true})
	if diff := cmp.Diff([][2]int64{{1, 5}, {0, 0}}, [][2]int64{inFlightOf(d, a), inFlightOf(d, gone)}); diff != "" {
		t.Errorf("after the sweep and late completions, a, gone (-want +got):\n%s", diff)
	}
	finish(d, young, scheduler.Response{EndOfStream: true})
	checkIdle(t, d)
}

func TestConcurrencySaturationAllocs(t *testing.T) { // not parallel: AllocsPerRun forbids it
	for _, params := range []string{`{"concurrencyMode":"hybrid"}`, `{"kvCacheTarget":0.9}`} {
		d, eps := newConcurrency(t, params), plugintest.Endpoints(10, 1)
		sendN(d, eps[3], 2, 5)
		if allocs := testing.AllocsPerRun(50, func() { d.Saturation(eps, plugintest.Epoch) }); allocs != 0 {
			t.Errorf("%s: Saturation allocates %v times per call, want 0", params, allocs)
		}
	}
}

func TestConcurrencyConformance(t *testing.T) {
	t.Parallel()
	for _, params := range []string{``, `{"concurrencyMode":"tokens","maxTokenConcurrency":10}`, `{"concurrencyMode":"hybrid","maxConcurrency":1}`} {
		d := newConcurrency(t, params)
		busy := plugintest.Endpoints(100, 101) // the same addresses the check uses
		for i, e := range busy {
			sendN(d, e, i%3, 5)
		}
		plugintest.Filter(t, d, plugintest.Request("m", 100))
	}
}

func BenchmarkConcurrencyDetector(b *testing.B) {
	d := newConcurrency(b, `{"maxConcurrency":2}`)
	for i, e := range plugintest.Endpoints(100, 1) {
		sendN(d, e, i%3, 5)
	}
	benchFilter(b, d, plugintest.Request("m", 100))
}

func BenchmarkConcurrencySaturation(b *testing.B) {
	d := newConcurrency(b, `{"concurrencyMode":"hybrid"}`)
	eps := plugintest.Endpoints(100, 1)
	for i, e := range eps {
		sendN(d, e, i%3, 5)
	}
	b.ReportAllocs()
	for b.Loop() {
		d.Saturation(eps, plugintest.Epoch)
	}
}

func BenchmarkConcurrencyHooks(b *testing.B) {
	d := newConcurrency(b, ``)
	e := plugintest.Endpoints(1, 1)[0]
	req, result := promptOf(100), routedTo(e)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			st := plugintest.State(1)
			d.PreRequest(ctx, st, req, result)
			d.ResponseComplete(ctx, st, nil, &scheduler.Response{EndOfStream: true})
		}
	})
}

// TestConcurrencyKVCacheTarget: with kvCacheTarget an endpoint is rated by
// the KV usage its in-flight requests project at the footprint per request
// its last scrape showed, when that is higher than r/R; stale or empty
// metrics fall back to r/R.
func TestConcurrencyKVCacheTarget(t *testing.T) {
	t.Parallel()
	d := newConcurrency(t, `{"maxConcurrency":100,"kvCacheTarget":0.8}`)
	now := plugintest.Epoch
	a, b := ep("a", "10.0.0.1", nil, nil), ep("b", "10.0.0.2", nil, nil)
	a.SetMetrics(&endpoint.Metrics{RunningRequestsSize: 8, WaitingQueueSize: 2, KVCacheUsagePercent: 0.4, UpdateTime: now})
	a.SetStale(false)
	sendN(d, a, 20, 1) // 20 × 0.4/10 = 0.8 of KV: 1.0 of the target, against 20/100 by count
	sendN(d, b, 10, 1) // b has no metrics: 10/100
	if got, want := d.Saturation([]*endpoint.Endpoint{a, b}, now), (1.0+0.1)/2; math.Abs(got-want) > 1e-9 {
		t.Errorf("saturation %v, want %v", got, want)
	}
	if got := d.Saturation([]*endpoint.Endpoint{a}, now.Add(time.Minute)); math.Abs(got-0.2) > 1e-9 {
		t.Errorf("with stale metrics: saturation %v, want 0.2 (20/100)", got)
	}
	if _, err := ConcurrencyDetectorFactory("c", []byte(`{"kvCacheTarget":1.5}`), nil); err == nil || !strings.Contains(err.Error(), "kvCacheTarget") {
		t.Errorf("kvCacheTarget 1.5: error %v", err)
	}
}
