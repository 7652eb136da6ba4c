package scorers

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestInFlightLoadBooks: a request weighs its uncached prompt tokens until
// its first token and counts as a request until it ends; with output
// estimates, the output part stays until the end.
func TestInFlightLoadBooks(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	m := prefix.NewMatch(25, 16)
	m.Set(eps[0], 10) // holds 160 of the prompt's 400 tokens
	src := &scSource{name: scheduler.TypedName{Type: "approx-prefix-cache-producer", Name: "approx-prefix-cache-producer"}, match: m}
	h := scHandle(newSCClock(), nil).WithLookup(func(n string) (scheduler.Plugin, bool) { return src, n == src.name.Name })

	for _, tc := range []struct {
		raw            string
		maxTokens      int // the request's max_tokens
		atStart, after int // tokens on eps[0] at PreRequest and after the first chunk
	}{
		{"", 0, 240, 0},
		{`{"addEstimatedOutputTokens":true}`, 0, 240 + 1000, 1000},
		{`{"includeOutputTokens":true,"maxEstimatedOutputTokens":300}`, 0, 240 + 300, 300},
		{`{"addEstimatedOutputTokens":true,"maxEstimatedOutputTokens":5000}`, 64, 240 + 64, 64},
	} {
		s := mustBuild[*InFlightLoad](t, InFlightLoadRegistration(), tc.raw, nil)
		if err := s.Resolve(h); err != nil {
			t.Fatalf("%s: Resolve: %v", tc.raw, err)
		}
		req := scRequest(1600, nil)
		req.Body.MaxTokens = tc.maxTokens
		st := scState()
		s.PreRequest(scCtx, st, req, scResult(eps[0]))
		if r, n := s.Tracker().Of(eps[0].HostPort); r != 1 || n != tc.atStart {
			t.Errorf("%s: at PreRequest %d requests, %d tokens; want 1, %d", tc.raw, r, n, tc.atStart)
		}
		chunk := []byte("data: {}\n\n")
		resp := &scheduler.Response{BodyBytes: len(chunk)}
		s.ResponseChunk(scCtx, st, req, resp, chunk)
		resp.BodyBytes += len(chunk)
		s.ResponseChunk(scCtx, st, req, resp, chunk)
		if r, n := s.Tracker().Of(eps[0].HostPort); r != 1 || n != tc.after {
			t.Errorf("%s: after the first token %d requests, %d tokens; want 1, %d", tc.raw, r, n, tc.after)
		}
		s.ResponseComplete(scCtx, st, req, resp)
		if r, n := s.Tracker().Of(eps[0].HostPort); r != 0 || n != 0 {
			t.Errorf("%s: after the end %d requests, %d tokens; want none", tc.raw, r, n)
		}
	}

	// Without the default prefix producer whole prompts count; a producer
	// named explicitly must exist.
	s := mustBuild[*InFlightLoad](t, InFlightLoadRegistration(), "", nil)
	if err := s.Resolve(scHandle(newSCClock(), nil)); err != nil {
		t.Fatalf("Resolve without a prefix producer: %v", err)
	}
	s.PreRequest(scCtx, scState(), scRequest(1600, nil), scResult(eps[1]))
	if _, n := s.Tracker().Of(eps[1].HostPort); n != 400 {
		t.Errorf("no prefix producer: %d tokens, want the whole prompt's 400", n)
	}
	s = mustBuild[*InFlightLoad](t, InFlightLoadRegistration(), `{"prefixMatchInfoProducerName":"mine"}`, nil)
	if err := s.Resolve(scHandle(newSCClock(), nil)); err == nil || !strings.Contains(err.Error(), `no plugin named "mine"`) {
		t.Errorf("Resolve with a missing named producer = %v", err)
	}
}

