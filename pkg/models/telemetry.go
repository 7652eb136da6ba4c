package models

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/httppoll"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
)

// Aliases serve the poll-error counter as llm-d's data-layer poll errors
// too, beside the metrics scraper's (told apart by source_type).
var Aliases = []promalias.Alias{httppoll.ErrorsAlias("openepp_models_poll_errors_total", SourceType)}

// pollMetrics counts polls and their failures; nil counts nothing.
type pollMetrics struct {
	polls  prometheus.Counter
	errors httppoll.Failures
}

func newPollMetrics(reg prometheus.Registerer) (*pollMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	polls, errs, err := httppoll.NewCounters(reg, httppoll.CounterOpts{
		Polls: "openepp_models_polls_total", PollsHelp: "Model-list polls of model servers (models-data-source).",
		Errors: "openepp_models_poll_errors_total", ErrorsHelp: "Failed model-list polls, by reason."})
	if err != nil {
		return nil, err
	}
	return &pollMetrics{polls: polls, errors: errs}, nil
}

func (m *pollMetrics) polled(reason string) {
	if m != nil {
		m.polls.Inc()
		m.errors.Count(reason)
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
