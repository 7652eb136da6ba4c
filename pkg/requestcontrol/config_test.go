package requestcontrol_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/requestcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
	"github.com/openepp/openepp/test/configtest"
)

func build(t *testing.T, yaml string) (*config.Built, error) { return configtest.Build(t, yaml) }

// TestAgentIdentityConfigBuilds: listing agent-identity (with or without
// parameters) is enough; the scheduler built from the file asks it for
// fairness IDs, in configuration order.
func TestAgentIdentityConfigBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := build(t, `featureGates: [flowControl]
plugins:
- type: agent-identity
- name: tenants
  type: agent-identity
  parameters: {headers: [x-tenant], prefix: "tenant:"}
- type: queue-scorer
- type: round-robin-fairness-policy
flowControl:
  defaultPriorityBand: {fairnessPolicyRef: round-robin-fairness-policy}
`)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(config.Instances[*requestcontrol.AgentIdentity](b)); n != 2 {
		t.Fatalf("%d agent-identity instances, want 2", n)
	}
	if n := len(config.Instances[scheduler.FairnessSource](b)); n != 2 {
		t.Fatalf("%d fairness sources, want 2", n)
	}
	for _, tc := range []struct {
		headers map[string]string
		want    string
	}{
		{map[string]string{"x-claude-code-session-id": "abc", "x-tenant": "t"}, "agent:abc"},
		{map[string]string{"x-tenant": "t"}, "tenant:t"},
		{map[string]string{"x-session-id": "s"}, ""},
	} {
		if got := b.Scheduler.FairnessID(ctx, tc.headers); got != tc.want {
			t.Errorf("headers %v: fairness ID %q, want %q", tc.headers, got, tc.want)
		}
	}
}

func TestAgentIdentityConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want string }{
		{"plugins: [{type: agent-identity, parameters: {headers: []}}]\n",
			`plugin "agent-identity" of type "agent-identity": headers: at least one header is required`},
		{"plugins: [{type: agent-identity, parameters: {headers: [x-a], prefixes: x}}]\n", `unknown field "prefixes"`},
		{`plugins: [{type: agent-identity}, {type: queue-scorer}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: agent-identity}, {pluginRef: queue-scorer}]}]
`, `"agent-identity" is a fairness-ID source; a profile holds only filters, scorers and pickers`},
	} {
		_, err := build(t, tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
}

// TestServedVerifierConfig: the conformance suite's config (the testing
// filter and the verifier) builds, the verifier is a response hook, and it
// takes no parameters.
func TestServedVerifierConfig(t *testing.T) {
	t.Parallel()
	b, err := build(t, `plugins:
- type: header-based-testing-filter
- type: destination-endpoint-served-verifier
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: header-based-testing-filter}, {pluginRef: max-score-picker}]
`)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(config.Instances[scheduler.ResponseHeaders](b)); n != 1 {
		t.Errorf("%d response-header hooks, want the verifier", n)
	}
	_, err = build(t, "plugins: [{type: destination-endpoint-served-verifier, parameters: {header: x}}]\n")
	if err == nil || !strings.Contains(err.Error(), `unknown field "header"`) {
		t.Errorf("verifier with a parameter: err = %v", err)
	}
}

// TestProbabilisticAdmitterConfig: llm-d's example config (the admitter,
// with the legacy saturation gate neutered) builds, and its scheduler
// refuses a sheddable request on a loaded pool with a 429 error while
// scheduling a critical one.
func TestProbabilisticAdmitterConfig(t *testing.T) {
	t.Parallel()
	b, err := build(t, `plugins:
- type: probabilistic-admitter
- type: random-picker
- type: utilization-detector
  parameters: {queueDepthThreshold: 999999999, kvCacheUtilThreshold: 1.0}
saturationDetector:
  pluginRef: utilization-detector
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: random-picker
`)
	if err != nil {
		t.Fatal(err)
	}
	eps := plugintest.Endpoints(3, 1)
	for _, e := range eps {
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: 4, UpdateTime: time.Now()}) // saturation 0.8
	}
	s := b.Scheduler
	batch, critical := plugintest.Request("m", 10), plugintest.Request("m", 10)
	batch.Priority, critical.Priority = -1, 2
	if _, err := s.Schedule(t.Context(), s.NewState(), batch, eps); !errors.Is(err, scheduler.ErrRejected) {
		t.Errorf("sheddable request on a loaded pool: %v, want ErrRejected", err)
	}
	if _, err := s.Schedule(t.Context(), s.NewState(), critical, eps); err != nil {
		t.Errorf("critical request: %v", err)
	}
}
