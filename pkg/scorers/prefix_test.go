package scorers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// Helpers here are prefixed "px" so they cannot collide with the other
// scorers' tests in this package.

// pxFixed is a prefix.Source that returns the same match for every request.
type pxFixed struct{ m *prefix.Match }

func (pxFixed) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "fixed-source", Name: "fixed"}
}

func (s pxFixed) Match(*scheduler.State) (*prefix.Match, bool) { return s.m, s.m != nil }

// pxNotSource is a plugin that produces no prefix matches.
type pxNotSource struct{}

func (pxNotSource) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "queue-scorer", Name: "q"}
}

// pxMaxPicker picks the highest total, breaking ties with State.Rand.
type pxMaxPicker struct{}

func (pxMaxPicker) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "max-score-picker", Name: "max"}
}

func (pxMaxPicker) Pick(_ context.Context, st *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	st.Rand.Shuffle(len(scored), func(i, j int) { scored[i], scored[j] = scored[j], scored[i] })
	best := scored[0]
	for _, s := range scored[1:] {
		if s.Score > best.Score {
			best = s
		}
	}
	return []*endpoint.Endpoint{best.Endpoint}, nil
}

// pxHandle resolves plugin names among plugins.
func pxHandle(plugins ...scheduler.Plugin) *scheduler.Handle {
	h := &scheduler.Handle{Log: logr.Discard()}
	return h.WithLookup(func(name string) (scheduler.Plugin, bool) {
		for _, p := range plugins {
			if p.TypedName().Name == name {
				return p, true
			}
		}
		return nil, false
	})
}

// pxRequest is a chat request whose prompt is text.
func pxRequest(text string) *scheduler.Request {
	prompt := []byte(`[{"role":"user","content":"` + text + `"}]`)
	return &scheduler.Request{ID: "r", Model: "m", IncomingModel: "m",
		Body: &request.Body{API: request.ChatCompletions, Model: "m", Prompt: prompt, Raw: prompt}}
}

func pxScorer(t testing.TB, raw string) *PrefixCache {
	t.Helper()
	p, err := PrefixCacheFactory(PrefixCacheType, json.RawMessage(raw), nil)
	if err != nil {
		t.Fatalf("factory(%s): %v", raw, err)
	}
	return p.(*PrefixCache)
}

// pxMatch returns a match of total blocks of 16 tokens in which eps[i] holds
// blocks[i].
func pxMatch(total int, eps []*endpoint.Endpoint, blocks ...int) *prefix.Match {
	m := prefix.NewMatch(total, 16)
	for i, b := range blocks {
		m.Set(eps[i], b)
	}
	return m
}

