package epp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/modelrewrite"
	"github.com/openepp/openepp/pkg/sim"
)

// rewritesFile is --model-rewrites-file's manifests: pool llama takes
// "old-llama" as "llama"; every pool sends "fast" to its target.
func rewritesFile(t *testing.T, fastTarget string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rewrites.yaml")
	writeRewrites(t, path, fastTarget)
	return path
}

func writeRewrites(t *testing.T, path, fastTarget string) {
	t.Helper()
	text := `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: llama-rename}
spec:
  poolRef: {name: llama}
  rules:
  - matches: [{model: {value: old-llama}}]
    targets: [{modelRewrite: llama}]
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceModelRewrite
metadata: {name: fast}
spec:
  rules:
  - matches: [{model: {value: fast}}]
    targets: [{modelRewrite: ` + fastTarget + `}]
`
	if err := os.WriteFile(path+".tmp", []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestModelRewritesFile: without Kubernetes, InferenceModelRewrite
// manifests rewrite the body's model; with several pools a rule's poolRef
// sends the model it names to that pool (no server there lists
// "old-llama"); a change of the file applies without a restart. An
// --objectives-file's objective applies to the pool its poolRef names;
// /debug/policies shows each pool's.
func TestModelRewritesFile(t *testing.T) {
	t.Parallel()
	sims := []sim.Config{{Model: "llama"}, {Model: "qwen"}}
	path := ""
	objectives := filepath.Join(t.TempDir(), "objectives.yaml")
	urgent := "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: urgent}\nspec: {priority: 5, poolRef: {name: qwen}}\n"
	if err := os.WriteFile(objectives, []byte(urgent), 0o600); err != nil {
		t.Fatal(err)
	}
	r := launchEPPSims(t, sims, 0, nil, func(r *running) []string {
		path = rewritesFile(t, "llama")
		return []string{"--endpoints-file", pooledFile(t, r, "llama", "qwen"), "--config-text", modelsConfig, "--model-rewrites-file", path,
			"--objectives-file", objectives, "--engine-priority=on"}
	})
	send := func(model string, headers ...string) *extproc.Decision { return r.sendModel(t, model, headers...) }
	r.waitModelLists(t, "llama", "qwen")
	d := send("old-llama")
	if d.Immediate != nil || d.Endpoints[0] != r.servers[0] || !strings.Contains(string(d.Body), `"model":"llama"`) {
		t.Fatalf("old-llama: %+v body %s, want pool llama's server and the model rewritten", d.Immediate, d.Body)
	}
	// "fast" applies to every pool: with the header naming qwen it becomes
	// the target there.
	if d := send("fast", "x-openepp-pool", "qwen"); d.Immediate != nil || d.Endpoints[0] != r.servers[1] || !strings.Contains(string(d.Body), `"model":"llama"`) {
		t.Fatalf("fast in pool qwen: %+v body %s", d.Immediate, d.Body)
	}
	// The objective names pool qwen: llama's requests naming it get none.
	for pool, want := range map[string]bool{"qwen": true, "llama": false} {
		if d := send("fast", "x-openepp-pool", pool, "x-gateway-inference-objective", "urgent"); d.Immediate != nil ||
			strings.Contains(string(d.Body), `"priority":-5`) != want {
			t.Errorf("objective urgent in pool %s: %+v body %s, want priority 5 written: %v", pool, d.Immediate, d.Body, want)
		}
	}
	var policies policiesState
	r.debugJSON(t, policiesPath, &policies)
	want := policiesState{Source: "files", Pools: []poolPolicies{
		{Pool: "llama", Objectives: map[string]int{}, Rewrites: []modelrewrite.Rule{
			{Object: "fast", Model: "fast", Targets: []modelrewrite.RuleTarget{{Model: "llama"}}},
			{Object: "llama-rename", Model: "old-llama", Targets: []modelrewrite.RuleTarget{{Model: "llama"}}}}},
		{Pool: "qwen", Objectives: map[string]int{"urgent": 5}, Rewrites: []modelrewrite.Rule{
			{Object: "fast", Model: "fast", Targets: []modelrewrite.RuleTarget{{Model: "llama"}}}}},
	}}
	want.Files = []policyFile{{Flag: "--objectives-file", Path: objectives}, {Flag: "--model-rewrites-file", Path: path}}
	if diff := cmp.Diff(want, policies); diff != "" {
		t.Errorf("%s (-want +got):\n%s", policiesPath, diff)
	}
	writeRewrites(t, path, "qwen")
	eventually(t, "the changed file", func() bool {
		d := send("fast", "x-openepp-pool", "qwen")
		return d.Immediate == nil && strings.Contains(string(d.Body), `"model":"qwen"`)
	})

}
