package plugins_test

import (
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/plugins"
)

// TestBandedUsageLimitsLoad: llm-d's priority-aware usage-limit policies
// load as llm-d's guides write them and become the flow plan's policy.
func TestBandedUsageLimitsLoad(t *testing.T) {
	t.Parallel()
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	for typ, plugin := range map[string]string{
		flowcontrol.PriorityHoldbackType: `- type: priority-holdback-policy
  name: my-holdback-policy
  parameters: {shape: linear, domain: rank, minCeiling: 0.4, maxCeiling: 0.9}`,
		flowcontrol.SoftReflectiveCeilingType: `- type: soft-reflective-ceiling-policy
  name: my-holdback-policy`,
	} {
		text := `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: queue-scorer
` + plugin + `
flowControl:
  usageLimitPolicyPluginRef: my-holdback-policy
`
		cfg, err := config.Load([]byte(text))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		b, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if p := b.FlowControl(); p == nil || p.UsageLimit == nil || p.UsageLimit.TypedName().Type != typ {
			t.Errorf("%s: flow plan %+v", typ, p)
		}
	}
}

// TestProgramAwareFairnessLoads: llm-d's coding-agent guide's flow control
// (agent-identity sessions, program-aware-fairness, concurrency-detector)
// loads, and the policy is among the scheduler's plugins, so its
// PreRequest and ResponseComplete hooks see every request.
func TestProgramAwareFairnessLoads(t *testing.T) {
	t.Parallel()
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]byte(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: agent-identity
- type: queue-scorer
- type: program-aware-fairness
  parameters: {strategy: las, weightService: 0.8, weightServiceHeadWait: 0.2, serviceHalfLifeSeconds: 60}
- type: concurrency-detector
  parameters: {maxConcurrency: 133}
saturationDetector: {pluginRef: concurrency-detector}
flowControl:
  defaultPriorityBand:
    fairnessPolicyRef: program-aware-fairness
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	p := b.FlowControl()
	if p == nil || p.DefaultBand.Fairness == nil || p.DefaultBand.Fairness.TypedName().Type != flowcontrol.ProgramAwareType {
		t.Fatalf("flow plan %+v", p)
	}
	hooked := false
	for _, pl := range b.Scheduler.Plugins() {
		hooked = hooked || pl == p.DefaultBand.Fairness
	}
	if !hooked {
		t.Error("the fairness policy is not among the scheduler's plugins: its hooks would not run")
	}
}

// TestEvictionPoliciesLoad: llm-d configs that declare the eviction
// policies beside enableEviction load; the policies take no parameters and
// say so.
func TestEvictionPoliciesLoad(t *testing.T) {
	t.Parallel()
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	build := func(filterParams string) (*config.Built, error) {
		cfg, err := config.Load([]byte(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: queue-scorer
- type: concurrency-detector
- type: sheddable-eviction-filter` + filterParams + `
- type: priority-then-time-eviction-order-policy
flowControl:
  saturationDetector: {pluginRef: concurrency-detector}
  enableEviction: true
`))
		if err != nil {
			return nil, err
		}
		return config.BuildWith(cfg, config.BuildOptions{Registry: reg})
	}
	b, err := build("")
	if err != nil {
		t.Fatal(err)
	}
	if p := b.FlowControl(); p == nil || !p.Eviction {
		t.Errorf("flow plan %+v, want eviction on", p)
	}
	if _, err := build("\n  parameters: {minPriority: -1}"); err == nil ||
		!strings.Contains(err.Error(), `sheddable-eviction-filter: parameters: json: unknown field "minPriority"`) {
		t.Errorf("a parameter was not refused clearly: %v", err)
	}
}
