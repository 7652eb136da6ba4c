package requestcontrol_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
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

// TestAttributeReporterConfig: upstream's documented config (the YAML of
// its README, block scalar included) builds next to the default profile, the
// scheduler reports with it, and a broken expression fails the file naming
// the plugin and the attribute.
func TestAttributeReporterConfig(t *testing.T) {
	t.Parallel()
	b, err := build(t, `plugins:
  - name: total-tokens-cost-reporter
    type: request-attribute-reporter
    parameters:
      attributes:
        - key:
            namespace: envoy.lb
            name: x-gateway-inference-request-cost
          expression: |
            usage.prompt_tokens + usage.completion_tokens
          condition: "has(usage.prompt_tokens) && has(usage.completion_tokens)"
`)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Scheduler.WantsReports() {
		t.Fatal("the scheduler built from the file has no response reporter")
	}
	resp := scheduler.Response{UsageKnown: true, Usage: request.Usage{PromptTokens: 5, CompletionTokens: 2}}
	b.Scheduler.ReportResponse(t.Context(), nil, plugintest.Request("m", 10), &resp)
	if got := resp.Metadata["envoy.lb"]["x-gateway-inference-request-cost"]; got != 7.0 {
		t.Errorf("reported %v, want 7", got)
	}
	_, err = build(t, `plugins:
- name: cost
  type: request-attribute-reporter
  parameters: {attributes: [{key: {name: c}, expression: "usage.prompt_tokens +* 2"}]}
`)
	if err == nil || !strings.Contains(err.Error(), `plugin "cost" of type "request-attribute-reporter": attributes[0].expression`) {
		t.Errorf("broken expression: err = %v", err)
	}
	_, err = build(t, `plugins: [{type: request-attribute-reporter, parameters: {attributes: [{key: {name: c}, expression: "1"}]}}, {type: queue-scorer}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: request-attribute-reporter}, {pluginRef: queue-scorer}]}]
`)
	if err == nil || !strings.Contains(err.Error(), "is a request/response hook; a profile holds only filters, scorers and pickers") {
		t.Errorf("reporter in a profile: err = %v", err)
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