func TestPrefixCacheFormula(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	tests := []struct {
		name  string
		raw   string
		match *prefix.Match
		want  []float64
	}{
		{name: "ratio", raw: `{}`, match: pxMatch(10, eps, 0, 5, 10), want: []float64{0, 0.5, 1}},
		{name: "length only", raw: `{"matchLengthWeight":1,"matchLengthScaleTokens":160}`, match: pxMatch(10, eps, 0, 5, 10), want: []float64{0, 0.25, 1}},
		// w=0.5, S=320: b=5 → 0.5·(80/320)² + 0.5·0.5; b=10 → 0.5·(160/320)² + 0.5·1.
		{name: "blend", raw: `{"matchLengthWeight":0.5,"matchLengthScaleTokens":320}`, match: pxMatch(10, eps, 0, 5, 10), want: []float64{0, 0.28125, 0.625}},
		{name: "length saturates", raw: `{"matchLengthWeight":1,"matchLengthScaleTokens":16}`, match: pxMatch(10, eps, 0, 1, 10), want: []float64{0, 1, 1}},
		{name: "no match info", raw: `{}`, match: nil, want: []float64{0, 0, 0}},
		{name: "cold prompt", raw: `{}`, match: pxMatch(10, eps), want: []float64{0, 0, 0}},
		{name: "prompt shorter than a block", raw: `{}`, match: pxMatch(0, eps), want: []float64{0, 0, 0}},
		{name: "inconsistent match clamped", raw: `{}`, match: pxMatch(4, eps, 8), want: []float64{1, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pxScorer(t, tc.raw)
			s.source = pxFixed{tc.match}
			got := s.Score(context.Background(), plugintest.State(1), pxRequest("x"), eps)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
	unresolved := NewPrefixCache("p", DefaultPrefixCacheParams(), nil)
	if got := unresolved.Score(context.Background(), plugintest.State(1), pxRequest("x"), eps); !cmp.Equal(got, []float64{0, 0, 0}) {
		t.Errorf("unresolved scorer: %v, want zeros", got)
	}
}

func TestPrefixCacheParams(t *testing.T) {
	t.Parallel()
	def := DefaultPrefixCacheParams()
	if def.PrefixMatchInfoProducerName != prefix.ProducerType || def.MatchLengthWeight != 0 || def.MatchLengthScaleTokens != 8192 ||
		!def.AutoTune || def.BlockSizeTokens != 16 || def.MaxPrefixBlocksToMatch != 2048 || def.LRUCapacityPerServer != 31250 {
		t.Errorf("defaults: %+v", def)
	}
	// Upstream-compatible scoring matches GIE's 256-block window unless the
	// config says otherwise; the auto-created producer gets the same.
	upstream := &scheduler.Handle{UpstreamScoring: true}
	for raw, want := range map[string]int{"": prefix.UpstreamMaxPrefixBlocksToMatch, `{"maxPrefixBlocksToMatch": 512}`: 512} {
		pl, err := PrefixCacheFactory("p", json.RawMessage(raw), upstream)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := prefix.DecodeParams(json.RawMessage(raw), upstream)
		if got := pl.(*PrefixCache).params.MaxPrefixBlocksToMatch; err != nil || got != want || pr.MaxPrefixBlocksToMatch != want {
			t.Errorf("upstream scoring, params %q: scorer %d, producer %d (%v), want %d", raw, got, pr.MaxPrefixBlocksToMatch, err, want)
		}
	}
	tests := []struct {
		name    string
		raw     string
		wantErr string
		check   func(PrefixCacheParams) bool
	}{
		{name: "none", raw: ``, check: func(p PrefixCacheParams) bool { return p == def }},
		{name: "own parameters", raw: `{"prefixMatchInfoProducerName":"precise","matchLengthWeight":0.3,"matchLengthScaleTokens":4096}`,
			check: func(p PrefixCacheParams) bool {
				return p.PrefixMatchInfoProducerName == "precise" && p.MatchLengthWeight == 0.3
			}},
		{name: "producer parameters accepted", raw: `{"autoTune":false,"blockSizeTokens":32,"maxPrefixBlocksToMatch":64,"maxPrefixTokensToMatch":2048,"lruCapacityPerServer":1000}`,
			check: func(p PrefixCacheParams) bool { return p.BlockSizeTokens == 32 && !p.AutoTune }},
		{name: "deprecated blockSize converted", raw: `{"blockSize":128}`, check: func(p PrefixCacheParams) bool { return p.BlockSizeTokens == 32 }},
		{name: "unknown", raw: `{"matchLengthWeigth":0.3}`, wantErr: "unknown field"},
		{name: "weight below 0", raw: `{"matchLengthWeight":-0.1}`, wantErr: "matchLengthWeight: must be in [0, 1]"},
		{name: "weight above 1", raw: `{"matchLengthWeight":1.5}`, wantErr: "matchLengthWeight: must be in [0, 1]"},
		{name: "zero scale", raw: `{"matchLengthScaleTokens":0}`, wantErr: "matchLengthScaleTokens: must be >= 1"},
		{name: "empty producer name", raw: `{"prefixMatchInfoProducerName":""}`, wantErr: "prefixMatchInfoProducerName: must not be empty"},
		{name: "bad producer parameter", raw: `{"blockSizeTokens":0}`, wantErr: "blockSizeTokens"},
		{name: "conflicting block sizes", raw: `{"blockSize":64,"blockSizeTokens":16}`, wantErr: "blockSize"},
		{name: "wrong type", raw: `{"matchLengthWeight":"high"}`, wantErr: "matchLengthWeight"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := PrefixCacheFactory("p", json.RawMessage(tc.raw), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.(*PrefixCache).params; !tc.check(got) {
				t.Errorf("params %+v", got)
			}
		})
	}
	reg := PrefixCacheRegistration()
	if reg.Type != PrefixCacheType || reg.Factory == nil || reg.Params == nil {
		t.Errorf("registration incomplete: %+v", reg)
	}
}

func TestPrefixCacheResolve(t *testing.T) {
	t.Parallel()
	producer, err := prefix.NewProducer(prefix.ProducerType, prefix.DefaultParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	named := func(name, source string) *PrefixCache {
		p := DefaultPrefixCacheParams()
		p.PrefixMatchInfoProducerName = source
		return NewPrefixCache(name, p, nil)
	}
	direct, viaScorer := named("direct", prefix.ProducerType), named("via", "direct")
	self := named("self", "self")
	loopA, loopB := named("a", "b"), named("b", "a")
	dangling := named("dangling", "gone")
	wrong := named("wrong", "q")
	h := pxHandle(producer, direct, viaScorer, self, loopA, loopB, dangling, wrong, pxNotSource{})
	tests := []struct {
		scorer  *PrefixCache
		wantErr string
	}{
		{scorer: direct},
		{scorer: viaScorer},
		{scorer: self, wantErr: `"self" leads back to "self"`},
		{scorer: loopA, wantErr: `leads back to "a"`},
		{scorer: dangling, wantErr: `no plugin named "gone"`},
		{scorer: wrong, wantErr: `plugin "q" (type "queue-scorer") does not produce prefix matches`},
	}
	for _, tc := range tests {
		err := tc.scorer.Resolve(h)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: Resolve = %v, want error %q", tc.scorer.name.Name, err, tc.wantErr)
		}
	}
	if err := direct.Resolve(nil); err == nil {
		t.Error("Resolve(nil) succeeded")
	}
	// The scorer hands on its producer's match, so others can name it.
	st := plugintest.State(1)
	producer.Produce(context.Background(), st, pxRequest(strings.Repeat("a", 200)), nil)
	want, _ := producer.Match(st)
	if got, ok := viaScorer.Match(st); !ok || got != want {
		t.Errorf("scorer's Match = %p, %v; want the producer's %p", got, ok, want)
	}
}

// pxWarmScorer returns a scorer whose fixed match was made by the real
// producer: a prompt routed to a few of the conformance endpoints.
func pxWarmScorer(t *testing.T, raw string) *PrefixCache {
	t.Helper()
	producer, err := prefix.NewProducer(prefix.ProducerType, prefix.DefaultParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	eps := plugintest.Endpoints(100, 1) // same addresses as the conformance check's
	req := plugintest.Request("m", 4000)
	for i, e := range []*endpoint.Endpoint{eps[0], eps[3], eps[50]} {
		st := plugintest.State(1)
		r := plugintest.Request("m", 1000*(i+1))
		producer.Produce(context.Background(), st, r, eps)
		producer.PreRequest(context.Background(), st, r, &scheduler.Result{Primary: "d", Profiles: map[string]*scheduler.ProfileResult{"d": {Targets: []*endpoint.Endpoint{e}}}})
	}
	st := plugintest.State(1)
	producer.Produce(context.Background(), st, req, eps)
	m, _ := producer.Match(st)
	if m.Len() != 3 {
		t.Fatalf("warm match covers %d endpoints, want 3", m.Len())
	}
	s := pxScorer(t, raw)
	s.source = pxFixed{m}
	return s
}

func TestPrefixCacheConformance(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`{}`, `{"matchLengthWeight":0.5,"matchLengthScaleTokens":100}`} {
		plugintest.Scorer(t, pxWarmScorer(t, raw), plugintest.Request("m", 4000))
	}
	// Through the real producer too, with no match produced for the state.
	producer, err := prefix.NewProducer(prefix.ProducerType, prefix.DefaultParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	plugintest.Scorer(t, NewPrefixCache("p", DefaultPrefixCacheParams(), producer), plugintest.Request("m", 4000))
}

// TestPrefixCacheWithScheduler runs the producer and the scorer in the real
// scheduler: a request whose prompt extends an earlier one goes where the
// earlier one went.
func TestPrefixCacheWithScheduler(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(8, 1)
	h := pxHandle()
	producer, err := prefix.ProducerFactory(prefix.ProducerType, nil, h)
	if err != nil {
		t.Fatal(err)
	}
	scorer := pxScorer(t, `{}`)
	if err := scorer.Resolve(pxHandle(producer)); err != nil {
		t.Fatal(err)
	}
	profile := &scheduler.Profile{Name: "default", Picker: pxMaxPicker{}, Scorers: []scheduler.WeightedScorer{{Scorer: scorer, Weight: 1}}}
	sched, err := scheduler.New(scheduler.Options{Handler: profiles.NewSingle("single"), Profiles: []*scheduler.Profile{profile},
		Plugins: []scheduler.Plugin{producer, scorer}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	route := func(text string) *endpoint.Endpoint {
		st, req := sched.NewState(), pxRequest(text)
		res, err := sched.Schedule(context.Background(), st, req, eps)
		if err != nil {
			t.Fatal(err)
		}
		sched.PreRequest(context.Background(), st, req, res)
		return res.Targets()[0]
	}
	first := map[string]bool{}
	for i := range 12 {
		conversation := fmt.Sprintf("conversation %d: %s", i, strings.Repeat("tell me about prefix caching. ", 20))
		went := route(conversation)
		first[went.Name] = true
		for turn := range 3 {
			conversation += fmt.Sprintf(" answer %d, next question %d. ", turn, turn)
			if again := route(conversation); again != went {
				t.Errorf("conversation %d turn %d went to %s, not %s where its prefix is", i, turn, again.Name, went.Name)
			}
		}
	}
	if len(first) < 3 {
		t.Errorf("12 new conversations all went to %d endpoints; cold requests should spread", len(first))
	}
}

// BenchmarkPrefixCacheScore scores 100 endpoints for a warm request.
func BenchmarkPrefixCacheScore(b *testing.B) {
	eps := plugintest.Endpoints(100, 1)
	m := prefix.NewMatch(256, 16)
	for i, e := range eps[:10] {
		m.Set(e, 25*(i+1))
	}
	s := NewPrefixCache("p", DefaultPrefixCacheParams(), pxFixed{m})
	st, req := plugintest.State(1), plugintest.Request("m", 4000)
	b.ReportAllocs()
	for b.Loop() {
		s.Score(context.Background(), st, req, eps)
	}
}
