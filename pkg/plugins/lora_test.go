package plugins

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// loraResidencyConfig is an llm-d config routing LoRA traffic by adapter
// residency: the filter keeps an adapter on its servers while they have
// room, the scorer ranks by where the adapter lives.
const loraResidencyConfig = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: lora-residency-filter
  parameters:
    maxReplicas: 3
    queueThreshold: 4
    kvCacheThreshold: 0.9
- type: lora-load-state-scorer
  parameters:
    gpuResidentScore: 1.0
    cpuResidentScore: 0.7
    freeSlotScore: 0.6
    evictableScore: 0.3
    saturatedScore: 0.0
    placementBonus: 0.02
    headroomBonus: 0.02
    loadHorizonSeconds: 2
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: lora-residency-filter
  - pluginRef: lora-load-state-scorer
    weight: 2
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
`

// TestLoRAResidencyConfig: llm-d's residency plugins load from an llm-d
// file and route together: an adapter stays on the server holding it in a
// GPU slot, spreads to the server holding it in host memory once that one
// is saturated, and to a server without it once both are.
func TestLoRAResidencyConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eps := []*endpoint.Endpoint{
		endpoint.New(endpoint.Spec{Name: "home", Address: "10.1.0.1", Port: 8000}),
		endpoint.New(endpoint.Spec{Name: "warm", Address: "10.1.0.2", Port: 8000}),
		endpoint.New(endpoint.Spec{Name: "cold", Address: "10.1.0.3", Port: 8000}),
	}
	set := func(queues ...int) {
		held := []map[string]endpoint.LoRAResidence{{"sql": {OnGPU: true}}, {"sql": {}}, {}}
		onGPU := []int{1, 0, 0}
		for i, e := range eps {
			e.SetMetrics(&endpoint.Metrics{
				WaitingQueueSize: queues[i], LoRAResidency: held[i], MaxActiveModels: 4, GPULoadedAdapters: onGPU[i],
				LoRALoadSeconds: 0.5, LoRAActivateSeconds: 0.1, UpdateTime: time.Now(),
			})
		}
	}
	s, err := buildText(loraResidencyConfig, eps)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		queues []int
		want   string
	}{
		{[]int{3, 0, 0}, "home"}, // a shorter queue elsewhere does not pull it away
		{[]int{5, 1, 0}, "warm"},
		{[]int{5, 5, 0}, "cold"},
		{[]int{5, 5, 5}, "home"},
	} {
		set(tc.queues...)
		res, err := s.Schedule(ctx, s.NewState(), &scheduler.Request{ID: "r", Model: "sql"}, eps)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Targets()[0].Name; got != tc.want {
			t.Errorf("queues %v: routed to %s, want %s", tc.queues, got, tc.want)
		}
	}
}

func TestLoRAResidencyConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ from, to, want string }{
		{"    placementBonus: 0.02\n", "    placementBonus: 0.2\n", "placementBonus + headroomBonus: must stay below every gap between tiers"},
		{"    cpuResidentScore: 0.7\n", "    cpuResidentScore: 0.5\n", "freeSlotScore: must be <= cpuResidentScore (0.5)"},
		{"    maxReplicas: 3\n", "    maxReplicas: -1\n", "maxReplicas: must be >= 0"},
		{"    kvCacheThreshold: 0.9\n", "    kvCacheThreshold: 90\n", "kvCacheThreshold: must be in [0, 1]"},
	} {
		text := strings.Replace(loraResidencyConfig, tc.from, tc.to, 1)
		if _, err := buildText(text, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", strings.TrimSpace(tc.to), err, tc.want)
		}
	}
}
