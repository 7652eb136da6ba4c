package latency

import (
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestProducerMetrics: predictions, prediction time and SLO misses are
// recorded under llm-d's names and served under GIE's; a second producer
// shares the collectors.
func TestProducerMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	clock := &testClock{now: time.Unix(1000, 0)}
	h := &scheduler.Handle{Log: logr.Discard(), Clock: clock, Registerer: reg}
	build := func() *Producer {
		pl, err := ProducerFactory(ProducerType, []byte(`{"streamingMode":true}`), h)
		if err != nil {
			t.Fatal(err)
		}
		return pl.(*Producer)
	}
	p := build()
	build() // a reload's second instance shares the collectors
	eps := endpoints(1)
	for i := range 60 { // 60 ms TTFT against a 50 ms objective: every answer misses
		req := chat(400+i, map[string]string{"x-slo-ttft-ms": "50"})
		req.IncomingModel, req.Model = "chat", "chat-v2"
		serve(p, clock, eps, 0, req, 60*time.Millisecond, 10*time.Millisecond)
	}
	if got := testutil.ToFloat64(p.telemetry.violations.WithLabelValues("chat", "chat-v2", "ttft")); got != 60 {
		t.Errorf("TTFT violations = %v, want 60", got)
	}
	page, err := promalias.New(reg, Aliases).Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, mf := range page {
		served[mf.GetName()] = true
	}
	for _, want := range []string{metricPredictedTTFT, "inference_objective_request_predicted_ttft_seconds",
		metricTTFTPrediction, "inference_objective_request_tpot_prediction_duration_seconds",
		metricSLOViolations, "inference_objective_request_slo_violation_total",
		metricLastRequest, "inference_objective_inference_request_metric"} {
		if !served[want] {
			t.Errorf("%s not served", want)
		}
	}
	if n := testutil.CollectAndCount(p.telemetry.predictedTTFT); n != 1 {
		t.Errorf("%d predicted-TTFT series, want 1 (predictions start after %d samples)", n, minSamples)
	}
	// Only TTFT misses: without a TPOT objective no TPOT series appears.
	if err := testutil.CollectAndCompare(p.telemetry.violations, strings.NewReader(`
# HELP llm_d_epp_request_slo_violation_total Answered requests that missed the TTFT or TPOT objective of their SLO headers, by type.
# TYPE llm_d_epp_request_slo_violation_total counter
llm_d_epp_request_slo_violation_total{model_name="chat",target_model_name="chat-v2",type="ttft"} 60
`)); err != nil {
		t.Error(err)
	}
	// The consolidated gauge holds the last answer: 60 ms TTFT against 50,
	// a miss; 10 ms TPOT without an objective; the last prediction.
	last := func(kind string) float64 {
		return testutil.ToFloat64(p.telemetry.last.WithLabelValues("chat", "chat-v2", kind))
	}
	for kind, want := range map[string]float64{"ttft": 0.06, "ttft_slo_threshold": 0.05, "ttft_slo_violation": 1, "tpot": 0.01} {
		if got := last(kind); got < want*0.999 || got > want*1.001 {
			t.Errorf("inference_request_metric{type=%q} = %v, want %v", kind, got, want)
		}
	}
	if got := last("predicted_ttft"); !(got > 0) {
		t.Errorf("predicted_ttft = %v, want the last prediction", got)
	}
	if n := testutil.CollectAndCount(p.telemetry.last); n != 8 {
		t.Errorf("%d consolidated series, want 8 (no TPOT objective: no tpot_slo_* series)", n)
	}
}
