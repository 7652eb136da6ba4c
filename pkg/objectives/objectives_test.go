package objectives

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

const objectiveDocs = `# the objectives of the pool
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: critical, namespace: default}
spec: {priority: 3, poolRef: {name: pool}}
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {priority: -1}
---
# no priority: 0, as in Kubernetes
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: standard}
spec: {}
---
`

func TestParseManifests(t *testing.T) {
	got, err := Parse([]byte(objectiveDocs))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Priorities{"critical": 3, "batch": -1, "standard": 0}, got.All); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	// critical names pool "pool": other pools' requests do not get it.
	if diff := cmp.Diff(Priorities{"critical": 3, "batch": -1, "standard": 0}, got.Of("pool")); diff != "" {
		t.Errorf("pool's objectives (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Priorities{"batch": -1, "standard": 0}, got.Of("other")); diff != "" {
		t.Errorf("another pool's objectives (-want +got):\n%s", diff)
	}
	if got, err := Parse(nil); err != nil || len(got.All) != 0 {
		t.Errorf("an empty file: %v %v", got, err)
	}
}

// TestReadsTheKubernetesExample: the manifests applied to a cluster load
// as they are.
func TestReadsTheKubernetesExample(t *testing.T) {
	got, err := Load("../../manifests/examples/inferenceobjectives.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Priorities{"interactive": 10, "batch": -1}, got.All); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

// TestParseRefusesWithReasons: every bad document is named, all at once.
func TestParseRefusesWithReasons(t *testing.T) {
	bad := `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: a}
---
apiVersion: v1
kind: InferenceObjective
metadata: {}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: b}
spec: {priority: 1, weight: 2}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: c}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: c}
spec: {priority: "high"}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: c}
`
	_, err := Parse([]byte(bad))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`document 1: kind: want InferenceObjective, got "InferencePool"`,
		`document 2: apiVersion: want one of`, "metadata.name: required",
		`document 3: json: unknown field "weight"`,
		"document 5: json: cannot unmarshal string",
		`document 6: objective "c" is already defined by document 4`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("kind: [unclosed")); err == nil {
		t.Error("malformed YAML accepted")
	}
}

// TestFileReloads: a change is picked up; a broken version keeps the last
// good table and is counted.
func TestFileReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "objectives.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(objectiveDocs)
	if _, err := NewFile(filepath.Join(t.TempDir(), "missing.yaml"), logr.Discard(), nil); err == nil {
		t.Fatal("a missing file was accepted")
	}
	reg := prometheus.NewRegistry()
	f, err := NewFile(path, logr.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := f.Priority("batch"); !ok || p != -1 {
		t.Fatalf("batch: %d %v", p, ok)
	}
	if _, ok := f.Priority("unknown"); ok {
		t.Fatal("an unknown objective has a priority")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	write(strings.Replace(objectiveDocs, "priority: -1", "priority: -5", 1))
	eventually("the new priority", func() bool { p, _ := f.Priority("batch"); return p == -5 })
	write("kind: [broken")
	eventually("the rejection to be counted", func() bool { return f.Rejections() == 1 })
	if p, ok := f.Priority("batch"); !ok || p != -5 {
		t.Errorf("after a broken file batch is %d %v, want the last good -5", p, ok)
	}
}
