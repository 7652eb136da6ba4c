package scorers

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// dispatchAt routes one request to e at t through s's PreRequest.
func dispatchAt(s *QueueDepth, e *endpoint.Endpoint, t time.Time) {
	s.PreRequest(scCtx, scheduler.NewState(1, t), nil, scResult(e))
}

func TestQueueDepthCountsUnscrapedDispatches(t *testing.T) {
	t.Parallel()
	at := func(ms int) time.Time { return scEpoch.Add(time.Duration(ms) * time.Millisecond) }
	cases := []struct {
		name   string
		params string
		queues []int
		sent   map[int][]int // endpoint → dispatch times (ms after the scrape at 0)
		want   []float64
	}{
		{name: "no dispatches is upstream's formula", queues: []int{0, 5, 10}, want: []float64{1, 0.5, 0}},
		{name: "dispatch after the scrape counts", queues: []int{0, 0, 0}, sent: map[int][]int{0: {10}}, want: []float64{0, 1, 1}},
		{name: "dispatch before the scrape is in the metrics", queues: []int{0, 0, 0}, sent: map[int][]int{0: {-10}}, want: []float64{1, 1, 1}},
		{name: "a burst spreads", queues: []int{2, 0, 0}, sent: map[int][]int{1: {1, 2}, 2: {3}}, want: []float64{0, 0, 1}},
		{name: "queue plus dispatches", queues: []int{1, 3}, sent: map[int][]int{0: {1, 2, 3, 4}}, want: []float64{0, 1}},
		{name: "off restores upstream", params: `{"countUnscrapedDispatches":false}`, queues: []int{0, 0, 0}, sent: map[int][]int{0: {10}}, want: []float64{1, 1, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*QueueDepth](t, QueueDepthRegistration(), tc.params, nil)
			eps := scEndpoints(len(tc.queues), func(i int, m *endpoint.Metrics) { m.WaitingQueueSize = tc.queues[i] })
			for i, times := range tc.sent {
				for _, ms := range times {
					dispatchAt(s, eps[i], at(ms))
				}
			}
			got := s.Score(scCtx, scState(), nil, eps)
			if diff := cmp.Diff(tc.want, got, approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQueueDepthCountsPrefillDispatches: in disaggregated serving the
// prefill endpoint's queue grows too, so it is noted as well (once when it
// is the primary target itself).
func TestQueueDepthCountsPrefillDispatches(t *testing.T) {
	t.Parallel()
	s := NewQueueDepth("q")
	eps := scEndpoints(3, nil)
	now := scheduler.NewState(1, scEpoch.Add(time.Millisecond))
	withPrefill := func(primary, prefill *endpoint.Endpoint) *scheduler.Result {
		r := scResult(primary)
		r.Profiles[scheduler.DefaultPrefillProfile] = &scheduler.ProfileResult{Targets: []*endpoint.Endpoint{prefill}}
		return r
	}
	s.PreRequest(scCtx, now, nil, withPrefill(eps[0], eps[1]))
	s.PreRequest(scCtx, now, nil, withPrefill(eps[0], eps[0]))
	got := make([]float64, 3)
	s.log.AddUnscraped(eps, got)
	if diff := cmp.Diff([]float64{2, 1, 0}, got); diff != "" {
		t.Errorf("unscraped dispatches (-want +got):\n%s", diff)
	}
}

// TestQueueDepthScrapeClearsDispatches: once a scrape newer than the
// dispatches arrives, they are no longer counted, nor kept.
func TestQueueDepthScrapeClearsDispatches(t *testing.T) {
	t.Parallel()
	s := NewQueueDepth("q")
	eps := scEndpoints(2, nil)
	for i := range 5 {
		dispatchAt(s, eps[0], scEpoch.Add(time.Duration(i+1)*time.Millisecond))
	}
	if got := s.Score(scCtx, scState(), nil, eps); !cmp.Equal(got, []float64{0, 1}) {
		t.Fatalf("before the scrape: %v", got)
	}
	scraped := scEpoch.Add(3*time.Millisecond + time.Microsecond)
	eps[0].SetMetrics(&endpoint.Metrics{WaitingQueueSize: 1, UpdateTime: scraped})
	eps[1].SetMetrics(&endpoint.Metrics{WaitingQueueSize: 3, UpdateTime: scraped})
	// Endpoint 0: queue 1 + the 2 dispatches after the scrape = 3, as endpoint 1.
	if got := s.Score(scCtx, scState(), nil, eps); !cmp.Equal(got, []float64{1, 1}) {
		t.Errorf("after a scrape covering 3 of 5 dispatches: %v, want [1 1]", got)
	}
	if n := s.log.Pending(); n != 2 {
		t.Errorf("%d dispatches kept, want the 2 not yet scraped", n)
	}
	eps[0].SetMetrics(&endpoint.Metrics{UpdateTime: scEpoch.Add(time.Second)})
	s.Score(scCtx, scState(), nil, eps)
	if n := s.log.Pending(); n != 0 {
		t.Errorf("%d dispatches kept after a scrape covering all, want 0", n)
	}
}

func TestQueueDepthParams(t *testing.T) {
	t.Parallel()
	if _, err := QueueDepthFactory("q", json.RawMessage(`{"countUnscrapedDispatches":"yes"}`), nil); err == nil {
		t.Error("a string for a bool was accepted")
	}
	if _, err := QueueDepthFactory("q", json.RawMessage(`{"bogus":1}`), nil); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown parameter: %v", err)
	}
}

func TestQueueDepthConcurrent(t *testing.T) {
	t.Parallel()
	s := NewQueueDepth("q")
	eps := scEndpoints(8, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				dispatchAt(s, eps[(g+i)%len(eps)], scEpoch.Add(time.Duration(i)*time.Millisecond))
				if got := s.Score(scCtx, scState(), nil, eps); len(got) != len(eps) {
					t.Errorf("%d scores", len(got))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// dispatchRecorder is a DispatchPublisher keeping what it hears.
type dispatchRecorder struct {
	mu  sync.Mutex
	got []scheduler.Dispatch
}

func (r *dispatchRecorder) PublishDispatch(d scheduler.Dispatch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
}

// TestQueueDepthSharesDispatches: replica A's dispatches, published and
// applied on replica B, make B score the endpoint as busy as A does; B
// republishes nothing it applied, ignores another instance's dispatches,
// and a scorer that counts no dispatches applies none.
func TestQueueDepthSharesDispatches(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, func(int, *endpoint.Metrics) {})
	a := mustBuild[*QueueDepth](t, QueueDepthRegistration(), "", nil)
	b := mustBuild[*QueueDepth](t, QueueDepthRegistration(), "", nil)
	var fromA, fromB dispatchRecorder
	a.SetDispatchPublisher(&fromA)
	b.SetDispatchPublisher(&fromB)
	at := scEpoch.Add(10 * time.Millisecond)
	dispatchAt(a, eps[0], at)
	want := []scheduler.Dispatch{{Plugin: "x", HostPort: eps[0].HostPort, At: at}}
	if diff := cmp.Diff(want, fromA.got); diff != "" {
		t.Fatalf("published (-want +got):\n%s", diff)
	}
	b.ApplyDispatches(append(fromA.got, scheduler.Dispatch{Plugin: "other-queue", HostPort: eps[1].HostPort, At: at}))
	if diff := cmp.Diff(a.Score(scCtx, scState(), nil, eps), b.Score(scCtx, scState(), nil, eps), approx); diff != "" {
		t.Errorf("B scores unlike A (-A +B):\n%s", diff)
	}
	if len(fromB.got) != 0 {
		t.Errorf("B republished %v", fromB.got)
	}
	off := mustBuild[*QueueDepth](t, QueueDepthRegistration(), `{"countUnscrapedDispatches":false}`, nil)
	off.ApplyDispatches(fromA.got)
	if got := off.Score(scCtx, scState(), nil, eps); got[0] != got[1] {
		t.Errorf("a scorer without countUnscrapedDispatches counted applied dispatches: %v", got)
	}
}
