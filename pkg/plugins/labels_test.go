package plugins

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// llmdAttributeWeightExample is llm-d's documented region and GPU
// preference: one label-producer, two weight scorers, weighted random.
const llmdAttributeWeightExample = `apiVersion: llm-d.ai/v1
kind: EndpointPickerConfig
plugins:
- type: label-producer
  name: endpoint-labels
  parameters:
    labels:
    - label: topology.kubernetes.io/region
      attributeKey: region
    - label: nvidia.com/gpu.product
      attributeKey: gpu.product
- type: endpoint-attribute-weight-scorer
  name: region-preference
  parameters:
    attributeKey: region
    producer: endpoint-labels
    weights: {region-1: 2, region-2: 1}
- type: endpoint-attribute-weight-scorer
  name: gpu-preference
  parameters:
    attributeKey: gpu.product
    producer: endpoint-labels
    weights: {NVIDIA-H100: 2, NVIDIA-A100: 1}
- type: weighted-random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: region-preference
    weight: 3
  - pluginRef: gpu-preference
    weight: 1
  - pluginRef: weighted-random-picker
`

// llmdOlderGPUWeight is llm-d's older form: one label with valueType, a
// scorer naming no producer, and the pairing with the endpoint lifecycle
// source llm-d makes.
const llmdOlderGPUWeight = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: label-producer
  name: gpu-product
  parameters:
    label: nvidia.com/gpu.product
    attributeKey: gpu.product
    valueType: string
- type: endpoint-attribute-weight-scorer
  parameters:
    attributeKey: gpu.product
    weights:
      NVIDIA-H100: 4
      NVIDIA-L40S: 1
- type: endpoint-notification-source
- type: max-score-picker
dataLayer:
  sources:
  - pluginRef: endpoint-notification-source
    extractors:
    - pluginRef: gpu-product
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: endpoint-attribute-weight-scorer
  - pluginRef: max-score-picker
`

// labelledPool upserts one endpoint per label set into a datastore, as the
// pod reconciler does, and returns the store.
func labelledPool(labels ...map[string]string) *datastore.Store {
	store := datastore.New()
	for i, l := range labels {
		store.Upsert("pods", endpoint.Spec{Name: fmt.Sprintf("vllm-%d", i), Address: fmt.Sprintf("10.4.0.%d", i+1), Port: 8000, Labels: l})
	}
	return store
}

func gpuRegion(region, gpu string) map[string]string {
	return map[string]string{"topology.kubernetes.io/region": region, "nvidia.com/gpu.product": gpu}
}

// TestLLMDAttributeWeightExample: llm-d's example loads and totals 3 ×
// region + 1 × GPU as its table says (4, 3.5, 2.5, 2), so weighted random
// sends about (4 + 3.5) / 12 of the traffic to region-1.
func TestLLMDAttributeWeightExample(t *testing.T) {
	t.Parallel()
	eps := labelledPool(gpuRegion("region-1", "NVIDIA-H100"), gpuRegion("region-1", "NVIDIA-A100"),
		gpuRegion("region-2", "NVIDIA-H100"), gpuRegion("region-2", "NVIDIA-A100")).Snapshot()
	s, err := buildText(llmdAttributeWeightExample, eps)
	if err != nil {
		t.Fatal(err)
	}
	region1 := 0
	const n = 4000
	for i := range n {
		res, err := s.Schedule(context.Background(), s.NewState(), &scheduler.Request{ID: "r", Model: "m"}, eps)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if diff := cmp.Diff([]float64{4, 3.5, 2.5, 2}, res.Profiles["default"].Totals, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
				t.Errorf("totals (-want +got):\n%s", diff)
			}
		}
		if res.Targets()[0].Label("topology.kubernetes.io/region") == "region-1" {
			region1++
		}
	}
	if share := float64(region1) / n; share < 0.58 || share > 0.67 {
		t.Errorf("region-1 got %.3f of the traffic, want about 0.625", share)
	}
}

// TestLLMDOlderGPUWeight: the older form routes to the preferred GPU, an
// endpoint without the label or with an unlisted GPU scores as the weakest
// tier, and a relabelled pod is routed by its new label at once.
func TestLLMDOlderGPUWeight(t *testing.T) {
	t.Parallel()
	gpu := func(g string) map[string]string {
		if g == "" {
			return nil
		}
		return map[string]string{"nvidia.com/gpu.product": g}
	}
	store := labelledPool(gpu("NVIDIA-L40S"), gpu(""), gpu("NVIDIA-H100"), gpu("NVIDIA-T4"))
	s, err := buildText(llmdOlderGPUWeight, store.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	route := func() (string, []float64) {
		t.Helper()
		res, err := s.Schedule(context.Background(), s.NewState(), &scheduler.Request{ID: "r", Model: "m"}, store.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		return res.Targets()[0].Name, res.Profiles["default"].Totals
	}
	if got, totals := route(); got != "vllm-2" || !cmp.Equal(totals, []float64{0.25, 0.25, 1, 0.25}) {
		t.Errorf("routed to %s with totals %v, want vllm-2 (the H100) with [0.25 0.25 1 0.25]", got, totals)
	}
	// The H100 pod is relabelled L40S and the unlabelled one gets an H100.
	store.Upsert("pods", endpoint.Spec{Name: "vllm-2", Address: "10.4.0.3", Port: 8000, Labels: gpu("NVIDIA-L40S")})
	store.Upsert("pods", endpoint.Spec{Name: "vllm-1", Address: "10.4.0.2", Port: 8000, Labels: gpu("NVIDIA-H100")})
	if got, _ := route(); got != "vllm-1" {
		t.Errorf("after relabelling, routed to %s, want vllm-1", got)
	}
}

// labelNumbers publishes a numeric label for the numeric attribute plugins.
const labelNumbers = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: label-producer
  name: endpoint-labels
  parameters:
    labels:
    - label: example.com/gpu-memory-gb
      attributeKey: gpu.memory
      valueType: number
- type: endpoint-attribute-filter
  parameters:
    attribute: gpu.memory
    producer: endpoint-labels
    onMissing: Fail
    algorithm:
      type: threshold
      threshold: {operator: GreaterThanOrEqual, value: 48}
- type: endpoint-attribute-scorer
  parameters:
    attributeKey: gpu.memory
    producer: endpoint-labels
    algorithm:
      type: linear_lower_is_better
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: endpoint-attribute-filter
  - pluginRef: endpoint-attribute-scorer
  - pluginRef: max-score-picker
`

