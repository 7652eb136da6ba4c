package manifests

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The monitoring component's objects and the files they carry.
const (
	dashboardConfigMap = "openepp-dashboard"
	dashboardKey       = "openepp.json"
	dashboardFile      = "deploy/grafana/openepp.json"
	alertsFile         = "deploy/prometheus/openepp-alerts.yaml"
	// maxDashboardBytes leaves room in the 256 KiB of annotations that a
	// client-side kubectl apply fills with the whole object.
	maxDashboardBytes = 192 << 10
)

// TestMonitoringComponent enables components/monitoring and checks it adds
// exactly the dashboard ConfigMap, labelled for Grafana's sidecar and
// holding deploy/grafana/openepp.json, and a PrometheusRule holding the
// rules of deploy/prometheus/openepp-alerts.yaml (pkg/epp checks both files
// against the metrics the EPP serves). The API server accepts the
// ConfigMap; the PrometheusRule's CRD (Prometheus Operator) is not installed
// in the test cluster, so only its content is checked.
func TestMonitoringComponent(t *testing.T) {
	t.Parallel()
	objs := renderWith(t, "components/monitoring")
	if len(objs) != len(render(t))+2 {
		t.Errorf("with components/monitoring %d objects render, without %d: want 2 more", len(objs), len(render(t)))
	}
	dashboard := readFile(t, dashboardFile)
	if !bytes.Equal(readFile(t, "manifests/components/monitoring/"+dashboardKey), dashboard) {
		t.Errorf("manifests/components/monitoring/%s differs from %s: copy it again", dashboardKey, dashboardFile)
	}
	if len(dashboard) > maxDashboardBytes {
		t.Errorf("%s is %d bytes; keep it under %d so that kubectl apply can store it", dashboardFile, len(dashboard), maxDashboardBytes)
	}
	u := findIn(t, objs, "ConfigMap", dashboardConfigMap)
	cm := typed[corev1.ConfigMap](t, u)
	if got := cm.Labels["grafana_dashboard"]; got != "1" {
		t.Errorf("ConfigMap %q label grafana_dashboard = %q, want \"1\" (the sidecar's default)", dashboardConfigMap, got)
	}
	if got := cm.Data[dashboardKey]; got != string(dashboard) {
		t.Errorf("ConfigMap %q key %q is not %s", dashboardConfigMap, dashboardKey, dashboardFile)
	}
	dryRunApply(t, u, "the dashboard ConfigMap")

	rule := findIn(t, objs, "PrometheusRule", eppName)
	if rule.GetAPIVersion() != "monitoring.coreos.com/v1" || rule.GetNamespace() != cm.Namespace {
		t.Errorf("PrometheusRule %s in %q, want monitoring.coreos.com/v1 in the EPP's namespace %q",
			rule.GetAPIVersion(), rule.GetNamespace(), cm.Namespace)
	}
	var ruleFile map[string]any
	if err := yaml.Unmarshal(readFile(t, alertsFile), &ruleFile); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	spec, _ := rule.Object["spec"].(map[string]any)
	if diff := cmp.Diff(ruleFile, spec); diff != "" {
		t.Errorf("PrometheusRule spec differs from %s: copy its groups again (-file +rule):\n%s", alertsFile, diff)
	}
}
