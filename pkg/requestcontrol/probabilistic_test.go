package requestcontrol

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func probabilistic(t *testing.T, raw string) *ProbabilisticAdmitter {
	t.Helper()
	p, err := ProbabilisticAdmitterFactory("shed", json.RawMessage(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*ProbabilisticAdmitter)
}

// loaded returns n endpoints with the given waiting queue and KV usage.
func loaded(n, queue int, kv float64) []*endpoint.Endpoint {
	eps := plugintest.Endpoints(n, 1)
	for _, e := range eps {
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: queue, KVCacheUsagePercent: kv, UpdateTime: time.Now()})
	}
	return eps
}

// shedShare admits n sheddable requests, each with its own seeded state,
// and returns the share refused.
func shedShare(t *testing.T, a *ProbabilisticAdmitter, eps []*endpoint.Endpoint, priority, n int) float64 {
	t.Helper()
	shed := 0
	for i := range n {
		req := plugintest.Request("m", 10)
		req.Priority = priority
		err := a.Admit(t.Context(), plugintest.State(uint64(i)), req, eps)
		if err != nil {
			if !errors.Is(err, scheduler.ErrRejected) || !strings.Contains(err.Error(), "shed by shed/probabilistic-admitter") {
				t.Fatalf("refusal %v: want a 429 (ErrRejected) naming the plugin", err)
			}
			shed++
		}
	}
	return float64(shed) / float64(n)
}

// TestProbabilisticAdmitterCurve: the share shed follows
// min(1, saturation^5 × 300) by the pool's mean load; other priorities pass.
func TestProbabilisticAdmitterCurve(t *testing.T) {
	t.Parallel()
	a := probabilistic(t, "")
	for _, tc := range []struct {
		queue int
		kv    float64
		want  float64 // shed probability
	}{
		{0, 0, 0},
		{0, 0.16, math.Pow(0.2, 5) * 300}, // KV 0.16/0.8 = 0.2: 9.6 %
		{1, 0.08, math.Pow(0.2, 5) * 300}, // queue 1/5 = 0.2 beats KV 0.1
		{1, 0.24, math.Pow(0.3, 5) * 300}, // 72.9 %
		{2, 0, 1},                         // 0.4: past (1/300)^(1/5)
	} {
		eps := loaded(4, tc.queue, tc.kv)
		got := shedShare(t, a, eps, -1, 4000)
		if math.Abs(got-tc.want) > 0.03 {
			t.Errorf("queue %d, KV %.2f: shed %.3f of sheddable requests, want %.3f", tc.queue, tc.kv, got, tc.want)
		}
		if got := shedShare(t, a, eps, 0, 200); got != 0 {
			t.Errorf("queue %d, KV %.2f: shed %.3f of priority-0 requests, want none", tc.queue, tc.kv, got)
		}
	}
	// An endpoint never scraped counts as fully loaded: half the pool
	// unknown is saturation 0.5 and everything sheddable is shed.
	eps := loaded(2, 0, 0)
	eps = append(eps, plugintest.Endpoints(2, 2)...)
	for _, e := range eps[2:] {
		e.SetMetrics(&endpoint.Metrics{})
	}
	if got := shedShare(t, a, eps, -1, 100); got != 1 {
		t.Errorf("half the pool never scraped: shed %.2f, want all", got)
	}
	if err := a.Admit(t.Context(), plugintest.State(1), &scheduler.Request{Priority: -1}, nil); err != nil {
		t.Errorf("no candidates: %v, want admitted", err)
	}
	// A smaller k sheds less at the same load: 0.2^5 × 100 = 3.2 %.
	if got := shedShare(t, probabilistic(t, `{"k":100}`), loaded(4, 0, 0.16), -1, 4000); math.Abs(got-0.032) > 0.015 {
		t.Errorf("k 100 at saturation 0.2: shed %.3f, want 0.032", got)
	}
}

func TestProbabilisticAdmitterParams(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`{"queueDepthThreshold":0}`:    "queueDepthThreshold: must be a finite number > 0",
		`{"kvCacheUtilThreshold":1.5}`: "kvCacheUtilThreshold: must be in (0, 1]",
		`{"power":0}`:                  "power: must be a finite number > 0",
		`{"k":-1}`:                     "k: must be a finite number > 0",
		`{"threshold":1}`:              `unknown field "threshold"`,
	} {
		p, err := ProbabilisticAdmitterFactory("x", json.RawMessage(raw), nil)
		if err == nil || p != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: plugin %v, err %v; want a nil plugin and an error containing %q", raw, p, err, want)
		}
	}
}
