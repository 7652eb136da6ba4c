package scorers

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// newBacklog builds a prefill-backlog scorer over a fixed match source.
func newBacklog(t *testing.T, params string, match *prefix.Match) *PrefillBacklog {
	t.Helper()
	s := mustBuild[*PrefillBacklog](t, PrefillBacklogRegistration(), params, nil)
	if match != nil {
		s.source = &scSource{name: scheduler.TypedName{Type: "p", Name: "p"}, match: match}
	}
	return s
}

func TestPrefillBacklogFormula(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	// A 4,000-byte prompt is 1,000 tokens: 62 blocks of 16 tokens (992).
	m := prefix.NewMatch(62, 16)
	m.Set(eps[0], 50) // holds 800 tokens: 200 uncached
	m.Set(eps[1], 10) // holds 160: 840 uncached
	req := scRequest(4000, nil)

	s := newBacklog(t, `{"baseTokens":100}`, m)
	// Costs 300, 940, 1,100: score best/cost.
	want := []float64{1, 300.0 / 940, 300.0 / 1100}
	if diff := cmp.Diff(want, s.Score(scCtx, scState(), req, eps), approx); diff != "" {
		t.Errorf("idle (-want +got):\n%s", diff)
	}

	// A request sent to endpoint 0 enters its 200 uncached tokens there:
	// costs 500, 940, 1,100.
	s.PreRequest(scCtx, scState(), req, scResult(eps[0]))
	want = []float64{1, 500.0 / 940, 500.0 / 1100}
	if diff := cmp.Diff(want, s.Score(scCtx, scState(), req, eps), approx); diff != "" {
		t.Errorf("one in the books (-want +got):\n%s", diff)
	}
	// Three more and endpoint 0 (1,100) is behind endpoint 1 (940).
	for range 3 {
		s.PreRequest(scCtx, scState(), req, scResult(eps[0]))
	}
	want = []float64{940.0 / 1100, 1, 940.0 / 1100}
	if diff := cmp.Diff(want, s.Score(scCtx, scState(), req, eps), approx); diff != "" {
		t.Errorf("backlog outweighs the cache (-want +got):\n%s", diff)
	}
}

func TestPrefillBacklogWithoutMatch(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	// No source, or a source with no match: the whole prompt is uncached
	// everywhere, so only the books tell endpoints apart.
	s := newBacklog(t, `{"baseTokens":1000}`, nil)
	if diff := cmp.Diff([]float64{1, 1}, s.Score(scCtx, scState(), scRequest(4000, nil), eps), approx); diff != "" {
		t.Errorf("idle (-want +got):\n%s", diff)
	}
	s.PreRequest(scCtx, scState(), scRequest(4000, nil), scResult(eps[1])) // 1,000 in the books
	if diff := cmp.Diff([]float64{1, 2000.0 / 3000}, s.Score(scCtx, scState(), scRequest(4000, nil), eps), approx); diff != "" {
		t.Errorf("one sent (-want +got):\n%s", diff)
	}
	// A bodyless request costs the base alone.
	if diff := cmp.Diff([]float64{1, 1000.0 / 2000}, s.Score(scCtx, scState(), &scheduler.Request{}, eps), approx); diff != "" {
		t.Errorf("bodyless (-want +got):\n%s", diff)
	}
	if got := s.Score(scCtx, scState(), nil, nil); len(got) != 0 {
		t.Errorf("no candidates: %v", got)
	}
}

