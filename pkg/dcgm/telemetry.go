package dcgm

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/httppoll"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
)

// Aliases serve the poll-error counter as llm-d's data-layer poll errors
// too, beside the metrics scraper's and models-data-source's (told apart
// by source_type).
var Aliases = []promalias.Alias{httppoll.ErrorsAlias("openepp_dcgm_poll_errors_total", SourceType)}

// pollMetrics counts polls, their failures and the endpoints skipped; nil
// counts nothing.
type pollMetrics struct {
	polls   prometheus.Counter
	errors  httppoll.Failures
	skipped prometheus.Counter
}

func newPollMetrics(reg prometheus.Registerer) (*pollMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	polls, errs, err := httppoll.NewCounters(reg, httppoll.CounterOpts{
		Polls: "openepp_dcgm_polls_total", PollsHelp: "Polls of DCGM Exporters (dcgm-data-source).",
		Errors: "openepp_dcgm_poll_errors_total", ErrorsHelp: "Failed polls of DCGM Exporters, by reason."})
	if err != nil {
		return nil, err
	}
	skipped, err := promreg.Shared(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "openepp_dcgm_skipped_endpoints_total",
		Help: "Endpoints whose GPU utilization is not collected because they have no node address (dcgm-data-source with useNodeAddress), each counted once by each source."}))
	if err != nil {
		return nil, err
	}
	return &pollMetrics{polls: polls, errors: errs, skipped: skipped}, nil
}

func (m *pollMetrics) polled(reason string) {
	if m != nil {
		m.polls.Inc()
		m.errors.Count(reason)
	}
}

func (m *pollMetrics) skippedEndpoints(n int) {
	if m != nil {
		m.skipped.Add(float64(n))
	}
}
