package scorers

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// affinityFixture is a filter over four endpoints whose prompt of 10 blocks
// (16 tokens each) is held 10, 8, 5 and 0 blocks deep, with in-flight books
// the test fills.
type affinityFixture struct {
	f     *PrefixAffinity
	eps   []*endpoint.Endpoint
	books *inflight.Tracker
}

func newAffinityFixture(t *testing.T, raw string) affinityFixture {
	t.Helper()
	eps := scEndpoints(4, nil)
	m := prefix.NewMatch(10, 16)
	for i, blocks := range []int{10, 8, 5, 0} {
		m.Set(eps[i], blocks)
	}
	f := mustBuild[*PrefixAffinity](t, PrefixAffinityRegistration(), raw, nil)
	books := inflight.New(nil, time.Minute)
	f.source = &scSource{name: scheduler.TypedName{Type: "approx-prefix-cache-producer", Name: "p"}, match: m}
	f.inFlight = books
	return affinityFixture{f: f, eps: eps, books: books}
}

// load puts tokens in flight on endpoint i.
func (x affinityFixture) load(i, tokens int) {
	x.books.Start(scheduler.NewState(uint64(i+100), scEpoch), x.eps[i].HostPort, tokens)
}

func (x affinityFixture) kept(t *testing.T) []string {
	t.Helper()
	return addrs(x.f.Filter(scCtx, scState(), scRequest(640, nil), x.eps)...)
}

func TestPrefixAffinityNarrowsToSticky(t *testing.T) {
	t.Parallel()
	x := newAffinityFixture(t, "")
	if got, want := x.kept(t), addrs(x.eps[0], x.eps[1]); !slices.Equal(got, want) {
		t.Errorf("kept %v, want the endpoints holding >= 80%% of the prompt %v", got, want)
	}
	x = newAffinityFixture(t, `{"affinityThreshold":0.5}`)
	if got := x.kept(t); len(got) != 3 {
		t.Errorf("threshold 0.5 kept %v, want the three holding half or more", got)
	}
	for raw, want := range map[string]int{
		`{"affinityThreshold":0}`:        4, // off
		`{"explorationProbability":1}`:   4, // always exploring
		`{"affinityThreshold":0.01}`:     3, // any block held
		`{"tau":0.5,"epsilonExplore":0}`: 3, // GIE's names
	} {
		if got := newAffinityFixture(t, raw).kept(t); len(got) != want {
			t.Errorf("%s kept %v, want %d candidates", raw, got, want)
		}
	}
	x = newAffinityFixture(t, `{"affinityThreshold":1}`)
	if got := x.kept(t); !slices.Equal(got, addrs(x.eps[0])) {
		t.Errorf("threshold 1 kept %v, want the one holding the whole prompt", got)
	}
}

func TestPrefixAffinityPassesAllWithoutAMatch(t *testing.T) {
	t.Parallel()
	x := newAffinityFixture(t, "")
	x.f.source = &scSource{name: scheduler.TypedName{Type: "p", Name: "p"}, match: prefix.NewMatch(10, 16)} // no holder
	if got := x.kept(t); len(got) != 4 {
		t.Errorf("cold prompt: kept %v, want every candidate", got)
	}
	x.f.source = &scSource{name: scheduler.TypedName{Type: "p", Name: "p"}} // no match at all
	if got := x.kept(t); len(got) != 4 {
		t.Errorf("no match: kept %v, want every candidate", got)
	}
	if got := x.f.Filter(scCtx, scState(), scRequest(10, nil), x.eps[:1]); len(got) != 1 {
		t.Errorf("one candidate: kept %d", len(got))
	}
}

