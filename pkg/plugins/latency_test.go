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

// TestLatencyMonolithConfig: GIE v1.5.0's one-plugin form, as its guide
// lists it next to the prefix scorer, builds, predicts on its own (no
// separate producer is added) and schedules; an SLO admitter reads its
// predictions without being told where they are.
func TestLatencyMonolithConfig(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	s, err := buildText(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates:
- prepareDataPlugins
plugins:
- type: prefix-cache-scorer
  parameters:
    maxPrefixBlocksToMatch: 256
    lruCapacityPerServer: 31250
- type: predicted-latency-scorer
  parameters:
    sloBufferFactor: 1.0
    headroomSelectionStrategy: "least"
    samplingMean: 50
    maxSampledTokens: 10
- type: latency-slo-admitter
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
  - pluginRef: predicted-latency-scorer
  - pluginRef: max-score-picker
`, eps)
	if err != nil {
		t.Fatal(err)
	}
	monoliths := 0
	for _, p := range s.Plugins() {
		switch p.(type) {
		case *latency.Monolith:
			monoliths++
		case *latency.Producer:
			t.Errorf("a separate predicted-latency-producer %v was added", p.TypedName())
		}
	}
	if monoliths != 1 {
		t.Fatalf("%d predicted-latency-scorer instances, want 1", monoliths)
	}
	for range 5 {
		res, err := s.Schedule(t.Context(), s.NewState(), plugintest.Request("m", 100), eps)
		if err != nil || len(res.Targets()) != 1 {
			t.Fatalf("schedule: %v %v", res, err)
		}
	}
}