func TestInFlightLoadParams(t *testing.T) {
	t.Parallel()
	reg := InFlightLoadRegistration()
	if _, err := reg.Factory("x", defaultsJSON(t, reflect.TypeOf(reg.Params)), nil); err != nil {
		t.Errorf("documented defaults rejected: %v", err)
	}
	for raw, want := range map[string]string{
		`{"maxEstimatedOutputTokens":-1}`:    "maxEstimatedOutputTokens: must be >= 0",
		`{"prefixMatchInfoProducerName":""}`: "prefixMatchInfoProducerName: must name a plugin",
		`{"requestTimeout":0}`:               "requestTimeout: must be > 0",
		`{"outputRatio":1.5}`:                `unknown field "outputRatio"`,
	} {
		p, err := reg.Factory("x", json.RawMessage(raw), nil)
		if err == nil || p != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: plugin %v, err %v; want a nil plugin and an error containing %q", raw, p, err, want)
		}
	}
}

// TestTokenLoadReadsNamedBooks: given inFlightLoadProducerName, the scorer
// scores by that plugin's tokens, not its own estimate.
func TestTokenLoadReadsNamedBooks(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	producer := mustBuild[*InFlightLoad](t, InFlightLoadRegistration(), "", nil)
	plugins := map[string]scheduler.Plugin{"inflight-load-producer": producer, "other": scPlugin{}}
	h := scHandle(newSCClock(), nil).WithLookup(func(n string) (scheduler.Plugin, bool) { p, ok := plugins[n]; return p, ok })

	s := mustBuild[*TokenLoad](t, TokenLoadRegistration(), `{"queueThresholdTokens":1000,"inFlightLoadProducerName":"inflight-load-producer"}`, nil)
	if err := s.Resolve(h); err != nil {
		t.Fatal(err)
	}
	producer.PreRequest(scCtx, scState(), scRequest(1600, nil), scResult(eps[0])) // 400 prompt tokens
	if got := s.Score(scCtx, scState(), scRequest(10, nil), eps); got[0] != 0.6 || got[1] != 1 {
		t.Errorf("scores %v, want [0.6 1] from the producer's 400 tokens", got)
	}
	s = mustBuild[*TokenLoad](t, TokenLoadRegistration(), `{"inFlightLoadProducerName":"other"}`, nil)
	if err := s.Resolve(h); err == nil || !strings.Contains(err.Error(), "keeps no in-flight books") {
		t.Errorf("Resolve naming a plugin without books = %v", err)
	}
}

// pdResult is a disaggregated result: decode on the primary profile,
// prefill on the "prefill" one.
func pdResult(decode, prefill *endpoint.Endpoint) *scheduler.Result {
	r := scResult(decode)
	r.Profiles["prefill"] = &scheduler.ProfileResult{Targets: []*endpoint.Endpoint{prefill}}
	return r
}

