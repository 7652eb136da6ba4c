package server_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/extproc"
)

// series sums the value (counters, gauges) or observation count
// (histograms) of the series of name whose labels include want.
func series(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	var v float64
	for _, mf := range gather(t, reg) {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, w := range want {
				if have[k] != w {
					continue next
				}
			}
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v
}

// TestStreamingLatencyMetrics checks llm-d's per-request families: a
// streamed response is counted under its fairness ID with one time to
// first token, one gap per further chunk and one time per output token;
// the EPP's own time on the request and on the response is observed once.
func TestStreamingLatencyMetrics(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	s := h.open(t)
	d, err := s.SendRequest(testCtx(t), post("/v1/completions", completion("tell me a story"),
		"x-gateway-inference-fairness-id", "tenant-a"))
	if err != nil || d.Immediate != nil {
		t.Fatalf("routing: %v %+v", err, d.Immediate)
	}
	const chunk = 37
	if _, err := s.PlayResponse(testCtx(t), extproc.Response{Status: 200, ChunkSize: chunk, Body: sseBody,
		Headers: http.Header{"Content-Type": {"text/event-stream"}}}); err != nil {
		t.Fatal(err)
	}
	h.waitIdle(t)
	chunks := (len(sseBody) + chunk - 1) / chunk
	tenant := map[string]string{"fairness_id": "tenant-a", "priority": "0", "model_name": testModel}
	for name, want := range map[string]float64{
		"llm_d_epp_request_total":                  1,
		"llm_d_epp_request_running":                0,
		"llm_d_epp_request_duration_seconds":       1,
		"llm_d_epp_request_size_bytes":             1,
		"llm_d_epp_response_size_bytes":            1,
		"llm_d_epp_request_output_tokens":          1,
		"llm_d_epp_request_ntpot_seconds":          1,
		"llm_d_epp_request_streaming_tpot_seconds": 1, // 2 output tokens
		"llm_d_epp_request_streaming_itl_seconds":  float64(chunks - 1),
	} {
		if got := series(t, h.reg, name, tenant); got != want {
			t.Errorf("%s%v = %v, want %v", name, tenant, got, want)
		}
	}
	if got := series(t, h.reg, "llm_d_epp_request_ttft_seconds", map[string]string{"streaming": "true", "fairness_id": "tenant-a"}); got != 1 {
		t.Errorf("streamed time to first token observed %v times, want 1", got)
	}
	if got := series(t, h.reg, "llm_d_epp_request_ttft_seconds", map[string]string{"streaming": "false"}); got != 0 {
		t.Errorf("non-streamed time to first token observed %v times, want 0", got)
	}
	for _, name := range []string{"llm_d_epp_request_processing_duration_seconds", "llm_d_epp_response_processing_duration_seconds"} {
		if got := series(t, h.reg, name, nil); got != 1 {
			t.Errorf("%s observed %v times, want 1", name, got)
		}
	}
	// GIE's families are the same recording with the fairness ID summed away.
	if got := series(t, h.reg, "inference_objective_request_total", map[string]string{"model_name": testModel, "priority": "0"}); got != 1 {
		t.Errorf("inference_objective_request_total = %v, want 1", got)
	}
	if got := series(t, h.reg, "llm_d_epp_scheduler_attempts_total", map[string]string{"status": "success"}); got != 1 {
		t.Errorf("llm_d_epp_scheduler_attempts_total{status=success} = %v, want 1", got)
	}
}

// TestNonStreamingTTFT checks that a response that is not streamed counts
// its whole duration as time to first token, and no streaming gaps.
func TestNonStreamingTTFT(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	s, _ := h.routed(t, uuid.NewString())
	if _, err := s.PlayResponse(testCtx(t), extproc.Response{Status: 200, ChunkSize: 16, Body: jsonBody,
		Headers: http.Header{"Content-Type": {"application/json"}}}); err != nil {
		t.Fatal(err)
	}
	h.waitIdle(t)
	for labels, want := range map[string]float64{"false": 1, "true": 0} {
		if got := series(t, h.reg, "llm_d_epp_request_ttft_seconds", map[string]string{"streaming": labels, "fairness_id": "default-flow"}); got != want {
			t.Errorf("ttft{streaming=%s} observed %v times, want %v", labels, got, want)
		}
	}
	for _, name := range []string{"llm_d_epp_request_streaming_itl_seconds", "llm_d_epp_request_streaming_tpot_seconds"} {
		if got := series(t, h.reg, name, nil); got != 0 {
			t.Errorf("%s observed %v times for a JSON response, want 0", name, got)
		}
	}
}

// TestErrorMetricsLabels checks that a request refused before it was
// understood is counted under the fairness ID its headers named, in both
// naming schemes, and that the EPP's time to answer it is observed.
func TestErrorMetricsLabels(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	d := h.exchange(t, post("/v1/completions", []byte(`{"model":`), "x-gateway-inference-fairness-id", "tenant-b"))
	if d.Immediate == nil || d.Immediate.Status != 400 {
		t.Fatalf("malformed JSON answered %+v, want a 400", d)
	}
	h.waitIdle(t)
	if got := series(t, h.reg, "llm_d_epp_request_error_total", map[string]string{"fairness_id": "tenant-b", "error_code": "400"}); got != 1 {
		t.Errorf("llm_d_epp_request_error_total = %v, want 1", got)
	}
	if got := series(t, h.reg, "inference_objective_request_error_total", map[string]string{"error_code": "400"}); got != 1 {
		t.Errorf("inference_objective_request_error_total = %v, want 1", got)
	}
	if got := series(t, h.reg, "llm_d_epp_request_processing_duration_seconds", nil); got != 1 {
		t.Errorf("request processing observed %v times, want 1", got)
	}
}
