package latency

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
)

// Metric names: llm-d's, served under GIE's names too (Aliases).
const (
	metricPredictedTTFT  = "llm_d_epp_request_predicted_ttft_seconds"
	metricPredictedTPOT  = "llm_d_epp_request_predicted_tpot_seconds"
	metricTTFTPrediction = "llm_d_epp_request_ttft_prediction_duration_seconds"
	metricTPOTPrediction = "llm_d_epp_request_tpot_prediction_duration_seconds"
	metricSLOViolations  = "llm_d_epp_request_slo_violation_total"
	metricLastRequest    = "llm_d_epp_inference_request_metric"
)

// Aliases serve the predictor's metrics under GIE's names as well.
var Aliases = []promalias.Alias{
	{From: metricPredictedTTFT, To: "inference_objective_request_predicted_ttft_seconds"},
	{From: metricPredictedTPOT, To: "inference_objective_request_predicted_tpot_seconds"},
	{From: metricTTFTPrediction, To: "inference_objective_request_ttft_prediction_duration_seconds"},
	{From: metricTPOTPrediction, To: "inference_objective_request_tpot_prediction_duration_seconds"},
	{From: metricSLOViolations, To: "inference_objective_request_slo_violation_total"},
	{From: metricLastRequest, To: "inference_objective_inference_request_metric"},
}

// telemetry is what a producer records; the zero value records nothing.
type telemetry struct {
	predictedTTFT, predictedTPOT, ttftPrediction, tpotPrediction *prometheus.HistogramVec
	violations                                                   *prometheus.CounterVec
	// last is upstream's consolidated gauge: the latest request's value of
	// each type (ttft, predicted_ttft, ttft_prediction_duration,
	// ttft_slo_threshold, ttft_slo_violation, and the same for tpot).
	last *prometheus.GaugeVec
}

// modelLabels are the labels of every predictor metric (upstream's).
var modelLabels = []string{"model_name", "target_model_name"}

// newTelemetry registers the predictor's collectors with reg (none when
// reg is nil). Producers share them: a second producer, or the instance a
// reload builds, reuses what the first registered.
func newTelemetry(reg prometheus.Registerer) (telemetry, error) {
	if reg == nil {
		return telemetry{}, nil
	}
	latency := prometheus.ExponentialBuckets(0.005, 2, 20)
	perToken := prometheus.ExponentialBuckets(0.001, 2, 14)
	work := prometheus.ExponentialBuckets(1e-6, 4, 12)
	var t telemetry
	var errs []error
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		v, err := promreg.Shared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, modelLabels))
		errs = append(errs, err)
		return v
	}
	t.predictedTTFT = hist(metricPredictedTTFT, "TTFT the latency predictor predicted for the endpoint each request was sent to.", latency)
	t.predictedTPOT = hist(metricPredictedTPOT, "TPOT the latency predictor predicted for the endpoint each request was sent to.", perToken)
	t.ttftPrediction = hist(metricTTFTPrediction, "Time spent predicting TTFT for every candidate of a request (in process, with TPOT).", work)
	t.tpotPrediction = hist(metricTPOTPrediction, "Time spent predicting TPOT for every candidate of a request (in process, with TTFT).", work)
	violations, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricSLOViolations,
		Help: "Answered requests that missed the TTFT or TPOT objective of their SLO headers, by type."}, append(append([]string{}, modelLabels...), "type")))
	t.violations = violations
	last, lastErr := promreg.Shared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricLastRequest,
		Help: "The latest request's TTFT or TPOT, predicted value, prediction time and SLO threshold in seconds, and whether it missed the SLO (1/0), by type."},
		append(append([]string{}, modelLabels...), "type")))
	t.last = last
	return t, errors.Join(append(errs, err, lastErr)...)
}

// setLast sets the consolidated gauge's series of type kind for n's model.
func (t telemetry) setLast(n *note, kind string, v float64) {
	if t.last != nil {
		t.last.WithLabelValues(n.model, n.target, kind).Set(v)
	}
}
