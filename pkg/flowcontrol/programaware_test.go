package flowcontrol_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

func programAware(t *testing.T, params string, clock scheduler.Clock) *flowcontrol.ProgramAware {
	t.Helper()
	p, err := flowcontrol.ProgramAwareFactory("pa", json.RawMessage(params), &scheduler.Handle{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return p.(*flowcontrol.ProgramAware)
}

// serve runs one request of flow through the policy's hooks: promptTokens
// estimated at dispatch (4 bytes each), then usage reported at the end.
func serve(pa *flowcontrol.ProgramAware, flow string, promptTokens int, usage *request.Usage) {
	st := scheduler.NewState(1, time.Time{})
	req := &scheduler.Request{FairnessID: flow, Body: &request.Body{Prompt: make([]byte, 4*promptTokens)}}
	pa.PreRequest(bg, st, req, nil)
	resp := &scheduler.Response{}
	if usage != nil {
		resp.Usage, resp.UsageKnown = *usage, true
	}
	pa.ResponseComplete(bg, st, req, resp)
}

func service(t *testing.T, pa *flowcontrol.ProgramAware) map[string]float64 {
	t.Helper()
	b, err := json.Marshal(pa.DumpState())
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		MostServed []struct {
			Flow    string
			Service float64 `json:"attainedServiceTokens"`
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, r := range d.MostServed {
		out[r.Flow] = r.Service
	}
	return out
}

// TestProgramAwareAccounts: a flow is charged its prompt estimate at
// dispatch and its uncached prompt plus output at the end; service halves
// every half-life; idle flows are forgotten after the TTL.
func TestProgramAwareAccounts(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pa := programAware(t, `{"serviceHalfLifeSeconds": 10, "evictionTtlSeconds": 60, "evictionSweepSeconds": 1}`, clock)
	serve(pa, "agent-a", 1000, &request.Usage{PromptTokens: 1000, CachedTokens: 600, CompletionTokens: 50})
	serve(pa, "agent-b", 200, nil) // no usage: the estimate stands
	if got := service(t, pa); got["agent-a"] != 450 || got["agent-b"] != 200 {
		t.Errorf("service %v, want agent-a 400 uncached + 50 out, agent-b its 200-token estimate", got)
	}
	clock.Advance(10 * time.Second)
	if got := service(t, pa); got["agent-a"] != 225 {
		t.Errorf("after one half-life: %v", got)
	}
	clock.Advance(2 * time.Minute)
	serve(pa, "agent-c", 1, nil) // a dispatch runs the sweep
	if got := service(t, pa); len(got) != 1 || got["agent-c"] != 1 {
		t.Errorf("idle flows not forgotten: %v", got)
	}
}

// TestProgramAwareChoosesLeastServed: with las the flow that consumed less
// goes first even when the other's head waited longer; with rr turns are
// taken whatever the service.
func TestProgramAwareChoosesLeastServed(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pa := programAware(t, `{}`, clock)
	serve(pa, "heavy", 50_000, nil)
	serve(pa, "light", 500, nil)
	now := clock.Now()
	heads := []*scheduler.QueuedRequest{
		{FlowID: "heavy", Enqueued: now.Add(-2 * time.Second), Seq: 1},
		{FlowID: "light", Enqueued: now.Add(-time.Second), Seq: 2},
		{FlowID: "new", Enqueued: now.Add(-time.Second), Seq: 3},
	}
	fcfs := flowcontrol.NewFCFS("")
	if got := pa.NewChooser().Choose(heads, fcfs); heads[got].FlowID != "new" {
		t.Errorf("las chose %s, want the flow with no service yet", heads[got].FlowID)
	}
	if got := pa.NewChooser().Choose(heads[:2], fcfs); heads[got].FlowID != "light" {
		t.Errorf("las chose %s, want light over heavy", heads[got].FlowID)
	}
	// A head wait long enough outweighs service: 0.2 × its share of the
	// longest wait against 0.8 × the service gap.
	long := []*scheduler.QueuedRequest{{FlowID: "heavy", Enqueued: now.Add(-time.Hour), Seq: 1}, {FlowID: "heavy2", Enqueued: now, Seq: 2}}
	serve(pa, "heavy2", 50_000, nil)
	if got := pa.NewChooser().Choose(long, fcfs); long[got].FlowID != "heavy" {
		t.Errorf("equal service: chose %s, want the one waiting an hour", long[got].FlowID)
	}
	rr := programAware(t, `{"strategy": "rr"}`, clock)
	serve(rr, "heavy", 50_000, nil)
	c := rr.NewChooser()
	first, second := c.Choose(heads[:2], fcfs), c.Choose(heads[:2], fcfs)
	if first == second {
		t.Errorf("rr did not take turns: %d then %d", first, second)
	}
}

func TestProgramAwareParams(t *testing.T) {
	t.Parallel()
	for params, want := range map[string]string{
		`{"strategy": "drr"}`:          "drr (deficit round robin) is not implemented",
		`{"strategy": "fifo"}`:         "want las or rr",
		`{"lasDecayFactor": 0}`:        "lasDecayFactor: must be in (0, 1]",
		`{"evictionSweepSeconds": 0}`:  "evictionSweepSeconds: must be > 0",
		`{"weightService": -1}`:        "lasWeightService: must be >= 0",
		`{"lasHalfLifeSeconds": -5}`:   "lasHalfLifeSeconds",
		`{"weightServiceHead": 0.1}`:   "weightServiceHead",
		`{"evictionTtlSeconds": "1h"}`: "evictionTtlSeconds",
	} {
		_, err := flowcontrol.ProgramAwareFactory("pa", json.RawMessage(params), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", params, err, want)
		}
	}
}

// TestProgramAwareInTheController: queued requests of two agent sessions,
// one that consumed much and one that consumed little, leave the queue
// least served first, though the heavy session's arrived first.
func TestProgramAwareInTheController(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pa := programAware(t, `{}`, clock)
	h := newHarness(t, flowcontrol.Config{DefaultBand: flowcontrol.Band{Fairness: pa}, Now: clock.Now})
	serve(pa, "heavy", 40_000, nil)
	serve(pa, "light", 400, nil)
	results := make(chan string, 4)
	h.queueNamed(bg, "heavy-1", flowcontrol.Request{FlowID: "heavy"}, results)
	clock.Advance(time.Second)
	h.queueNamed(bg, "light-1", flowcontrol.Request{FlowID: "light"}, results)
	if got := h.releaseOne(results); got != "light-1" {
		t.Errorf("first released %s, want the light session's", got)
	}
	if got := h.releaseOne(results); got != "heavy-1" {
		t.Errorf("then %s", got)
	}
	if s := service(t, pa); math.Abs(s["heavy"]-40_000) > 1 {
		t.Errorf("service %v", s)
	}
}

// TestProgramAwareGauges: the accounts are served as llm-d's program-aware
// gauges (Jain's index, each flow's service and mean wait in flow control),
// and a reloaded policy keeps them (Inherit).
func TestProgramAwareGauges(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	reg := prometheus.NewPedanticRegistry()
	build := func() *flowcontrol.ProgramAware {
		p, err := flowcontrol.ProgramAwareFactory("pa", json.RawMessage(`{"lasDecayFactor": 1}`), &scheduler.Handle{Clock: clock, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		return p.(*flowcontrol.ProgramAware)
	}
	pa := build()
	waited := func(flow string, tokens int, wait time.Duration) {
		st := scheduler.NewState(1, time.Time{})
		req := &scheduler.Request{FairnessID: flow, QueueWait: wait, Body: &request.Body{Prompt: make([]byte, 4*tokens)}}
		pa.PreRequest(bg, st, req, nil)
		pa.ResponseComplete(bg, st, req, &scheduler.Response{})
	}
	waited("a", 300, 10*time.Millisecond)
	waited("a", 0, 60*time.Millisecond) // the average moves a fifth of the way: 10 + 0.2 × 50
	waited("b", 100, 0)
	want := `
# HELP llm_d_epp_program_aware_attained_service_tokens A flow's attained service (uncached prompt plus output tokens, decayed), as the policy ranks flows by it.
# TYPE llm_d_epp_program_aware_attained_service_tokens gauge
llm_d_epp_program_aware_attained_service_tokens{plugin_name="pa",program_id="a"} 300
llm_d_epp_program_aware_attained_service_tokens{plugin_name="pa",program_id="b"} 100
# HELP llm_d_epp_program_aware_avg_wait_time_milliseconds Moving average of a flow's requests' waits in flow control, in milliseconds.
# TYPE llm_d_epp_program_aware_avg_wait_time_milliseconds gauge
llm_d_epp_program_aware_avg_wait_time_milliseconds{plugin_name="pa",program_id="a"} 20
llm_d_epp_program_aware_avg_wait_time_milliseconds{plugin_name="pa",program_id="b"} 0
# HELP llm_d_epp_program_aware_jains_fairness_index Jain's fairness index over the flows' attained service (1: every flow got the same), by policy.
# TYPE llm_d_epp_program_aware_jains_fairness_index gauge
llm_d_epp_program_aware_jains_fairness_index{plugin_name="pa"} 0.8
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	reloaded := build()
	reloaded.Inherit(pa)
	pa = reloaded
	waited("b", 200, 0) // now both have 300: perfectly fair
	if got := service(t, pa); got["a"] != 300 || got["b"] != 300 {
		t.Errorf("after a reload: %v, want the accounts kept", got)
	}
	if n := gaugeValue(t, reg, "llm_d_epp_program_aware_jains_fairness_index"); n != 1 {
		t.Errorf("Jain's index after the reload %v, want 1", n)
	}
}

// gaugeValue is the value of the one series of gauge family name in g.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series of %s", name)
	return 0
}
