package epp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/labelbudget"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

// TestFlowLabelsAreBudgeted: clients choose fairness IDs and model names,
// so past 1,000 distinct values they share the series "other", and the
// cache of series stays bounded.
func TestFlowLabelsAreBudgeted(t *testing.T) {
	m := newFlowMetrics(prometheus.NewRegistry(), "pool")
	for i := range maxFlowLabels + 50 {
		s := m.of(&scheduler.Request{FairnessID: fmt.Sprintf("tenant-%d", i), Priority: 1, IncomingModel: "m", Model: "m"})
		want := fmt.Sprintf("tenant-%d", i)
		if i >= maxFlowLabels {
			want = "other"
		}
		if s.values[0] != want || s.values[1] != "1" || s.values[2] != "pool" {
			t.Fatalf("request %d: labels %v, want fairness_id %s", i, s.values, want)
		}
	}
	s := m.of(&scheduler.Request{FairnessID: "tenant-0", IncomingModel: "new-model", Model: "new-model"})
	if s.values[3] != "new-model" {
		t.Errorf("model labels %v: the model budget is separate from the fairness budget", s.values)
	}
	if len(m.series) > 4*maxFlowLabels {
		t.Errorf("%d cached series", len(m.series))
	}
}

// TestIdleFlowsForgotten: with the flow budget full, flows idle for
// flowIdle give their series and cache entries up to new flows.
func TestIdleFlowsForgotten(t *testing.T) {
	m := newFlowMetrics(prometheus.NewRegistry(), "pool")
	m.flows = labelbudget.NewForgetting(2, time.Millisecond, m.forgetFlow)
	for _, id := range []string{"agent:a", "agent:b"} {
		m.of(&scheduler.Request{FairnessID: id, IncomingModel: "m", Model: "m"}).queued(1, 10)
	}
	time.Sleep(5 * time.Millisecond)
	if s := m.of(&scheduler.Request{FairnessID: "agent:c", IncomingModel: "m", Model: "m"}); s.values[0] != "agent:c" {
		t.Fatalf("a third flow with two idle ones: labelled %q", s.values[0])
	}
	if n := testutil.CollectAndCount(m.queueSize); n != 1 {
		t.Errorf("%d queue-size series, want agent:c's only", n)
	}
	if len(m.series) != 1 {
		t.Errorf("%d cached series, want 1", len(m.series))
	}
}

// BenchmarkFlowGateAdmit is what flow control adds to a request while the
// pool is not saturated: the controller's fast path plus the metrics, and
// with in-flight eviction on, the tracking of a sheddable request from
// dispatch to its end.
func BenchmarkFlowGateAdmit(b *testing.B) {
	for _, evict := range []bool{false, true} {
		b.Run(fmt.Sprintf("eviction=%v", evict), func(b *testing.B) {
			f := &flowControl{store: nil, metrics: newFlowMetrics(prometheus.NewRegistry(), "pool")}
			ctl, err := flowcontrol.New(flowcontrol.Config{Saturation: func(time.Time) float64 { return 0.5 }, PoolSize: func() int { return 1 }})
			if err != nil {
				b.Fatal(err)
			}
			g := &flowGate{ctl: ctl, metrics: f.metrics, direct: directPass{ctl}}
			if evict {
				series, err := newEvictionSeries(prometheus.NewRegistry())
				if err != nil {
					b.Fatal(err)
				}
				if g.evict, err = newFlowEviction(series, "pool", time.Second, time.Second); err != nil {
					b.Fatal(err)
				}
				g.evict.configure(&config.FlowPlan{Eviction: true})
			}
			req := &scheduler.Request{ID: "r", FairnessID: "tenant", Model: "m", IncomingModel: "m", Priority: -1, Headers: map[string]string{}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				pass, err := g.Admit(ctx, req, 1024)
				if err != nil {
					b.Fatal(err)
				}
				if r, ok := pass.(server.Revocable); ok {
					r.Dispatched(func() {})
				}
				pass.Scheduled()
				pass.Released()
			}
		})
	}
}

// TestFlowOutcomesCounted checks llm-d's outcome counter: one count per
// request that left flow control, under its outcome and priority.
func TestFlowOutcomesCounted(t *testing.T) {
	m := newFlowMetrics(prometheus.NewRegistry(), "pool")
	s := m.of(&scheduler.Request{FairnessID: "a", Priority: 2, IncomingModel: "m", Model: "m"})
	m.finished(s, flowcontrol.Dispatched, time.Millisecond)
	m.finished(s, flowcontrol.Dispatched, time.Millisecond)
	m.finished(s, flowcontrol.RejectedCapacity, 0)
	for outcome, want := range map[flowcontrol.Outcome]float64{flowcontrol.Dispatched: 2, flowcontrol.RejectedCapacity: 1} {
		if got := testutil.ToFloat64(m.outcomes.WithLabelValues(outcome.String(), "2", "pool")); got != want {
			t.Errorf("llm_d_epp_flow_control_requests_total{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
}

// TestStaleEndpointsGauge: llm-d's flow_control_stale_endpoints counts the
// endpoints the saturation detector finds stale, across every pool, under
// the detector's name, and is served only while the detector counts them.
func TestStaleEndpointsGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newFlowMetrics(reg, "")
	d, err := filters.NewUtilizationDetector("scraped", filters.DefaultUtilizationParams())
	if err != nil {
		t.Fatal(err)
	}
	never := endpoint.New(endpoint.Spec{Name: "a/0", Pool: "a", Address: "10.0.0.1", Port: 8000})
	fresh := endpoint.New(endpoint.Spec{Name: "b/0", Pool: "b", Address: "10.0.0.2", Port: 8000})
	fresh.SetMetrics(&endpoint.Metrics{UpdateTime: time.Now().Add(time.Hour)})
	fresh.SetStale(false)
	neverB := endpoint.New(endpoint.Spec{Name: "b/1", Pool: "b", Address: "10.0.0.3", Port: 8000})
	all := func() []*endpoint.Endpoint { return []*endpoint.Endpoint{never, fresh, neverB} }
	// Pool b is rated last: the gauge still counts pool a's endpoint.
	m.watchSaturation("a", func(time.Time) float64 { return 1 }, d, all)
	m.watchSaturation("b", func(time.Time) float64 { return 0.5 }, d, all)
	want := `
# HELP llm_d_epp_flow_control_stale_endpoints Endpoints whose metrics are missing or older than the saturation detector's staleness threshold.
# TYPE llm_d_epp_flow_control_stale_endpoints gauge
llm_d_epp_flow_control_stale_endpoints{detector="scraped"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "llm_d_epp_flow_control_stale_endpoints"); err != nil {
		t.Error(err)
	}
	m.watchSaturation("a", func(time.Time) float64 { return 0 }, nil, all)
	if n, err := testutil.GatherAndCount(reg, "llm_d_epp_flow_control_stale_endpoints"); err != nil || n != 0 {
		t.Errorf("%d series without a counting detector (%v)", n, err)
	}
}
