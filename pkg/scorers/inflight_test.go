package scorers

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// inflightScorer is what the two in-flight scorers have in common.
type inflightScorer interface {
	scheduler.Scorer
	scheduler.PreRequest
	scheduler.ResponseHeaders
	scheduler.ResponseComplete
	scheduler.Runnable
	Tracker() *inflight.Tracker
}

// bothInflight builds one of each in-flight scorer with the given handle.
func bothInflight(t *testing.T, h *scheduler.Handle, raw string) []inflightScorer {
	return []inflightScorer{
		mustBuild[*ActiveRequests](t, ActiveRequestsRegistration(), raw, h),
		mustBuild[*TokenLoad](t, TokenLoadRegistration(), raw, h),
	}
}

// loadOf returns the request counts the tracker holds for eps.
func loadOf(s inflightScorer, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.Tracker().Requests(eps, out)
	return out
}

func TestActiveRequestsFormula(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		params string
		counts []int
		want   []float64
	}{
		{"nothing in flight", "", []int{0, 0, 0}, []float64{1, 1, 1}},
		{"proportional to the busiest", "", []int{0, 2, 4}, []float64{1, 0.5, 0}},
		{"all equally busy", "", []int{3, 3}, []float64{0, 0}},
		{"idle threshold", `{"idleThreshold":2}`, []int{0, 2, 3, 4}, []float64{1, 1, 0.25, 0}},
		{"max busy score leaves a gap", `{"maxBusyScore":0.5}`, []int{0, 1, 2}, []float64{1, 0.25, 0}},
		{"binary idle/busy", `{"maxBusyScore":0}`, []int{0, 1, 9}, []float64{1, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*ActiveRequests](t, ActiveRequestsRegistration(), tc.params, nil)
			eps := scEndpoints(len(tc.counts), nil)
			for i, n := range tc.counts {
				for range n {
					s.PreRequest(scCtx, scState(), nil, scResult(eps[i]))
				}
			}
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTokenLoadFormula(t *testing.T) {
	t.Parallel()
	// A 400-byte prompt is 100 input tokens; 1.5× gives 150 output tokens.
	cases := []struct {
		name    string
		params  string
		prompts []int // prompt bytes of the requests sent to endpoint i
		want    []float64
	}{
		{"idle", `{"queueThresholdTokens":1000}`, []int{0}, []float64{1}},
		{"linear", `{"queueThresholdTokens":1000}`, []int{400, 800}, []float64{0.75, 0.5}},
		{"saturates at the threshold", `{"queueThresholdTokens":250}`, []int{400, 4000}, []float64{0, 0}},
		{"output ratio", `{"queueThresholdTokens":1000,"outputRatio":0}`, []int{400}, []float64{0.9}},
		{"output cap", `{"queueThresholdTokens":1000,"maxEstimatedOutputTokens":50}`, []int{400}, []float64{0.85}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*TokenLoad](t, TokenLoadRegistration(), tc.params, nil)
			eps := scEndpoints(len(tc.prompts), nil)
			for i, n := range tc.prompts {
				if n > 0 {
					s.PreRequest(scCtx, scState(), scRequest(n, nil), scResult(eps[i]))
				}
			}
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTokenLoadEstimate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		params    string
		prompt    int
		maxTokens int
		want      int
	}{
		{"input plus 1.5x", "", 400, 0, 250},
		{"rounds input up", "", 401, 0, 252},
		{"request max_tokens caps output", "", 400, 20, 120},
		{"param caps output", `{"maxEstimatedOutputTokens":10}`, 400, 0, 110},
		{"huge ratio stays bounded", `{"outputRatio":1e300}`, 4, 0, 1 + maxEstimate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*TokenLoad](t, TokenLoadRegistration(), tc.params, nil)
			req := scRequest(tc.prompt, nil)
			req.Body.MaxTokens = tc.maxTokens
			if got := s.estimate(req); got != tc.want {
				t.Errorf("estimate = %d, want %d", got, tc.want)
			}
		})
	}
	s := mustBuild[*TokenLoad](t, TokenLoadRegistration(), "", nil)
	if got := s.estimate(&scheduler.Request{}); got != 0 {
		t.Errorf("bodyless estimate = %d, want 0", got)
	}
}

