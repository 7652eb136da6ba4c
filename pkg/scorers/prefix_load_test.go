package scorers

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// pxOccupied is a prefix source that also reports how many blocks each
// endpoint holds, by position.
type pxOccupied struct {
	m   *prefix.Match
	occ []float64
}

func (pxOccupied) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "occupied-source", Name: "occupied"}
}

func (s pxOccupied) Match(*scheduler.State) (*prefix.Match, bool) { return s.m, s.m != nil }

func (s pxOccupied) Occupancy(eps []*endpoint.Endpoint, out []float64) { copy(out, s.occ[:len(eps)]) }

func TestPrefixCacheColdSpread(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	tests := []struct {
		name  string
		raw   string
		match *prefix.Match
		occ   []float64
		want  []float64
	}{
		{name: "cold goes to the emptiest", raw: `{}`, match: pxMatch(10, eps), occ: []float64{10, 0, 5}, want: []float64{0, 1, 0.5}},
		{name: "spread scales the range", raw: `{"coldRequestSpread":0.5}`, match: pxMatch(10, eps), occ: []float64{10, 0, 5}, want: []float64{0, 0.5, 0.25}},
		{name: "spread 0 is upstream's zeros", raw: `{"coldRequestSpread":0}`, match: pxMatch(10, eps), occ: []float64{10, 0, 5}, want: []float64{0, 0, 0}},
		{name: "equal occupancy has no preference", raw: `{}`, match: pxMatch(10, eps), occ: []float64{7, 7, 7}, want: []float64{0, 0, 0}},
		{name: "warm requests ignore occupancy", raw: `{}`, match: pxMatch(10, eps, 0, 5, 10), occ: []float64{0, 100, 100}, want: []float64{0, 0.5, 1}},
		{name: "no blocks at all", raw: `{}`, match: pxMatch(0, eps), occ: []float64{10, 0, 5}, want: []float64{0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pxScorer(t, tc.raw)
			s.source = pxOccupied{m: tc.match, occ: tc.occ}
			got := s.Score(context.Background(), plugintest.State(1), pxRequest("x"), eps)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrefixCacheLoadBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		raw    string
		queues []int
		want   []float64
	}{
		// L = 4·(0 + 32) = 128.
		{name: "default bound", raw: `{}`, queues: []int{0, 100, 1000}, want: []float64{1, 1, 0.128}},
		// L = 4·(200 + 32) = 928: relative to the shortest queue.
		{name: "relative to the shortest", raw: `{}`, queues: []int{200, 900, 1856}, want: []float64{1, 1, 0.5}},
		{name: "tighter factor", raw: `{"loadBoundFactor":2,"loadBoundSlack":10}`, queues: []int{0, 20, 40}, want: []float64{1, 1, 0.5}},
		{name: "off", raw: `{"loadBoundFactor":0}`, queues: []int{0, 100, 100000}, want: []float64{1, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eps := scEndpoints(len(tc.queues), func(i int, m *endpoint.Metrics) { m.WaitingQueueSize = tc.queues[i] })
			s := pxScorer(t, tc.raw)
			s.source = pxFixed{pxMatch(4, eps, 4, 4, 4)}
			got := s.Score(context.Background(), plugintest.State(1), pxRequest("x"), eps)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrefixCacheNewParams(t *testing.T) {
	t.Parallel()
	def := DefaultPrefixCacheParams()
	if def.ColdRequestSpread != 1 || def.LoadBoundFactor != 4 || def.LoadBoundSlack != 32 {
		t.Errorf("defaults: %+v", def)
	}
	for raw, want := range map[string]string{
		`{"coldRequestSpread":1.5}`: "coldRequestSpread: must be in [0, 1]",
		`{"coldRequestSpread":-1}`:  "coldRequestSpread: must be in [0, 1]",
		`{"loadBoundFactor":0.5}`:   "loadBoundFactor: must be 0 (off) or in [1,",
		`{"loadBoundSlack":0}`:      "loadBoundSlack: must be in [1,",
	} {
		if _, err := PrefixCacheFactory("p", json.RawMessage(raw), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want one mentioning %q", raw, err, want)
		}
	}
	// The producer the config loader creates from the scorer's parameters
	// must accept (and ignore) the scorer's own.
	raw := json.RawMessage(`{"coldRequestSpread":0.5,"loadBoundFactor":2,"loadBoundSlack":8}`)
	if _, err := PrefixCacheFactory("p", raw, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := prefix.ProducerFactory(prefix.ProducerType, raw, nil); err != nil {
		t.Errorf("producer rejects the scorer's parameters: %v", err)
	}
}

// TestPrefixCacheColdSpreadWithProducer: through the real producer, cold
// prompts go where the index holds the least.
func TestPrefixCacheColdSpreadWithProducer(t *testing.T) {
	t.Parallel()
	producer, err := prefix.NewProducer(prefix.ProducerType, prefix.DefaultParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	eps := plugintest.Endpoints(3, 1)
	record := func(e *endpoint.Endpoint, r *scheduler.Request) {
		st := plugintest.State(1)
		producer.Produce(context.Background(), st, r, eps)
		producer.PreRequest(context.Background(), st, r, scResult(e))
	}
	record(eps[0], plugintest.Request("a", 4000)) // ep 0 holds many blocks
	record(eps[2], plugintest.Request("b", 1000)) // ep 2 a few, ep 1 none
	s := NewPrefixCache("p", DefaultPrefixCacheParams(), producer)
	st := plugintest.State(1)
	cold := plugintest.Request("c", 2000)
	producer.Produce(context.Background(), st, cold, eps)
	got := s.Score(context.Background(), st, cold, eps)
	if !(got[1] == 1 && got[0] == 0 && got[2] > 0 && got[2] < 1) {
		t.Errorf("cold scores %v: want the empty endpoint 1 at 1, the fullest 0 at 0", got)
	}
}

// TestPrefixCacheScoreAllocations: the cold spread and the load bound keep
// Score at one allocation, its result.
func TestPrefixCacheScoreAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	eps := plugintest.Endpoints(100, 1)
	producer, err := prefix.NewProducer(prefix.ProducerType, prefix.DefaultParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range eps[:20] {
		st := plugintest.State(1)
		r := plugintest.Request("m", 500*(i+1))
		producer.Produce(context.Background(), st, r, eps)
		producer.PreRequest(context.Background(), st, r, scResult(e))
	}
	s := NewPrefixCache("p", DefaultPrefixCacheParams(), producer)
	for name, req := range map[string]*scheduler.Request{"warm": plugintest.Request("m", 4000), "cold": plugintest.Request("other-model", 4000)} {
		st := plugintest.State(1)
		producer.Produce(context.Background(), st, req, eps)
		if allocs := testing.AllocsPerRun(50, func() { s.Score(context.Background(), st, req, eps) }); allocs > 1 {
			t.Errorf("%s: %v allocations per Score, want 1", name, allocs)
		}
	}
}

// TestPrefixCacheColdAdapterRequests: a cold request for a LoRA adapter is
// not spread by occupancy (where the adapter is loaded matters more; the
// load and LoRA scorers decide), one for the base model is.
func TestPrefixCacheColdAdapterRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		model string
		set   func(m *endpoint.Metrics)
		want  []float64
	}{
		{name: "base model the servers name", model: "m", set: func(m *endpoint.Metrics) { m.BaseModel = "m" },
			want: []float64{0, 1, 0.5}},
		{name: "adapter of a base the servers name", model: "sql-lora", set: func(m *endpoint.Metrics) { m.BaseModel = "m" },
			want: []float64{0, 0, 0}},
		{name: "adapter running somewhere, no base named", model: "sql-lora",
			set: func(m *endpoint.Metrics) { m.ActiveModels = map[string]int{"sql-lora": 0} }, want: []float64{0, 0, 0}},
		{name: "adapter waiting somewhere, no base named", model: "sql-lora",
			set: func(m *endpoint.Metrics) { m.WaitingModels = map[string]int{"sql-lora": 0} }, want: []float64{0, 0, 0}},
		{name: "nothing known: spread", model: "sql-lora", set: func(*endpoint.Metrics) {}, want: []float64{0, 1, 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eps := scEndpoints(3, func(_ int, m *endpoint.Metrics) { tc.set(m) })
			s := pxScorer(t, `{}`)
			s.source = pxOccupied{m: pxMatch(10, eps), occ: []float64{10, 0, 5}}
			req := pxRequest("x")
			req.Model = tc.model
			got := s.Score(context.Background(), plugintest.State(1), req, eps)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}
