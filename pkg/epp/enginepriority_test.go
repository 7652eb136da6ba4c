package epp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/sim"
)

// pickerConfig is a config of the given apiVersion that picks at random.
func pickerConfig(apiVersion string) string {
	return "--config-text=apiVersion: " + apiVersion + `
kind: EndpointPickerConfig
plugins:
- type: random-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: random-picker}]
`
}

// TestEnginePriority runs the EPP over a vLLM and an SGLang server (told
// apart by their engine-type labels, as the metrics scraper tells them
// apart) and checks the priority member of the forwarded bodies: vLLM's
// negated, SGLang's as is; on by default only with an llm-d config.
func TestEnginePriority(t *testing.T) {
	tests := []struct {
		name string
		args []string
		on   bool
	}{
		{name: "llm-d config", args: []string{pickerConfig("llm-d.ai/v1alpha1")}, on: true},
		{name: "GIE config", args: []string{pickerConfig("inference.networking.x-k8s.io/v1alpha1")}},
		{name: "GIE config, on", args: []string{pickerConfig("inference.networking.x-k8s.io/v1alpha1"), "--engine-priority=on"}, on: true},
		{name: "llm-d config, off", args: []string{pickerConfig("llm-d.ai/v1"), "--engine-priority=off"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--objectives-file", objectivesFile(t)}, tc.args...)
			r := launchEPPSims(t, []sim.Config{{MetricsEngine: sim.EngineVLLM}, {MetricsEngine: sim.EngineSGLang}}, 0, nil,
				func(r *running) []string { return append([]string{"--endpoints-file", r.file}, args...) })
			want := map[string]string{r.servers[0]: "-3", r.servers[1]: "3"} // objective "critical" has priority 3
			seen := map[string]bool{}
			for range 30 {
				d, err := r.client.RoundTrip(context.Background(), objectiveRequest("critical"))
				if err != nil || d.Immediate != nil {
					t.Fatalf("request not routed: %v %+v", err, d)
				}
				var body map[string]json.RawMessage
				if err := json.Unmarshal(d.Body, &body); err != nil {
					t.Fatalf("forwarded body %s: %v", d.Body, err)
				}
				got, wanted := string(body["priority"]), ""
				if tc.on {
					wanted = want[d.DestinationHeader]
				}
				if got != wanted {
					t.Fatalf("sent to %s with priority %q, want %q (body %s)", d.DestinationHeader, got, wanted, d.Body)
				}
				seen[d.DestinationHeader] = true
			}
			if len(seen) != 2 {
				t.Errorf("30 random picks reached only %v", seen)
			}
		})
	}
}

// TestEnginePriorityFlags checks that bad values are refused at start.
func TestEnginePriorityFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--engine-priority=maybe"},
		{"--engine-priority-order=vllm"},
		{"--engine-priority-order=vllm=sideways"},
	} {
		err := Run(context.Background(), append([]string{"--endpoints", "127.0.0.1:1"}, args...))
		if err == nil || !strings.Contains(err.Error(), "--engine-priority") {
			t.Errorf("Run(%v) = %v, want an --engine-priority error", args, err)
		}
	}
}
