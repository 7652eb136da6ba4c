package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/pickers"
	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// fixed is a scorer returning preset values (index-aligned).
type fixed struct {
	name   string
	scores []float64
}

func (f *fixed) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "fixed", Name: f.name}
}
func (f *fixed) Score(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	return append([]float64(nil), f.scores[:min(len(f.scores), len(eps))]...)
}

// dropAll is a filter that removes every endpoint.
type dropAll struct{}

func (dropAll) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "drop-all", Name: "drop"}
}
func (dropAll) Filter(context.Context, *scheduler.State, *scheduler.Request, []*endpoint.Endpoint) []*endpoint.Endpoint {
	return nil
}

func names(eps []*endpoint.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Name
	}
	return out
}

func maxScore(t *testing.T) scheduler.Picker {
	t.Helper()
	p, err := pickers.NewMaxScore("max", pickers.Params{MaxNumOfEndpoints: 3})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWeightedSumOfClampedScores(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	a := &fixed{name: "a", scores: []float64{0.2, 1.5, 0.5}}     // 1.5 clamps to 1
	b := &fixed{name: "b", scores: []float64{1, math.NaN(), -3}} // NaN and -3 clamp to 0
	short := &fixed{name: "short", scores: []float64{1}}         // wrong length: ignored
	p := &scheduler.Profile{Name: "p", Picker: maxScore(t), Scorers: []scheduler.WeightedScorer{{Scorer: a, Weight: 2}, {Scorer: b, Weight: 1}, {Scorer: short, Weight: 5}}}
	res, err := p.Run(context.Background(), plugintest.State(1), plugintest.Request("m", 10), eps)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]float64{1.4, 2, 1}, res.Totals); d != "" {
		t.Errorf("totals (-want +got)\n%s", d)
	}
	if d := cmp.Diff([]string{eps[1].Name, eps[0].Name, eps[2].Name}, names(res.Targets)); d != "" {
		t.Errorf("targets (-want +got)\n%s", d)
	}
	if got := p.Violations(); got != 4 { // 1.5, NaN, -3 and the misaligned scorer
		t.Errorf("violations = %d, want 4", got)
	}
}

