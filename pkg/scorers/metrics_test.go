package scorers

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// scoreMetrics scores one endpoint per metrics snapshot.
func scoreMetrics(s scheduler.Scorer, req *scheduler.Request, ms []endpoint.Metrics) []float64 {
	eps := scEndpoints(len(ms), func(i int, m *endpoint.Metrics) { *m = ms[i] })
	if req == nil {
		req = scRequest(10, nil)
	}
	return s.Score(scCtx, scState(), req, eps)
}

func queues(qs ...int) []endpoint.Metrics {
	out := make([]endpoint.Metrics, len(qs))
	for i, q := range qs {
		out[i].WaitingQueueSize = q
	}
	return out
}

func TestQueueDepth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		metrics []endpoint.Metrics
		want    []float64
	}{
		{"empty", nil, []float64{}},
		{"single", queues(7), []float64{1}},
		{"all equal", queues(3, 3, 3), []float64{1, 1, 1}},
		{"all idle", queues(0, 0), []float64{1, 1}},
		{"linear between min and max", queues(0, 5, 10), []float64{1, 0.5, 0}},
		{"min not zero", queues(10, 4, 7), []float64{0, 1, 0.5}},
	}
	s := NewQueueDepth("q")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, scoreMetrics(s, nil, tc.metrics), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunningRequests(t *testing.T) {
	t.Parallel()
	running := func(rs ...int) []endpoint.Metrics {
		out := make([]endpoint.Metrics, len(rs))
		for i, r := range rs {
			out[i].RunningRequestsSize = r
		}
		return out
	}
	cases := []struct {
		name    string
		metrics []endpoint.Metrics
		want    []float64
	}{
		{"single", running(64), []float64{1}},
		{"all equal", running(8, 8), []float64{1, 1}},
		{"fewer is better", running(2, 4, 6), []float64{1, 0.5, 0}},
		{"ignores the queue", append(running(1, 3), endpoint.Metrics{RunningRequestsSize: 2, WaitingQueueSize: 100}), []float64{1, 0, 0.5}},
	}
	s := NewRunningRequests("r")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, scoreMetrics(s, nil, tc.metrics), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKVCacheUtilization(t *testing.T) {
	t.Parallel()
	var ms []endpoint.Metrics
	for _, u := range []float64{0, 0.25, 1, 1.5, -0.2, math.NaN(), math.Inf(1)} {
		ms = append(ms, endpoint.Metrics{KVCacheUsagePercent: u})
	}
	want := []float64{1, 0.75, 0, 0, 1, 0, 0}
	if diff := cmp.Diff(want, scoreMetrics(NewKVCacheUtilization("kv"), nil, ms), approx); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}
}

func TestLoRAAffinity(t *testing.T) {
	t.Parallel()
	set := func(names ...string) map[string]int {
		m := map[string]int{}
		for _, n := range names {
			m[n] = 0
		}
		return m
	}
	cases := []struct {
		name  string
		model string
		m     endpoint.Metrics
		want  float64
	}{
		{"active", "a", endpoint.Metrics{ActiveModels: set("a", "b"), MaxActiveModels: 2}, 1},
		{"active and waiting", "a", endpoint.Metrics{ActiveModels: set("a"), WaitingModels: set("a"), MaxActiveModels: 1}, 1},
		{"free slot", "c", endpoint.Metrics{ActiveModels: set("a"), MaxActiveModels: 2}, 0.8},
		{"capacity checked before waiting", "c", endpoint.Metrics{WaitingModels: set("c"), MaxActiveModels: 4}, 0.8},
		{"waiting, slots full", "c", endpoint.Metrics{ActiveModels: set("a"), WaitingModels: set("c"), MaxActiveModels: 2}, 0.6},
		{"slots full", "c", endpoint.Metrics{ActiveModels: set("a", "b"), MaxActiveModels: 2}, 0},
		{"waiting queue fills slots", "c", endpoint.Metrics{ActiveModels: set("a"), WaitingModels: set("b"), MaxActiveModels: 2}, 0},
		{"no LoRA capacity reported", "c", endpoint.Metrics{}, 0},
		{"base model, free slots", "base", endpoint.Metrics{ActiveModels: set("a"), MaxActiveModels: 4}, 0.8},
		{"base model, slots full", "base", endpoint.Metrics{ActiveModels: set("a"), MaxActiveModels: 1}, 0},
	}
	s := NewLoRAAffinity("lora")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := scRequest(10, nil)
			req.Model = tc.model
			if diff := cmp.Diff([]float64{tc.want}, scoreMetrics(s, req, []endpoint.Metrics{tc.m}), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadAware(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		threshold int
		metrics   []endpoint.Metrics
		want      []float64
	}{
		{"default threshold", 128, queues(0, 64, 128, 500), []float64{0.5, 0.25, 0, 0}},
		{"small threshold", 10, queues(0, 1, 5, 9, 10, 11), []float64{0.5, 0.45, 0.25, 0.05, 0, 0}},
		{"absolute, not relative", 10, queues(5, 5), []float64{0.25, 0.25}},
		{"negative queue treated as empty", 10, queues(-3), []float64{0.5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewLoadAware("la", LoadAwareParams{Threshold: tc.threshold})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, scoreMetrics(s, nil, tc.metrics), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}
