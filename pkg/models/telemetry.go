package models

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
)

// Aliases serve the poll-error counter as llm-d's data-layer poll errors
// too, beside the metrics scraper's (told apart by source_type).
var Aliases = []promalias.Alias{
	{From: "openepp_models_poll_errors_total", To: "llm_d_epp_datalayer_poll_errors_total",
		Sum: []string{"reason"}, Set: map[string]string{"source_type": SourceType}},
}

// pollMetrics counts polls and their failures; nil counts nothing.
type pollMetrics struct {
	polls  prometheus.Counter
	errors map[string]prometheus.Counter
}

func newPollMetrics(reg prometheus.Registerer) (*pollMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	polls, err := promreg.Shared(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "openepp_models_polls_total",
		Help: "Model-list polls of model servers (models-data-source)."}))
	if err != nil {
		return nil, err
	}
	errs, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "openepp_models_poll_errors_total",
		Help: "Failed model-list polls, by reason."}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	m := &pollMetrics{polls: polls, errors: map[string]prometheus.Counter{}}
	for _, r := range fetchfail.Reasons {
		m.errors[r] = errs.WithLabelValues(r)
	}
	return m, nil
}

func (m *pollMetrics) polled(reason string) {
	if m == nil {
		return
	}
	m.polls.Inc()
	if reason != "" {
		m.errors[reason].Inc()
	}
}

// responseMetrics counts the responder's answers by status code; nil
// counts nothing.
type responseMetrics struct {
	byCode *prometheus.CounterVec
}

func newResponseMetrics(reg prometheus.Registerer) (*responseMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	v, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "openepp_models_responses_total",
		Help: "GET /v1/models requests the EPP answered itself (models-responder), by status code."}, []string{"code"}))
	if err != nil {
		return nil, err
	}
	return &responseMetrics{byCode: v}, nil
}

func (m *responseMetrics) answered(code int) {
	if m != nil {
		m.byCode.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}