// TestLabelNumbersReachAttributePlugins: a label published as a number is
// an attribute like any other to endpoint-attribute-filter and -scorer:
// the smallest GPU with at least 48 GB wins; a missing or non-numeric
// label is a missing attribute.
func TestLabelNumbersReachAttributePlugins(t *testing.T) {
	t.Parallel()
	mem := func(v string) map[string]string { return map[string]string{"example.com/gpu-memory-gb": v} }
	eps := labelledPool(mem("24"), mem("80"), mem("48"), nil, mem("lots")).Snapshot()
	s, err := buildText(labelNumbers, eps)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Schedule(context.Background(), s.NewState(), &scheduler.Request{ID: "r", Model: "m"}, eps)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Profiles["default"]
	var kept []string
	for _, e := range p.Candidates {
		kept = append(kept, e.Name)
	}
	if diff := cmp.Diff([]string{"vllm-1", "vllm-2"}, kept); diff != "" {
		t.Errorf("filter kept (-want +got):\n%s", diff)
	}
	if got := res.Targets()[0].Name; got != "vllm-2" {
		t.Errorf("routed to %s, want vllm-2 (48 GB)", got)
	}
}

func TestLabelAttributeConfigErrors(t *testing.T) {
	t.Parallel()
	olderProducer := llmdOlderGPUWeight[strings.Index(llmdOlderGPUWeight, "- type: label-producer"):strings.Index(llmdOlderGPUWeight, "- type: endpoint-attribute-weight-scorer")]
	secondProducer := "- type: label-producer\n  name: more-labels\n  parameters: {label: zone, attributeKey: zone}\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"second label-producer", strings.Replace(llmdAttributeWeightExample, "- type: weighted-random-picker\n", secondProducer+"- type: weighted-random-picker\n", 1),
			`plugins[3]: plugin "more-labels": resolve: only one label-producer per config, and "endpoint-labels" is one`},
		{"no producer and no label-producer", strings.Replace(llmdOlderGPUWeight, olderProducer, "- type: topology-extractor\n  name: gpu-product\n", 1),
			`plugin "endpoint-attribute-weight-scorer": resolve: producer: required: the config has no label-producer`},
		{"zero weight", strings.Replace(llmdAttributeWeightExample, "region-2: 1}", "region-2: 0}", 1),
			`plugin "region-preference" of type "endpoint-attribute-weight-scorer": weights["region-2"]: must be a finite number > 0, got 0`},
		{"no weights", strings.Replace(llmdAttributeWeightExample, "    weights: {NVIDIA-H100: 2, NVIDIA-A100: 1}\n", "", 1),
			`plugin "gpu-preference" of type "endpoint-attribute-weight-scorer": weights: required`},
		{"duplicate attributeKey", strings.Replace(llmdAttributeWeightExample, "attributeKey: gpu.product\n- type", "attributeKey: region\n- type", 1),
			`labels[1].attributeKey: "region" is labels[0]'s already`},
		{"numeric consumer of a string label", strings.Replace(labelNumbers, "      valueType: number\n", "", 1),
			`plugin "endpoint-attribute-filter": resolve: producer "endpoint-labels" (label-producer): attribute "gpu.memory" (label "example.com/gpu-memory-gb") has valueType string, not number`},
	} {
		if _, err := buildText(tc.text, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}