func TestPrefillBacklogReleasesAtFirstChunk(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(1, nil)
	s := newBacklog(t, "", nil)
	tokens := func() int {
		_, n := s.Tracker().Of(eps[0].HostPort)
		return n
	}
	st := scState()
	s.PreRequest(scCtx, st, scRequest(400, nil), scResult(eps[0]))
	if got := tokens(); got != 100 {
		t.Fatalf("books after PreRequest: %d tokens, want 100", got)
	}
	resp := &scheduler.Response{}
	s.ResponseChunk(scCtx, st, nil, resp, nil) // Envoy may send empty chunks
	if got := tokens(); got == 0 {
		t.Fatal("an empty chunk released the request")
	}
	chunk := []byte("data: {}\n\n")
	resp.BodyBytes += len(chunk)
	s.ResponseChunk(scCtx, st, nil, resp, chunk)
	if got := tokens(); got != 0 {
		t.Fatalf("after the first token: %d tokens, want 0", got)
	}
	// Later chunks and the end change nothing.
	resp.BodyBytes += len(chunk)
	s.ResponseChunk(scCtx, st, nil, resp, chunk)
	s.ResponseComplete(scCtx, st, nil, resp)
	if f, n := s.Tracker().Size(); f != 0 || n != 0 {
		t.Fatalf("after completion: %d flights, %d endpoints", f, n)
	}

	// A request that ends without a chunk (an error with no body) is
	// released at its end.
	st = scState()
	s.PreRequest(scCtx, st, scRequest(400, nil), scResult(eps[0]))
	s.ResponseComplete(scCtx, st, nil, &scheduler.Response{Cancelled: true})
	if got := tokens(); got != 0 {
		t.Fatalf("after a bodiless end: %d tokens, want 0", got)
	}
	// Unscheduled requests are not entered.
	s.PreRequest(scCtx, scState(), scRequest(400, nil), &scheduler.Result{})
	if f, _ := s.Tracker().Size(); f != 0 {
		t.Fatalf("unscheduled request entered: %d flights", f)
	}
}

func TestPrefillBacklogResolve(t *testing.T) {
	t.Parallel()
	src := &scSource{name: scheduler.TypedName{Type: prefix.ProducerType, Name: prefix.ProducerType}, match: prefix.NewMatch(1, 16)}
	other := scPlugin{name: scheduler.TypedName{Type: "queue-scorer", Name: "q"}}
	plugins := map[string]scheduler.Plugin{prefix.ProducerType: src, "q": other}
	h := scHandle(newSCClock(), nil).WithLookup(func(name string) (scheduler.Plugin, bool) {
		p, ok := plugins[name]
		return p, ok
	})

	s := mustBuild[*PrefillBacklog](t, PrefillBacklogRegistration(), "", h)
	if err := s.Resolve(h); err != nil || s.source != src {
		t.Fatalf("Resolve = %v, source %v", err, s.source)
	}
	for raw, want := range map[string]string{
		`{"prefixMatchInfoProducerName":"missing"}`: `no plugin named "missing"`,
		`{"prefixMatchInfoProducerName":"q"}`:       "does not produce prefix matches",
	} {
		s := mustBuild[*PrefillBacklog](t, PrefillBacklogRegistration(), raw, h)
		if err := s.Resolve(h); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Resolve = %v, want %q", raw, err, want)
		}
	}
	if err := s.Resolve(nil); err == nil {
		t.Error("Resolve(nil) succeeded")
	}
	// Without any producer the error says how to add one.
	empty := scHandle(newSCClock(), nil).WithLookup(func(string) (scheduler.Plugin, bool) { return nil, false })
	s = mustBuild[*PrefillBacklog](t, PrefillBacklogRegistration(), "", empty)
	if err := s.Resolve(empty); err == nil || !strings.Contains(err.Error(), "list a prefix-cache-scorer, which adds one") {
		t.Errorf("Resolve without a producer = %v, want a hint", err)
	}
}

func TestPrefillBacklogParamErrors(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`{"baseTokens":0}`:                     "baseTokens: must be >= 1",
		`{"prefixMatchInfoProducerName":""}`:   "prefixMatchInfoProducerName: must name a plugin",
		`{"requestTimeout":"0s"}`:              "requestTimeout: must be > 0",
		`{"baseTokens":0,"requestTimeout":-1}`: "requestTimeout",
		`{"bogus":1}`:                          `unknown field "bogus"`,
	} {
		_, err := PrefillBacklogFactory("x", json.RawMessage(raw), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", raw, err, want)
		}
	}
}

func TestPrefillBacklogDumpsItsBooks(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	s := newBacklog(t, `{"baseTokens":10}`, nil)
	s.PreRequest(scCtx, scState(), scRequest(400, nil), scResult(eps[1]))
	st, ok := s.DumpState().(inflight.State)
	if !ok || st.Requests != 1 || st.Tokens != 100 || !st.TokensTracked {
		t.Fatalf("DumpState = %+v", s.DumpState())
	}
}
