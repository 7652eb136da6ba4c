package helmchart

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/openepp/openepp/test/policy"
)

// TestLatencyPredictorProfile: latencyPredictor.enabled renders upstream's
// latency profile as default-plugins.yaml, and the EPP builds it with its
// in-process predictor; no sidecar is added.
func TestLatencyPredictorProfile(t *testing.T) {
	t.Parallel()
	objs := render(t, install{name: release, namespace: "ns", set: []string{modelApp, "inferenceExtension.latencyPredictor.enabled=true"}})
	cm := policy.Typed[corev1.ConfigMap](t, find(t, objs, "ConfigMap", eppName))
	text := cm.Data["default-plugins.yaml"]
	for _, want := range []string{"type: predicted-latency-producer", "ttftSource: latencyPredictor", "type: slo-headroom-tier-filter",
		"type: latency-scorer", "type: weighted-random-picker", "type: latency-slo-admitter"} {
		if !strings.Contains(text, want) {
			t.Errorf("default-plugins.yaml lacks %q:\n%s", want, text)
		}
	}
	buildsWithRealPlugins(t, text)
	dep, _ := deployment(t, objs)
	if n := len(dep.Spec.Template.Spec.Containers); n != 1 {
		t.Errorf("%d containers, want the EPP alone (no predictor sidecars)", n)
	}
}