func TestTokenLoadUsesReportedUsage(t *testing.T) {
	t.Parallel()
	s := mustBuild[*TokenLoad](t, TokenLoadRegistration(), `{"queueThresholdTokens":1000}`, nil)
	eps := scEndpoints(1, nil)
	st := scState()
	s.PreRequest(scCtx, st, scRequest(400, nil), scResult(eps[0])) // estimate 250
	tokens := func() float64 {
		out := make([]float64, 1)
		s.Tracker().Tokens(eps, out)
		return out[0]
	}
	resp := &scheduler.Response{}
	s.ResponseChunk(scCtx, st, nil, resp, []byte("data: {}"))
	if got := tokens(); got != 250 {
		t.Fatalf("before usage: %v tokens, want 250", got)
	}
	resp.Usage, resp.UsageKnown = request.Usage{PromptTokens: 90, CompletionTokens: 10}, true
	s.ResponseChunk(scCtx, st, nil, resp, nil)
	if got := tokens(); got != 100 {
		t.Fatalf("after usage: %v tokens, want 100", got)
	}
	resp.Usage = request.Usage{PromptTokens: 1, CompletionTokens: 1}
	s.ResponseChunk(scCtx, st, nil, resp, nil)
	if got := tokens(); got != 100 {
		t.Fatalf("second usage report changed tokens to %v", got)
	}
	s.ResponseComplete(scCtx, st, nil, resp)
	if f, n := s.Tracker().Size(); f != 0 || n != 0 || tokens() != 0 {
		t.Fatalf("after completion: %d flights, %d endpoints, %v tokens", f, n, tokens())
	}
}

func TestInflightLifecycle(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		resp scheduler.Response
	}{
		{"completed", scheduler.Response{StatusCode: 200, EndOfStream: true}},
		{"cancelled", scheduler.Response{Cancelled: true}},
		{"failed", scheduler.Response{StatusCode: 503, EndOfStream: true}},
	}
	for _, tc := range cases {
		for _, s := range bothInflight(t, nil, "") {
			t.Run(tc.name+"/"+s.TypedName().Type, func(t *testing.T) { checkLifecycle(t, s, tc.resp) })
		}
	}
}

// checkLifecycle counts a request from PreRequest and releases it exactly
// once however its response ends.
func checkLifecycle(t *testing.T, s inflightScorer, resp scheduler.Response) {
	eps := scEndpoints(2, nil)
	st, other := scState(), scState()
	s.PreRequest(scCtx, st, scRequest(40, nil), scResult(eps[0], eps[1]))
	s.PreRequest(scCtx, other, scRequest(40, nil), scResult(eps[1]))
	if diff := cmp.Diff([]float64{1, 1}, loadOf(s, eps)); diff != "" {
		t.Fatalf("after PreRequest (-want +got):\n%s", diff)
	}
	s.ResponseHeaders(scCtx, st, nil, &resp)
	s.ResponseComplete(scCtx, st, nil, &resp)
	s.ResponseComplete(scCtx, st, nil, &resp) // a second release must not count
	if diff := cmp.Diff([]float64{0, 1}, loadOf(s, eps)); diff != "" {
		t.Fatalf("after completion (-want +got):\n%s", diff)
	}
}

func TestInflightFollowsServedEndpoint(t *testing.T) {
	t.Parallel()
	for _, s := range bothInflight(t, nil, "") {
		eps := scEndpoints(3, nil)
		st := scState()
		s.PreRequest(scCtx, st, scRequest(40, nil), scResult(eps[0], eps[1]))
		s.ResponseHeaders(scCtx, st, nil, &scheduler.Response{Served: " " + eps[1].HostPort + " "})
		if diff := cmp.Diff([]float64{0, 1, 0}, loadOf(s, eps)); diff != "" {
			t.Errorf("%s after served (-want +got):\n%s", s.TypedName().Type, diff)
		}
		s.ResponseHeaders(scCtx, st, nil, &scheduler.Response{}) // no served report: stays put
		s.ResponseComplete(scCtx, st, nil, &scheduler.Response{EndOfStream: true})
		if f, n := s.Tracker().Size(); f != 0 || n != 0 {
			t.Errorf("%s leaked %d flights on %d endpoints", s.TypedName().Type, f, n)
		}
	}
}