func TestFilterRemovingLastEndpointIsNamed(t *testing.T) {
	t.Parallel()
	p := &scheduler.Profile{Name: "default", Filters: []scheduler.Filter{dropAll{}}, Picker: maxScore(t)}
	s, err := scheduler.New(scheduler.Options{Handler: profiles.NewSingle("single"), Profiles: []*scheduler.Profile{p}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Schedule(context.Background(), s.NewState(), plugintest.Request("m", 10), plugintest.Endpoints(4, 1))
	if !errors.Is(err, scheduler.ErrNoCandidates) {
		t.Fatalf("error %v does not wrap ErrNoCandidates", err)
	}
	if !strings.Contains(err.Error(), `"drop/drop-all"`) || !strings.Contains(err.Error(), "4") {
		t.Errorf("error %q should name the filter and the endpoints it removed", err)
	}
	if _, err := s.Schedule(context.Background(), s.NewState(), plugintest.Request("m", 10), nil); !errors.Is(err, scheduler.ErrNoCandidates) {
		t.Errorf("empty candidates: %v", err)
	}
}

func TestRegistryIsAValueAndRejectsDuplicates(t *testing.T) {
	t.Parallel()
	factory := func(string, json.RawMessage, *scheduler.Handle) (scheduler.Plugin, error) { return dropAll{}, nil }
	r1, r2 := scheduler.NewRegistry(), scheduler.NewRegistry()
	if err := r1.Register(scheduler.Registration{Type: "x", Factory: factory}); err != nil {
		t.Fatal(err)
	}
	if err := r1.Register(scheduler.Registration{Type: "x", Factory: factory}); err == nil {
		t.Error("duplicate type accepted")
	}
	if err := r1.Register(scheduler.Registration{Type: "y"}); err == nil {
		t.Error("registration without a factory accepted")
	}
	if _, ok := r2.Lookup("x"); ok {
		t.Error("registries share state")
	}
	if d := cmp.Diff([]string{"x"}, r1.Types()); d != "" {
		t.Errorf("types (-want +got)\n%s", d)
	}
}

func TestDecodeParamsIsStrict(t *testing.T) {
	t.Parallel()
	var p struct {
		N int `json:"n"`
	}
	if err := scheduler.DecodeParams([]byte(`{"n":1,"m":2}`), &p); err == nil {
		t.Error("unknown field accepted")
	}
	p.N = 0
	if err := scheduler.DecodeParams(nil, &p); err != nil || p.N != 0 {
		t.Errorf("nil params: %v, %+v", err, p)
	}
	if err := scheduler.DecodeParams([]byte(`{"n":"x"}`), &p); err == nil {
		t.Error("wrong type accepted")
	}
}

func TestStateKeysAreTyped(t *testing.T) {
	t.Parallel()
	k1 := scheduler.NewKey[int]("a")
	k2 := scheduler.NewKey[*string]("b")
	st := plugintest.State(1)
	if _, ok := k1.Get(st); ok {
		t.Error("empty state has a value")
	}
	k1.Set(st, 42)
	s := "x"
	k2.Set(st, &s)
	if v, ok := k1.Get(st); !ok || v != 42 {
		t.Errorf("k1 = %v, %v", v, ok)
	}
	if v, ok := k2.Get(st); !ok || *v != "x" {
		t.Errorf("k2 = %v, %v", v, ok)
	}
}

func TestSameSeedSameDecisions(t *testing.T) {
	t.Parallel()
	run := func() []string {
		picker, _ := pickers.RandomFactory("r", nil, nil)
		s, err := scheduler.New(scheduler.Options{Handler: profiles.NewSingle("single"), Seed: 99,
			Profiles: []*scheduler.Profile{{Name: "p", Picker: picker.(scheduler.Picker)}}})
		if err != nil {
			t.Fatal(err)
		}
		eps := plugintest.Endpoints(50, 1)
		var out []string
		for range 20 {
			res, err := s.Schedule(context.Background(), s.NewState(), plugintest.Request("m", 10), eps)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res.Targets()[0].Name)
		}
		return out
	}
	if d := cmp.Diff(run(), run()); d != "" {
		t.Errorf("two schedulers with the same seed decided differently (-1 +2)\n%s", d)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	picker := maxScore(t)
	tests := []struct {
		name string
		opts scheduler.Options
	}{
		{name: "no handler", opts: scheduler.Options{Profiles: []*scheduler.Profile{{Name: "p", Picker: picker}}}},
		{name: "no profile", opts: scheduler.Options{Handler: profiles.NewSingle("s")}},
		{name: "no picker", opts: scheduler.Options{Handler: profiles.NewSingle("s"), Profiles: []*scheduler.Profile{{Name: "p"}}}},
		{name: "duplicate", opts: scheduler.Options{Handler: profiles.NewSingle("s"), Profiles: []*scheduler.Profile{{Name: "p", Picker: picker}, {Name: "p", Picker: picker}}}},
	}
	for _, tc := range tests {
		if _, err := scheduler.New(tc.opts); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// rating is a saturation detector returning a preset value and recording
// the endpoints it was asked about.
type rating struct {
	value float64
	asked int
}

func (r *rating) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "rating", Name: "r"}
}
func (r *rating) Saturation(eps []*endpoint.Endpoint, _ time.Time) float64 {
	r.asked = len(eps)
	return r.value
}

// TestLegacyAdmissionShedsOnlySheddable checks upstream's admission without
// flow control: a request of negative priority is refused with ErrRejected
// while the candidates are saturated (>= 1); priority >= 0 never is, and
// nothing is shed below saturation.
func TestLegacyAdmissionShedsOnlySheddable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		saturation float64
		priority   int
		shed       bool
	}{
		{saturation: 1, priority: -1, shed: true},
		{saturation: 3.5, priority: -100, shed: true},
		{saturation: 0.99, priority: -1},
		{saturation: 5, priority: 0},
		{saturation: 5, priority: 2},
		{saturation: math.NaN(), priority: -1}, // no rating is not saturation
	}
	for _, tc := range tests {
		r := &rating{value: tc.saturation}
		p := &scheduler.Profile{Name: "default", Picker: maxScore(t)}
		s, err := scheduler.New(scheduler.Options{Handler: profiles.NewSingle("single"), Profiles: []*scheduler.Profile{p}, SaturationDetector: r})
		if err != nil {
			t.Fatal(err)
		}
		req := plugintest.Request("m", 10)
		req.Priority = tc.priority
		res, err := s.Schedule(context.Background(), s.NewState(), req, plugintest.Endpoints(4, 1))
		var shed *scheduler.ShedError
		switch {
		case tc.shed && (!errors.Is(err, scheduler.ErrRejected) || !errors.As(err, &shed)):
			t.Errorf("saturation %v priority %d: error %v, want a ShedError wrapping ErrRejected", tc.saturation, tc.priority, err)
		case tc.shed && (shed.Priority != tc.priority || shed.Saturation != tc.saturation || !strings.Contains(err.Error(), "r/rating")):
			t.Errorf("saturation %v priority %d: %+v (%q) does not describe the decision", tc.saturation, tc.priority, shed, err)
		case !tc.shed && (err != nil || len(res.Targets()) == 0):
			t.Errorf("saturation %v priority %d: not routed: %v", tc.saturation, tc.priority, err)
		}
		if want := map[bool]int{true: 4, false: 0}[tc.priority < 0]; r.asked != want {
			t.Errorf("priority %d: detector rated %d endpoints, want %d (only sheddable requests pay for a rating)", tc.priority, r.asked, want)
		}
	}
}