// TestPrefixAffinityLoadGate: at 15,928 tokens/s, 18 s of prefill is
// 286,704 tokens; the sticky endpoints are given up only when the least
// loaded of them is that much further behind the least loaded other one.
func TestPrefixAffinityLoadGate(t *testing.T) {
	t.Parallel()
	x := newAffinityFixture(t, "")
	x.load(0, 400_000)
	x.load(1, 300_000) // the best sticky one: 300,000 in flight
	x.load(2, 20_000)  // the best other one:   13,296 + 286,704 = 300,000 is the edge
	x.load(3, 13_296)
	if got := x.kept(t); len(got) != 2 {
		t.Errorf("penalty exactly 18 s: kept %v, want the sticky two", got)
	}
	x.load(1, 1_000) // 301,000
	if got := x.kept(t); len(got) != 4 {
		t.Errorf("penalty above 18 s: kept %v, want every candidate", got)
	}

	x = newAffinityFixture(t, `{"maxTTFTPenaltyMs":0}`)
	x.load(0, 10_000_000)
	x.load(1, 10_000_000)
	if got := x.kept(t); len(got) != 2 {
		t.Errorf("maxTTFTPenaltyMs 0: kept %v, want the sticky two however loaded", got)
	}

	// llm-d's guide counts the gate in tokens.
	x = newAffinityFixture(t, `{"maxTTFTPenaltyMs":0,"maxTokensInFlightPenalty":1000}`)
	x.load(0, 900) // the best sticky one, 900 ahead of the idle ones
	x.load(1, 1000)
	if got := x.kept(t); len(got) != 2 {
		t.Errorf("900 tokens ahead at a 1,000-token limit: kept %v, want the sticky two", got)
	}
	x.load(0, 200) // now 1,100 and 1,000: the best is 1,000 ahead, still within
	if got := x.kept(t); len(got) != 2 {
		t.Errorf("1,000 tokens ahead at a 1,000-token limit: kept %v, want the sticky two", got)
	}
	x.load(1, 200) // 1,100 and 1,200
	if got := x.kept(t); len(got) != 4 {
		t.Errorf("1,100 tokens ahead at a 1,000-token limit: kept %v, want every candidate", got)
	}

	x = newAffinityFixture(t, `{"maxTTFTPenaltyMs":100,"peakPrefillThroughput":1000}`)
	x.load(0, 150) // 150 ms behind the idle ones
	x.load(1, 150)
	if got := x.kept(t); len(got) != 4 {
		t.Errorf("150 ms behind at a 100 ms limit: kept %v, want every candidate", got)
	}
}

func TestPrefixAffinityParams(t *testing.T) {
	t.Parallel()
	reg := PrefixAffinityRegistration()
	if _, err := reg.Factory("x", defaultsJSON(t, reflect.TypeOf(reg.Params)), nil); err != nil {
		t.Errorf("documented defaults rejected: %v", err)
	}
	f := mustBuild[*PrefixAffinity](t, reg, `{"tau":0.99,"epsilonExplore":0.05}`, nil)
	if f.params.AffinityThreshold != 0.99 || f.params.ExplorationProbability != 0.05 {
		t.Errorf("GIE names: threshold %v, exploration %v; want 0.99, 0.05", f.params.AffinityThreshold, f.params.ExplorationProbability)
	}
	for raw, want := range map[string]string{
		`{"tau":0.9,"affinityThreshold":0.7}`:             "tau and affinityThreshold: give one of them",
		`{"affinityThreshold":1.5}`:                       "affinityThreshold: must be in [0, 1]",
		`{"explorationProbability":-0.1}`:                 "explorationProbability: must be in [0, 1]",
		`{"maxTTFTPenaltyMs":-1}`:                         "maxTTFTPenaltyMs: must be a finite number >= 0",
		`{"maxTokensInFlightPenalty":-1}`:                 "maxTokensInFlightPenalty: must be >= 0",
		`{"peakPrefillThroughput":0}`:                     "peakPrefillThroughput: must be a finite number > 0",
		`{"ttftSource":""}`:                               `ttftSource: must be "prefillThroughput" or "latencyPredictor"`,
		`{"ttftSource":"bogus"}`:                          `ttftSource: must be "prefillThroughput" or "latencyPredictor", got "bogus"`,
		`{"penaltyMode":"static"}`:                        `unknown field "penaltyMode"`,
		`{"inFlightLoadProducerName":""}`:                 "inFlightLoadProducerName: must name a plugin",
		`{"prefixMatchInfoProducerName":"","tau":"high"}`: "parameters",
	} {
		p, err := reg.Factory("x", json.RawMessage(raw), nil)
		if err == nil || p != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: plugin %v, err %v; want a nil plugin and an error containing %q", raw, p, err, want)
		}
	}
	if _, err := reg.Factory("x", json.RawMessage(`{"maxTTFTPenaltyMs":0,"peakPrefillThroughput":0}`), nil); err != nil {
		t.Errorf("peakPrefillThroughput 0 with the gate off: %v", err)
	}
}

