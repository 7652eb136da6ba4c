package modelrewrite

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const rewriteDocs = `# canary for pool llama, a rename for every pool
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: llama-canary}
spec:
  poolRef: {name: llama}
  rules:
  - matches: [{model: {value: llama}}]
    targets: [{modelRewrite: llama-v1, weight: 90}, {modelRewrite: llama-v2, weight: 10}]
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceModelRewrite
metadata: {name: rename}
spec:
  rules:
  - matches: [{model: {value: old-name, type: Exact}}]
    targets: [{modelRewrite: new-name}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: qwen-default}
spec:
  poolRef: {name: qwen}
  rules:
  - targets: [{modelRewrite: qwen-7b}]
`

func TestParseRewrites(t *testing.T) {
	tab, err := Parse([]byte(rewriteDocs))
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	for range 1000 {
		target, object, ok := tab.all.Rewrite("llama", rnd)
		if !ok || object != "llama-canary" {
			t.Fatalf("llama: %q %q %v", target, object, ok)
		}
		counts[target]++
	}
	if counts["llama-v2"] < 60 || counts["llama-v2"] > 140 {
		t.Errorf("weights 90/10 drew %v", counts)
	}
	for _, tc := range []struct {
		pool, model, want string
	}{
		{"llama", "old-name", "new-name"}, // no poolRef: every pool
		{"qwen", "old-name", "new-name"},
		{"qwen", "anything", "qwen-7b"}, // qwen's catch-all
		{"llama", "anything", ""},
		{"qwen", "llama", "qwen-7b"}, // llama's canary is llama's only
		{"mistral", "old-name", "new-name"},
		{"mistral", "llama", ""},
	} {
		got, _, _ := tab.Of(tc.pool).Rewrite(tc.model, rnd)
		if got != tc.want {
			t.Errorf("pool %s, model %s: %q, want %q", tc.pool, tc.model, got, tc.want)
		}
	}
	if !tab.Of("qwen").Claims("old-name") || tab.Of("qwen").Claims("anything") {
		t.Error("claims: an exact rule claims its model, a catch-all claims none")
	}
	if tab, err := Parse(nil); err != nil || tab.all.Claims("x") {
		t.Errorf("an empty file: %v", err)
	}
}

// TestReadsTheKubernetesExample: the manifests applied to a cluster load
// as they are.
func TestReadsTheKubernetesExample(t *testing.T) {
	tab, err := Load("../../manifests/examples/inferencemodelrewrites.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, object, _ := tab.all.Rewrite("llama", nil); got != "meta-llama/Llama-3.1-8B-Instruct" || object != "llama-alias" {
		t.Errorf("llama: %q by %q", got, object)
	}
}

// TestRewritePrecedenceInAFile: exact beats catch-all, an earlier document
// beats a later one, llm-d's group beats GIE's.
func TestRewritePrecedenceInAFile(t *testing.T) {
	doc := func(group, name, rules string) string {
		return "apiVersion: " + group + "\nkind: InferenceModelRewrite\nmetadata: {name: " + name + "}\nspec:\n  rules:\n" + rules + "---\n"
	}
	gie, llmd := "inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2"
	tab, err := Parse([]byte(
		doc(gie, "any-first", "  - targets: [{modelRewrite: any-first}]\n") +
			doc(gie, "exact-first", "  - matches: [{model: {value: m}}]\n    targets: [{modelRewrite: exact-first}]\n") +
			doc(gie, "exact-second", "  - matches: [{model: {value: m}}, {model: {value: m2}}]\n    targets: [{modelRewrite: exact-second}]\n") +
			doc(llmd, "llmd-n", "  - matches: [{model: {value: m2}}]\n    targets: [{modelRewrite: llmd-n}]\n")))
	if err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]string{"m": "exact-first", "m2": "llmd-n", "other": "any-first"} {
		if got, _, _ := tab.all.Rewrite(model, nil); got != want {
			t.Errorf("%s: %q, want %q", model, got, want)
		}
	}
}

// TestBadRewriteFiles: every problem is reported, naming its document and
// field.
func TestBadRewriteFiles(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"kind": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceObjective\nmetadata: {name: a}\nspec: {rules: [{targets: [{modelRewrite: x}]}]}\n",
			"document 1: kind: want InferenceModelRewrite"},
		"group": {"apiVersion: v1\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{targets: [{modelRewrite: x}]}]}\n",
			`apiVersion: want one of llm-d.ai/v1alpha2, inference.networking.x-k8s.io/v1alpha2, got "v1"`},
		"unknown field": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rulez: []}\n",
			`unknown field "rulez"`},
		"no rules": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {}\n",
			"spec.rules: at least one rule is required"},
		"no targets": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{matches: [{model: {value: m}}]}]}\n",
			"spec.rules[0].targets: at least one target is required"},
		"some weights": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{targets: [{modelRewrite: x, weight: 5}, {modelRewrite: z}]}]}\n",
			"a weight is set for some targets and not others"},
		"bad weight": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{targets: [{modelRewrite: x, weight: -1}]}]}\n",
			"spec.rules[0].targets[0].weight: -1 is not in 1..1000000"},
		"match type": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{matches: [{model: {value: m, type: Prefix}}], targets: [{modelRewrite: x}]}]}\n",
			`spec.rules[0].matches[0].model.type: "Prefix" is not supported (only Exact)`},
		"empty match": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{matches: [{}], targets: [{modelRewrite: x}]}]}\n",
			"spec.rules[0].matches[0].model.value: required"},
		"duplicate": {"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{targets: [{modelRewrite: x}]}]}\n---\n" +
			"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{targets: [{modelRewrite: z}]}]}\n",
			`document 2: model rewrite "a" (llm-d.ai/v1alpha2) is already defined by document 1`},
		"not yaml": {"apiVersion: [\n", "document 1:"},
	} {
		if _, err := Parse([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

// TestRewritesFileReload: a change is applied, a broken change keeps the
// last good rules and counts an error.
func TestRewritesFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rewrites.yaml")
	write := func(s string) {
		if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(rewriteDocs)
	reg := prometheus.NewRegistry()
	f, err := NewFile(path, logr.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Start(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	if got, _, _ := f.Rewrite("old-name", nil); got != "new-name" {
		t.Fatalf("before the change: %q", got)
	}
	write(strings.Replace(rewriteDocs, "modelRewrite: new-name", "modelRewrite: newer-name", 1))
	waitFor("the change", func() bool { got, _, _ := f.Rewrite("old-name", nil); return got == "newer-name" })
	write("kind: [\n")
	waitFor("the rejected reload", func() bool { return f.Rejections() == 1 })
	if n, err := testutil.GatherAndCount(reg, "openepp_model_rewrites_file_reload_errors_total"); err != nil || n != 1 {
		t.Errorf("the reload-error counter: %d series (%v), want 1", n, err)
	}
	if got, _, _ := f.Of("qwen").Rewrite("old-name", nil); got != "newer-name" {
		t.Errorf("after a broken change: %q, want the last good rules", got)
	}
	if _, err := NewFile(path, logr.Discard(), nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a broken file at start: %v, want an error naming it", err)
	}
}

// TestBooleanModelName: YAML reads an unquoted "n" as false; the error says
// to quote it.
func TestBooleanModelName(t *testing.T) {
	doc := "apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: a}\nspec: {rules: [{matches: [{model: {value: n}}], targets: [{modelRewrite: x}]}]}\n"
	if _, err := Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), "quote the value") {
		t.Errorf("model n: %v, want advice to quote it", err)
	}
}