// timings records PluginTimer calls as "point name".
type timings struct {
	mu    sync.Mutex
	calls []string
}

func (r *timings) ObservePlugin(point string, p scheduler.TypedName, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		point += " (negative duration)"
	}
	r.calls = append(r.calls, point+" "+p.Name)
}

// keepAll is a filter that keeps every endpoint and records the request.
type keepAll struct{}

func (keepAll) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "keep-all", Name: "keep"}
}
func (keepAll) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	return eps
}
func (keepAll) PreRequest(context.Context, *scheduler.State, *scheduler.Request, *scheduler.Result) {}
func (keepAll) ResponseComplete(context.Context, *scheduler.State, *scheduler.Request, *scheduler.Response) {
}

// TestPluginTimer checks that every plugin call is reported under its
// extension point (upstream's names), in order.
func TestPluginTimer(t *testing.T) {
	t.Parallel()
	rec := &timings{}
	filter, scorer := keepAll{}, &fixed{name: "f", scores: []float64{0.1, 0.9}}
	p := &scheduler.Profile{Name: "default", Filters: []scheduler.Filter{filter}, Picker: maxScore(t),
		Scorers: []scheduler.WeightedScorer{{Scorer: scorer, Weight: 1}}}
	s, err := scheduler.New(scheduler.Options{Handler: profiles.NewSingle("single"), Profiles: []*scheduler.Profile{p},
		Plugins: []scheduler.Plugin{filter, scorer}, Timer: rec})
	if err != nil {
		t.Fatal(err)
	}
	state, req := s.NewState(), plugintest.Request("m", 10)
	res, err := s.Schedule(context.Background(), state, req, plugintest.Endpoints(2, 1))
	if err != nil {
		t.Fatal(err)
	}
	s.PreRequest(context.Background(), state, req, res)
	s.ResponseComplete(context.Background(), state, req, &scheduler.Response{})
	want := []string{"ProfilePicker single", "Filter keep", "Scorer f", "Picker max", "ProfilePicker single",
		"ProcessProfilesResults single", "PreRequest keep", "ResponseComplete keep"}
	if diff := cmp.Diff(want, rec.calls); diff != "" {
		t.Errorf("timed calls (-want +got):\n%s", diff)
	}
}