// TestDisaggregatedRequestsChargeTheirPrefillEndpoint: the token books put
// a disaggregated request's prompt on its prefill endpoint until the first
// chunk (inflight-load-producer: the part that endpoint does not hold, the
// decode endpoint carrying only the output estimate; token-load-scorer: the
// prompt there, its usual estimate on the decode endpoint).
func TestDisaggregatedRequestsChargeTheirPrefillEndpoint(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	decode, prefill := eps[0], eps[1]
	m := prefix.NewMatch(25, 16)
	m.Set(prefill, 10) // the prefill endpoint holds 160 of the 400 prompt tokens
	src := &scSource{name: scheduler.TypedName{Type: "approx-prefix-cache-producer", Name: "approx-prefix-cache-producer"}, match: m}
	h := producerHandle(map[string]scheduler.Plugin{src.name.Name: src})

	producer := mustBuild[*InFlightLoad](t, InFlightLoadRegistration(), `{"addEstimatedOutputTokens":true}`, nil)
	if err := producer.Resolve(h); err != nil {
		t.Fatal(err)
	}
	tokenLoad := mustBuild[*TokenLoad](t, TokenLoadRegistration(), "", nil)
	for _, tc := range []struct {
		name  string
		books interface{ Tracker() *inflight.Tracker }
		hooks interface {
			scheduler.PreRequest
			scheduler.ResponseChunk
			scheduler.ResponseComplete
		}
		decodeTokens, prefillTokens int
	}{
		{"inflight-load-producer", producer, producer, 1000, 240},
		{"token-load-scorer", tokenLoad, tokenLoad, 400 + 600, 400},
	} {
		st, req := scState(), scRequest(1600, nil)
		tc.hooks.PreRequest(scCtx, st, req, pdResult(decode, prefill))
		tr := tc.books.Tracker()
		if r, n := tr.Of(prefill.HostPort); r != 1 || n != tc.prefillTokens {
			t.Errorf("%s: prefill endpoint carries %d requests, %d tokens; want 1, %d", tc.name, r, n, tc.prefillTokens)
		}
		if r, n := tr.Of(decode.HostPort); r != 1 || n != tc.decodeTokens {
			t.Errorf("%s: decode endpoint carries %d requests, %d tokens; want 1, %d", tc.name, r, n, tc.decodeTokens)
		}
		chunk := []byte("data: {}\n\n")
		tc.hooks.ResponseChunk(scCtx, st, req, &scheduler.Response{BodyBytes: len(chunk)}, chunk)
		if r, n := tr.Of(prefill.HostPort); r != 0 || n != 0 {
			t.Errorf("%s: after the first token the prefill endpoint carries %d requests, %d tokens", tc.name, r, n)
		}
		tc.hooks.ResponseComplete(scCtx, st, req, &scheduler.Response{})
		if f, n := tr.Size(); f != 0 || n != 0 {
			t.Errorf("%s: %d requests on %d endpoints after the end", tc.name, f, n)
		}
	}
}

// TestInFlightLoadGauges: while the producer runs, its books are served as
// llm-d's inflight_requests and inflight_tokens per endpoint of the pool; a
// reloaded instance takes the series over and the retired one's end does
// not remove them.
func TestInFlightLoadGauges(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	reg := prometheus.NewPedanticRegistry()
	h := scHandle(newSCClock(), func() []*endpoint.Endpoint { return eps })
	h.Registerer = reg
	build := func() *InFlightLoad {
		s, err := NewInFlightLoad("books", InFlightLoadParams{PrefixMatchInfoProducerName: "none", RequestTimeout: Duration(time.Minute)}, h)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	start := func(s *InFlightLoad) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = s.Start(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	page := func(requests, tokens int) string {
		return fmt.Sprintf(`
# HELP llm_d_epp_inflight_requests Requests this EPP has sent to each endpoint and not yet seen finish, by the in-flight load producer keeping the books.
# TYPE llm_d_epp_inflight_requests gauge
llm_d_epp_inflight_requests{endpoint_name=%q,namespace="ns",producer_name="books"} 0
llm_d_epp_inflight_requests{endpoint_name=%q,namespace="ns",producer_name="books"} %d
# HELP llm_d_epp_inflight_tokens Tokens in flight on each endpoint as the producer weighs them (prompt tokens not yet prefilled, plus output estimates when configured).
# TYPE llm_d_epp_inflight_tokens gauge
llm_d_epp_inflight_tokens{endpoint_name=%q,namespace="ns",producer_name="books"} 0
llm_d_epp_inflight_tokens{endpoint_name=%q,namespace="ns",producer_name="books"} %d
`, eps[0].Name, eps[1].Name, requests, eps[0].Name, eps[1].Name, tokens)
	}
	served := func(what string, want string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if err = testutil.GatherAndCompare(reg, strings.NewReader(want)); err == nil {
				return
			}
		}
		t.Fatalf("%s: %v", what, err)
	}
	old := build()
	stopOld := start(old)
	old.PreRequest(scCtx, scState(), scRequest(1600, nil), scResult(eps[1])) // 400 prompt tokens, none cached
	served("while running", page(1, 400))
	reloaded := build() // a reload: the new instance inherits the books, then starts
	reloaded.Inherit(old)
	stopNew := start(reloaded)
	stopOld()
	served("after a reload", page(1, 400))
	stopNew()
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("after the last instance stopped: %d series (%v), want none", n, err)
	}
}
