package disagg

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/labelbudget"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Metric names: llm-d's for the decision (GIE has none), ours for what
// llm-d does silently.
const (
	metricDecisions = "llm_d_epp_disagg_decision_total"
	metricSkipped   = "openepp_disagg_stage_skipped_total"
)

// Aliases serve the decision counter under llm-d's deprecated name as well,
// with the labels that name had (no plugin labels).
var Aliases = []promalias.Alias{
	{From: metricDecisions, To: "llm_d_inference_scheduler_disagg_decision_total", Sum: []string{"plugin_name", "plugin_type"}},
}

// Why a decided stage ran on the decode endpoint after all.
const (
	reasonNoEndpoint = "no-endpoint" // its profile found none
	reasonBusy       = "busy"        // the prefill pick's queue is over maxPrefillQueue
)

// maxModelLabels caps distinct model_name values, as llm-d does, so clients
// sending random model names cannot grow the series without bound.
const maxModelLabels = 1000

// decisionMetrics counts one handler's decisions per model; nil counts
// nothing.
type decisionMetrics struct {
	plugin      scheduler.TypedName
	decisions   *prometheus.CounterVec
	stageMissed *prometheus.CounterVec
	models      *labelbudget.Budget
}

// registerDecisionMetrics registers the counters on reg, or reuses the ones
// a previous handler registered (a config reload builds the new plugins
// before dropping the old), so the series continue. A nil reg gives nil.
func registerDecisionMetrics(reg prometheus.Registerer, plugin scheduler.TypedName) (*decisionMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	decisions, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricDecisions,
		Help: "Disaggregation decisions by handler, model and stages run (decode-only, prefill-decode, encode-decode, encode-prefill-decode)."},
		[]string{"plugin_name", "plugin_type", "model_name", "decision_type"}))
	if err != nil {
		return nil, err
	}
	skipped, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricSkipped,
		Help: "Requests whose disaggregated stage was decided but ran on the decode endpoint: no endpoint for it, or the prefill pick busy."},
		[]string{"stage", "reason"}))
	if err != nil {
		return nil, err
	}
	return &decisionMetrics{plugin: plugin, decisions: decisions, stageMissed: skipped, models: labelbudget.New(maxModelLabels)}, nil
}

func (m *decisionMetrics) decided(model, decision string) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(m.plugin.Name, m.plugin.Type, m.models.Value(model), decision).Inc()
}

func (m *decisionMetrics) skipped(stage, reason string) {
	if m == nil {
		return
	}
	m.stageMissed.WithLabelValues(stage, reason).Inc()
}
