// Package manifests checks the kustomize tree under manifests/: it renders it
// with kustomize's own library, applies every object to a real kube-apiserver
// (server-side apply, dry run) with the Inference Extension and Gateway API
// CRDs installed from their Go modules, and asserts the security and wiring
// properties a reviewer would otherwise check by eye.
package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/openepp/openepp/test/policy"
)

// Names of the objects the assertions look at. The wiring test proves they
// refer to each other, so a rename in the YAML fails loudly here.
const (
	eppName  = "openepp"
	poolName = "vllm-llama3-8b-instruct"
	// poolAnnotation on the EPP pod carries its pool's name to --pool-name.
	poolAnnotation = "openepp.io/pool-name"
)

// repoRoot is the module root, found from this file's location so the test
// works from any working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate test source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// renderDir runs kustomize build on dir exactly as `kubectl apply -k` would
// (default options: load restrictor on, so files outside the tree are
// rejected) and returns the objects in kustomize's output order.
func renderDir(dir string) ([]*unstructured.Unstructured, error) {
	return renderFS(filesys.MakeFsOnDisk(), dir)
}

// renderFS is renderDir on any kustomize file system.
func renderFS(fSys filesys.FileSystem, dir string) ([]*unstructured.Unstructured, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(fSys, dir)
	if err != nil {
		return nil, err
	}
	objs := make([]*unstructured.Unstructured, 0, resMap.Size())
	for _, r := range resMap.Resources() {
		// Through JSON, so numbers are int64/float64 as in any object read
		// from the API (kustomize's own maps hold plain ints).
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

var (
	renderOnce sync.Once
	rendered   []*unstructured.Unstructured
	renderErr  error
)

// render returns the rendered top-level kustomization, built once per test
// binary. Callers must not mutate the objects; use DeepCopy.
func render(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	renderOnce.Do(func() {
		rendered, renderErr = renderDir(filepath.Join(repoRoot(t), "manifests"))
	})
	if renderErr != nil {
		t.Fatalf("kustomize build manifests: %v", renderErr)
	}
	return rendered
}

// find returns the single rendered object of kind and name.
func find(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	return findIn(t, render(t), kind, name)
}

// findIn returns the single object of kind and name in objs.
func findIn(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	return policy.Find(t, objs, kind, name)
}

// ofKind returns every rendered object of kind.
func ofKind(t *testing.T, kind string) []*unstructured.Unstructured {
	t.Helper()
	return policy.OfKind(render(t), kind)
}

// typed converts a rendered object into its Go API type, failing on fields
// the type does not know (a cheap first schema check before the API server).
func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	return policy.Typed[T](t, u)
}

// readFile reads a file relative to the repository root.
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
