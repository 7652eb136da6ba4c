package plugins

import (
	"testing"

	"github.com/openepp/openepp/pkg/latency"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// TestLatencyPredictorConfigs: the predicted-latency pair loads as GIE's
// and llm-d's configs list it, and a latency-scorer alone gets its
// producer, as llm-d adds it.
func TestLatencyPredictorConfigs(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	for _, text := range []string{`apiVersion: llm-d.ai/v1
kind: EndpointPickerConfig
plugins:
- type: predicted-latency-producer
  parameters: {streamingMode: true, sloBufferFactor: 0.9}
- type: latency-scorer
  parameters: {ttftWeight: 0.8, tpotWeight: 0.2, headroomSelectionStrategy: least}
- type: weighted-random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: latency-scorer
    weight: 3
  - pluginRef: weighted-random-picker
`, `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: latency-scorer
`, gieLatencyProfile} {
		s, err := buildText(text, eps)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range s.Plugins() {
			if _, ok := p.(*latency.Producer); ok {
				found = true
			}
		}
		if !found {
			t.Errorf("no predicted-latency-producer built for:\n%s", text)
		}
	}
}

// gieLatencyProfile is the latency-predictor profile of GIE's chart, as
// public descriptions of it list the plugins: the producer, a strict and a
// loose affinity filter gated by predicted TTFT, the headroom tier filter,
// the scorer, weighted random picking and the SLO admitter.
const gieLatencyProfile = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: predicted-latency-producer
  parameters: {streamingMode: true}
- name: strict-affinity-filter
  type: prefix-cache-affinity-filter
  parameters: {affinityThreshold: 0.99, ttftSource: latencyPredictor, maxTTFTPenaltyMs: 5000}
- name: loose-affinity-filter
  type: prefix-cache-affinity-filter
  parameters: {affinityThreshold: 0.80, ttftSource: latencyPredictor, maxTTFTPenaltyMs: 5000}
- type: slo-headroom-tier-filter
- type: latency-scorer
- type: weighted-random-picker
- type: latency-slo-admitter
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: predicted-latency-producer
  - pluginRef: strict-affinity-filter
  - pluginRef: slo-headroom-tier-filter
  - pluginRef: loose-affinity-filter
  - pluginRef: latency-scorer
  - pluginRef: weighted-random-picker
`
