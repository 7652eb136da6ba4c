package epp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/dcgm"
	"github.com/openepp/openepp/pkg/disagg"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/latency"
	"github.com/openepp/openepp/pkg/metrics"
	"github.com/openepp/openepp/pkg/models"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/server"
)

// eppAliases are the families this package records under GIE's names,
// served under llm-d's too.
var eppAliases = []promalias.Alias{
	{From: "inference_extension_info", To: "llm_d_epp_info"},
	{From: "inference_extension_flow_control_request_queue_duration_seconds", To: "llm_d_epp_flow_control_request_queue_duration_seconds"},
	{From: "inference_extension_flow_control_queue_size", To: "llm_d_epp_flow_control_queue_size"},
	{From: "inference_extension_flow_control_queue_bytes", To: "llm_d_epp_flow_control_queue_bytes"},
	// llm-d rates prefill and decode apart and gates on their maximum, its stage="effective" series: the one
	// rating OpenEPP gates on.
	{From: "inference_extension_flow_control_pool_saturation", To: "llm_d_epp_flow_control_pool_saturation", Set: map[string]string{"stage": "effective"}},
	{From: "inference_extension_flow_control_request_enqueue_duration_seconds", To: "llm_d_epp_flow_control_request_enqueue_duration_seconds"},
	{From: "inference_extension_flow_control_dispatch_cycle_duration_seconds", To: "llm_d_epp_flow_control_dispatch_cycle_duration_seconds"},
	// llm-d's outcomes, except not_applicable: OpenEPP tells base_model and unreported apart.
	{From: filters.LoRAResidencyDecisionsMetric, To: "llm_d_epp_lora_residency_filter_decisions_total", Labels: map[string]string{"plugin": "plugin_name"}},
}

// metricsPage is what /metrics serves: every family under both GIE's
// names (inference_objective_*, inference_pool_*, inference_extension_*)
// and llm-d's (llm_d_epp_*), so dashboards and alerts of either project
// work unchanged. Each family is recorded once; the second name is made
// when the page is gathered.
func metricsPage(reg prometheus.Gatherer) prometheus.Gatherer {
	var all []promalias.Alias
	for _, set := range aliasTables() {
		all = append(all, set...)
	}
	return promalias.NewTwins(promalias.New(reg, all), legacyLLMDTwins...)
}

// legacyLLMDTwins are llm-d's deprecated names, which llm-d still serves
// beside its llm_d_epp_ families (dual emission) and which autoscalers and
// dashboards written for its earlier releases read: every family again as
// llm_d_router_epp_, and the disaggregation and data-layer error counters
// as llm_d_inference_scheduler_.
var legacyLLMDTwins = []promalias.Twins{
	{From: "llm_d_epp_", To: "llm_d_router_epp_"},
	{From: "llm_d_epp_", To: "llm_d_inference_scheduler_",
		Only: []string{"datalayer_poll_errors_total", "datalayer_extract_errors_total"}},
}

// aliasTables are the alias lists of every package that records metrics.
func aliasTables() [][]promalias.Alias {
	return [][]promalias.Alias{server.RequestAliases, metrics.TelemetryAliases, models.Aliases, dcgm.Aliases, prefix.Aliases, latency.Aliases, disagg.Aliases, eppAliases}
}