func TestInflightIgnoresUnscheduled(t *testing.T) {
	t.Parallel()
	for _, s := range bothInflight(t, nil, "") {
		st := scState()
		s.PreRequest(scCtx, st, nil, nil)
		s.PreRequest(scCtx, st, nil, &scheduler.Result{})
		s.ResponseHeaders(scCtx, st, nil, &scheduler.Response{Served: "10.0.0.1:1"})
		s.ResponseComplete(scCtx, st, nil, &scheduler.Response{})
		if f, n := s.Tracker().Size(); f != 0 || n != 0 {
			t.Errorf("%s tracked %d flights on %d endpoints", s.TypedName().Type, f, n)
		}
	}
}

// TestInflightTimeout checks that requestTimeout reaches the tracker; the
// sweep itself is tested in package inflight.
func TestInflightTimeout(t *testing.T) {
	t.Parallel()
	clock := newSCClock()
	for _, s := range bothInflight(t, scHandle(clock, nil), `{"requestTimeout":"2m"}`) {
		eps := scEndpoints(1, nil)
		old, young := scState(), scState()
		s.PreRequest(scCtx, old, scRequest(40, nil), scResult(eps[0]))
		clock.Advance(time.Minute)
		s.PreRequest(scCtx, young, scRequest(40, nil), scResult(eps[0]))
		clock.Advance(time.Minute)
		tr := s.Tracker()
		if expired, _ := tr.Sweep(clock.Now(), nil); expired != 1 {
			t.Fatalf("%s: expired %d requests, want 1", s.TypedName().Type, expired)
		}
		// The expired request's late completion must not release the other.
		s.ResponseComplete(scCtx, old, nil, &scheduler.Response{})
		if diff := cmp.Diff([]float64{1}, loadOf(s, eps)); diff != "" {
			t.Errorf("%s after late completion (-want +got):\n%s", s.TypedName().Type, diff)
		}
		s.ResponseComplete(scCtx, young, nil, &scheduler.Response{})
		if f, n := tr.Size(); f != 0 || n != 0 {
			t.Errorf("%s leaked %d flights on %d endpoints", s.TypedName().Type, f, n)
		}
	}
}

func TestInflightConcurrentHooks(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(20, nil)
	for _, s := range bothInflight(t, scHandle(newSCClock(), func() []*endpoint.Endpoint { return eps }), "") {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hammerInflight(t, s, eps, g)
			}()
		}
		wg.Add(1)
		go func() { // a sweeper racing the hooks, as Start would
			defer wg.Done()
			for range 50 {
				s.Tracker().Sweep(scEpoch, eps)
			}
		}()
		wg.Wait()
		if f, n := s.Tracker().Size(); f != 0 || n != 0 {
			t.Errorf("%s leaked %d flights on %d endpoints", s.TypedName().Type, f, n)
		}
	}
}

// hammerInflight runs many requests through every hook of s.
func hammerInflight(t *testing.T, s inflightScorer, eps []*endpoint.Endpoint, g int) {
	for i := range 300 {
		st := scState()
		req := scRequest(100, nil)
		if scores := s.Score(scCtx, st, req, eps); len(scores) != len(eps) {
			t.Errorf("got %d scores", len(scores))
		}
		s.PreRequest(scCtx, st, req, scResult(eps[(g+i)%len(eps)]))
		s.ResponseHeaders(scCtx, st, req, &scheduler.Response{Served: eps[i%len(eps)].HostPort})
		if tl, ok := s.(*TokenLoad); ok {
			tl.ResponseChunk(scCtx, st, req, &scheduler.Response{UsageKnown: true, Usage: request.Usage{PromptTokens: 5}}, nil)
		}
		s.ResponseComplete(scCtx, st, req, &scheduler.Response{Cancelled: i%2 == 0})
	}
}

// TestInflightStart runs the background sweep for real: a short timeout,
// the fake clock moved past it, and Start returning when its context ends.
func TestInflightStart(t *testing.T) {
	t.Parallel()
	clock := newSCClock()
	eps := scEndpoints(2, nil)
	for _, s := range bothInflight(t, scHandle(clock, func() []*endpoint.Endpoint { return eps }), `{"requestTimeout":"20ms"}`) {
		s.PreRequest(scCtx, scState(), scRequest(40, nil), scResult(eps[0]))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Start(ctx) }()
		clock.Advance(time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if f, _ := s.Tracker().Size(); f == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: background sweep never released the expired request", s.TypedName().Type)
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Start = %v", s.TypedName().Type, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Start did not return after cancel", s.TypedName().Type)
		}
	}
}
