package dcgm

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
)

// Aliases serve the poll-error counter as llm-d's data-layer poll errors
// too, beside the metrics scraper's and models-data-source's (told apart
// by source_type).
var Aliases = []promalias.Alias{
	{From: "openepp_dcgm_poll_errors_total", To: "llm_d_epp_datalayer_poll_errors_total",
		Sum: []string{"reason"}, Set: map[string]string{"source_type": SourceType}},
}

// pollMetrics counts polls, their failures and the endpoints skipped; nil
// counts nothing.
type pollMetrics struct {
	polls   prometheus.Counter
	errors  map[string]prometheus.Counter
	skipped prometheus.Counter
}

func newPollMetrics(reg prometheus.Registerer) (*pollMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	polls, err := promreg.Shared(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "openepp_dcgm_polls_total",
		Help: "Polls of DCGM Exporters (dcgm-data-source)."}))
	if err != nil {
		return nil, err
	}
	errs, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "openepp_dcgm_poll_errors_total",
		Help: "Failed polls of DCGM Exporters, by reason."}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	skipped, err := promreg.Shared(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "openepp_dcgm_skipped_endpoints_total",
		Help: "Endpoints whose GPU utilization is not collected because they have no node address (dcgm-data-source with useNodeAddress), each counted once by each source."}))
	if err != nil {
		return nil, err
	}
	m := &pollMetrics{polls: polls, errors: map[string]prometheus.Counter{}, skipped: skipped}
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

func (m *pollMetrics) skippedEndpoints(n int) {
	if m != nil {
		m.skipped.Add(float64(n))
	}
}