func TestPrefixAffinityResolve(t *testing.T) {
	t.Parallel()
	src := &scSource{name: scheduler.TypedName{Type: "approx-prefix-cache-producer", Name: "approx-prefix-cache-producer"}}
	books := mustBuild[*InFlightLoad](t, InFlightLoadRegistration(), "", nil)
	plugins := map[string]scheduler.Plugin{src.name.Name: src, "inflight-load-producer": books, "other": scPlugin{}}
	h := scHandle(newSCClock(), nil).WithLookup(func(n string) (scheduler.Plugin, bool) { p, ok := plugins[n]; return p, ok })

	f := mustBuild[*PrefixAffinity](t, PrefixAffinityRegistration(), "", nil)
	if err := f.Resolve(h); err != nil || f.inFlight != books.Tracker() || f.source != src {
		t.Fatalf("Resolve: %v (books found %v, source found %v)", err, f.inFlight == books.Tracker(), f.source == src)
	}
	for raw, want := range map[string]string{
		`{"inFlightLoadProducerName":"missing"}`:    `no plugin named "missing"`,
		`{"inFlightLoadProducerName":"other"}`:      "keeps no in-flight books",
		`{"prefixMatchInfoProducerName":"nowhere"}`: `no plugin named "nowhere"`,
		`{"prefixMatchInfoProducerName":"other"}`:   "does not produce prefix matches",
	} {
		f := mustBuild[*PrefixAffinity](t, PrefixAffinityRegistration(), raw, nil)
		if err := f.Resolve(h); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Resolve = %v, want an error containing %q", raw, err, want)
		}
	}
	f = mustBuild[*PrefixAffinity](t, PrefixAffinityRegistration(), `{"maxTTFTPenaltyMs":0,"inFlightLoadProducerName":"missing"}`, nil)
	if err := f.Resolve(h); err != nil {
		t.Errorf("gate off: the books are not needed, got %v", err)
	}
}

// TestNewFiltersContract runs the filter contract (subset in order,
// deterministic for a seed, inputs untouched, safe concurrently) on the
// prefix and session filters, with a match and books that narrow.
func TestNewFiltersContract(t *testing.T) {
	t.Parallel()
	x := newAffinityFixture(t, `{"explorationProbability":0.3}`)
	plugintest.Filter(t, x.f, plugintest.Request("m", 400))
	session := mustBuild[*SessionAffinityFilter](t, SessionAffinityFilterRegistration(), `{"strategy":"session_id"}`, nil)
	req := plugintest.Request("m", 40)
	req.Headers = map[string]string{"x-session-id": "s"}
	eps := plugintest.Endpoints(7, 8) // the contract's 7-endpoint pool
	session.PreRequest(scCtx, scState(), req, scResult(eps[3]))
	plugintest.Filter(t, session, req)
}

// fakePredictor predicts fixed TTFTs by endpoint address.
type fakePredictor map[string]float64

func (f fakePredictor) PredictedTTFT(_ *scheduler.State, hostPort string) (float64, bool) {
	v, ok := f[hostPort]
	return v, ok
}

// TestPrefixAffinityPredictedTTFTGate: with ttftSource latencyPredictor
// the gate compares predicted TTFTs, and opens while predictions are
// missing, as upstream's does.
func TestPrefixAffinityPredictedTTFTGate(t *testing.T) {
	t.Parallel()
	x := newAffinityFixture(t, `{"ttftSource":"latencyPredictor","maxTTFTPenaltyMs":100}`)
	x.f.inFlight = nil // the fixture's books are not used by this gate
	pred := fakePredictor{x.eps[0].HostPort: 150, x.eps[1].HostPort: 120, x.eps[2].HostPort: 40, x.eps[3].HostPort: 30}
	x.f.predictor = pred
	if got := x.kept(t); len(got) != 2 {
		t.Errorf("best sticky 120 ms against 30 ms (90 ms behind): kept %v, want the sticky two", got)
	}
	pred[x.eps[1].HostPort] = 140
	if got := x.kept(t); len(got) != 4 {
		t.Errorf("best sticky 140 ms against 30 ms: kept %v, want every candidate", got)
	}
	x.f.predictor = fakePredictor{}
	if got := x.kept(t); len(got) != 4 {
		t.Errorf("no predictions: kept %v, want every candidate", got)
	}
	f := mustBuild[*PrefixAffinity](t, PrefixAffinityRegistration(), `{"ttftSource":"latencyPredictor"}`, nil)
	h := producerHandle(map[string]scheduler.Plugin{"approx-prefix-cache-producer": &scSource{name: scheduler.TypedName{Type: "approx-prefix-cache-producer", Name: "approx-prefix-cache-producer"}}})
	if err := f.Resolve(h); err == nil || !strings.Contains(err.Error(), `no plugin named "predicted-latency-producer"`) {
		t.Errorf("Resolve without a producer = %v", err)
	}
}
