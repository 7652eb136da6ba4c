package httppoll

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
)

// CounterOpts name a source's poll counters and say what they count.
type CounterOpts struct {
	Polls, PollsHelp   string // every poll
	Errors, ErrorsHelp string // the failed ones, by fetchfail reason
}

// Failures counts failed polls by fetchfail reason.
type Failures map[string]prometheus.Counter

// Count counts a poll that failed for reason; "" (it did not) counts
// nothing.
func (f Failures) Count(reason string) {
	if reason != "" {
		f[reason].Inc()
	}
}

// NewCounters registers a source's poll counters on reg (sharing them
// with another instance of the source), every failure reason created up
// front.
func NewCounters(reg prometheus.Registerer, o CounterOpts) (prometheus.Counter, Failures, error) {
	polls, err := promreg.Shared(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: o.Polls, Help: o.PollsHelp}))
	if err != nil {
		return nil, nil, err
	}
	errs, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: o.Errors, Help: o.ErrorsHelp}, []string{"reason"}))
	if err != nil {
		return nil, nil, err
	}
	failures := make(Failures, len(fetchfail.Reasons))
	for _, r := range fetchfail.Reasons {
		failures[r] = errs.WithLabelValues(r)
	}
	return polls, failures, nil
}

// ErrorsAlias serves a source's failed-poll counter, called name, as
// llm-d's data-layer poll errors too, told apart from the other sources'
// by source_type.
func ErrorsAlias(name, sourceType string) promalias.Alias {
	return promalias.Alias{From: name, To: "llm_d_epp_datalayer_poll_errors_total",
		Sum: []string{"reason"}, Set: map[string]string{"source_type": sourceType}}
}
