package epp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openepp/openepp/pkg/promalias"
)

// TestMetricsPageServesBothNamings checks the served page: after one
// request it holds the request, scheduling, plugin, prefix-index and build
// families under GIE's names and under llm-d's, parses as Prometheus text
// (no family twice), and the llm-d copies carry llm-d's labels.
func TestMetricsPageServesBothNamings(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 2, 0)
	r.route(t, `{"model":"m","prompt":"count me in both namings"}`)
	page := r.metricsPage(t)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}
	pairs := [][2]string{
		{"inference_objective_request_total", "llm_d_epp_request_total"},
		{"inference_objective_request_sizes", "llm_d_epp_request_size_bytes"},
		{"inference_objective_running_requests", "llm_d_epp_request_running"},
		{"inference_extension_scheduler_e2e_duration_seconds", "llm_d_epp_scheduler_e2e_duration_seconds"},
		{"inference_extension_scheduler_attempts_total", "llm_d_epp_scheduler_attempts_total"},
		{"inference_extension_plugin_duration_seconds", "llm_d_epp_plugin_duration_seconds"},
		{"inference_extension_prefix_indexer_size", "llm_d_epp_prefix_indexer_size"},
		{"inference_extension_info", "llm_d_epp_info"},
	}
	for _, p := range pairs {
		for _, name := range p {
			if fams[name] == nil {
				t.Errorf("page lacks %s", name)
			}
		}
	}
	if t.Failed() {
		return
	}
	labels := func(name string) map[string]bool {
		have := map[string]bool{}
		for _, m := range fams[name].GetMetric() {
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = true
			}
		}
		return have
	}
	if fams["llm_d_router_epp_request_total"] == nil || fams["llm_d_router_epp_scheduler_attempts_total"] == nil {
		t.Error("llm-d's deprecated llm_d_router_epp_ twins are not served")
	}
	if fams["llm_d_inference_scheduler_request_total"] != nil {
		t.Error("llm_d_inference_scheduler_request_total served: llm-d kept that prefix for disaggregation and data-layer errors only")
	}
	if fams["llm_d_epp_flow_control_capacity_utilization_requests"] != nil {
		t.Error("flow-control utilization served with flow control off")
	}
	if l := labels("llm_d_epp_request_total"); !l["fairness_id"] || !l["priority"] {
		t.Errorf("llm_d_epp_request_total labels %v, want fairness_id and priority", l)
	}
	if l := labels("inference_objective_request_total"); l["fairness_id"] {
		t.Errorf("inference_objective_request_total has a fairness_id label: GIE's has none")
	}
	if l := labels("llm_d_epp_scheduler_attempts_total"); !l["endpoint_name"] || l["pod_name"] {
		t.Errorf("llm_d_epp_scheduler_attempts_total labels %v, want endpoint_name instead of pod_name", l)
	}
	gie := fams["inference_objective_request_total"].GetMetric()
	llmd := fams["llm_d_epp_request_total"].GetMetric()
	if len(gie) != 1 || len(llmd) != 1 || gie[0].GetCounter().GetValue() != 1 || llmd[0].GetCounter().GetValue() != 1 {
		t.Errorf("one request counted as GIE %v, llm-d %v; want 1 in each", gie, llmd)
	}
}

// TestAliasNamesAreUnique checks the alias tables: a second name never
// names a family that is recorded natively (the page could hold two
// families of one name), and aliases sharing a name (their series merge)
// are told apart by the labels they set.
func TestAliasNamesAreUnique(t *testing.T) {
	t.Parallel()
	byTo := map[string][]promalias.Alias{}
	from := map[string]bool{}
	for _, set := range aliasTables() {
		for _, a := range set {
			from[a.From] = true
			byTo[a.To] = append(byTo[a.To], a)
		}
	}
	for to, as := range byTo {
		if from[to] {
			t.Errorf("%s is both an alias and a recorded family", to)
		}
		seen := map[string]string{}
		for _, a := range as {
			key := fmt.Sprint(a.Set)
			if len(as) > 1 && len(a.Set) == 0 {
				t.Errorf("%s is the alias of several families, and %s sets no label to tell its series apart", to, a.From)
			}
			if prev, dup := seen[key]; dup {
				t.Errorf("%s: %s and %s set the same labels %s", to, prev, a.From, key)
			}
			seen[key] = a.From
		}
	}
}

// TestPluginCounterUnderLLMDName: a plugin's OpenEPP-named counter is served
// under llm-d's name too, with llm-d's label name.
func TestPluginCounterUnderLLMDName(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 2, 0, `--config-text=apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: lora-residency-filter
- type: random-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: lora-residency-filter}, {pluginRef: random-picker}]
`)
	r.route(t, `{"model":"m","prompt":"a decision to count"}`)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(r.metricsPage(t)))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}
	for _, name := range []string{"openepp_lora_residency_filter_decisions_total", "llm_d_epp_lora_residency_filter_decisions_total"} {
		total, plugin := 0.0, ""
		for _, m := range fams[name].GetMetric() {
			total += m.GetCounter().GetValue()
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "plugin" || lp.GetName() == "plugin_name" {
					plugin = lp.GetName() + "=" + lp.GetValue()
				}
			}
		}
		want := map[string]string{"openepp_lora_residency_filter_decisions_total": "plugin=lora-residency-filter",
			"llm_d_epp_lora_residency_filter_decisions_total": "plugin_name=lora-residency-filter"}[name]
		if total != 1 || plugin != want {
			t.Errorf("%s: %v decisions labelled %q, want 1 labelled %q", name, total, plugin, want)
		}
	}
}
