package manifests

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestEveryObjectPassesServerSideDryRun applies every rendered object, as
// `kubectl apply --server-side --dry-run=server -k manifests/` would, to a
// real API server that has the CRDs installed. A wrong field, a wrong type,
// a missing required field or a violated CEL rule fails here.
func TestEveryObjectPassesServerSideDryRun(t *testing.T) {
	t.Parallel()
	cl := testCluster(t)
	ctx := testContext(t)
	objs := render(t)
	namespaces := map[string]bool{}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" {
			namespaces[ns] = true
		}
	}
	for ns := range namespaces {
		if err := cl.ensureNamespace(ctx, ns); err != nil {
			t.Fatalf("create namespace %q: %v", ns, err)
		}
	}
	if len(objs) == 0 {
		t.Fatal("kustomize rendered no objects")
	}
	for _, o := range objs {
		t.Run(o.GetKind()+"/"+o.GetName(), func(t *testing.T) {
			t.Parallel()
			if err := cl.applyDryRun(ctx, o); err != nil {
				t.Errorf("server-side apply (dry run) rejected it: %v", err)
			}
		})
	}
}

// TestServerSideDryRunCatchesSchemaErrors proves the check above has teeth:
// each case breaks one rendered object the way a typo would, and the API
// server must reject it with a message naming the problem.
func TestServerSideDryRunCatchesSchemaErrors(t *testing.T) {
	t.Parallel()
	cl := testCluster(t)
	ctx := testContext(t)
	if err := cl.ensureNamespace(ctx, find(t, "Deployment", eppName).GetNamespace()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range brokenObjects() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obj := find(t, tc.kind, tc.objName).DeepCopy()
			tc.mutate(t, obj.Object)
			err := cl.applyDryRun(ctx, obj)
			if err == nil {
				t.Fatalf("the API server accepted a broken %s", tc.kind)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %q: %v", tc.want, err)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}

// brokenObject is one deliberate schema error: mutate breaks a copy of a
// rendered object, and want is a substring of the API server's rejection.
type brokenObject struct {
	name          string
	kind, objName string
	mutate        func(t *testing.T, u map[string]any)
	want          string
}

// brokenObjects are typos a reviewer could miss: an unknown field, a value
// outside an enum, a missing required field, a wrong type, a violated CEL
// rule, in a CRD and in a built-in type.
func brokenObjects() []brokenObject {
	return []brokenObject{{
		name: "InferencePool unknown field", kind: "InferencePool", objName: poolName,
		mutate: func(t *testing.T, u map[string]any) { at(t, u, "spec", "endpointPickerRef")["failOpen"] = true },
		want:   "failOpen: field not declared in schema",
	}, {
		name: "InferencePool failureMode outside the enum", kind: "InferencePool", objName: poolName,
		mutate: func(t *testing.T, u map[string]any) {
			at(t, u, "spec", "endpointPickerRef")["failureMode"] = "Sometimes"
		},
		want: "failureMode: Unsupported value",
	}, {
		name: "InferencePool without the required selector", kind: "InferencePool", objName: poolName,
		mutate: func(t *testing.T, u map[string]any) { delete(at(t, u, "spec"), "selector") },
		want:   "spec.selector: Required value",
	}, {
		name: "InferencePool port number of the wrong type", kind: "InferencePool", objName: poolName,
		mutate: func(t *testing.T, u map[string]any) {
			at(t, u, "spec")["targetPorts"] = []any{map[string]any{"number": "8000"}}
		},
		want: "number: expected numeric",
	}, {
		name: "InferencePool duplicate target ports (CEL rule)", kind: "InferencePool", objName: poolName,
		mutate: func(t *testing.T, u map[string]any) {
			at(t, u, "spec")["targetPorts"] = []any{map[string]any{"number": int64(8000)}, map[string]any{"number": int64(8000)}}
		},
		want: "port number must be unique",
	}, {
		name: "HTTPRoute backendRef unknown field", kind: "HTTPRoute", objName: poolName,
		mutate: func(t *testing.T, u map[string]any) {
			at(t, u, "spec", "rules", 0, "backendRefs", 0)["pool"] = poolName
		},
		want: "pool: field not declared in schema",
	}, {
		name: "Deployment probe with a misspelt field", kind: "Deployment", objName: eppName,
		mutate: func(t *testing.T, u map[string]any) {
			at(t, u, "spec", "template", "spec", "containers", 0, "readinessProbe", "grpc")["serviceName"] = "readiness"
		},
		want: "serviceName: field not declared in schema",
	}}
}

// at walks a rendered object by map keys (string) and list indices (int)
// and returns the map found there, without copying, so a case can edit it.
func at(t *testing.T, u map[string]any, path ...any) map[string]any {
	t.Helper()
	var cur any = u
	for i, step := range path {
		switch key := step.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("path %v: element %d is not a map", path, i)
			}
			cur = m[key]
		case int:
			l, ok := cur.([]any)
			if !ok || key >= len(l) {
				t.Fatalf("path %v: element %d is not a list with index %d", path, i, key)
			}
			cur = l[key]
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("path %v does not end at a map", path)
	}
	return m
}

// TestHAComponent enables components/ha (the leader-election variant the
// deploy guide points to) in an in-memory copy of the tree, checks it
// changes exactly what it should, and that the API server accepts the
// patched Deployment.
func TestHAComponent(t *testing.T) {
	t.Parallel()
	objs := renderWith(t, "components/ha")
	if len(objs) != len(render(t)) {
		t.Errorf("with components/ha %d objects render, without %d", len(objs), len(render(t)))
	}
	u := findIn(t, objs, "Deployment", eppName)
	dep := typed[appsv1.Deployment](t, u)
	type ha struct {
		Replicas       int32
		Strategy       appsv1.DeploymentStrategyType
		LeaderElection bool
	}
	got := ha{ptrValue(dep.Spec.Replicas), dep.Spec.Strategy.Type,
		slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--ha-enable-leader-election")}
	if diff := cmp.Diff(ha{2, appsv1.RecreateDeploymentStrategyType, true}, got); diff != "" {
		t.Errorf("HA Deployment (-want +got):\n%s", diff)
	}
	dryRunApply(t, u, "the HA Deployment")
}

// TestTLSComponent enables components/tls and checks the Deployment mounts
// the openepp-tls Secret readable by the EPP's group only, serves ext_proc
// from it with reload, and is accepted by the API server.
func TestTLSComponent(t *testing.T) {
	t.Parallel()
	objs := renderWith(t, "components/tls")
	u := findIn(t, objs, "Deployment", eppName)
	spec := typed[appsv1.Deployment](t, u).Spec.Template.Spec
	args := spec.Containers[0].Args
	var secret *corev1.SecretVolumeSource
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "openepp-tls" {
			secret = v.Secret
		}
	}
	mounted := slices.ContainsFunc(spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == "/etc/openepp-tls" && m.ReadOnly
	})
	switch {
	case !slices.Contains(args, "--cert-path=/etc/openepp-tls") || !slices.Contains(args, "--enable-cert-reload"):
		t.Errorf("args %v: want --cert-path=/etc/openepp-tls and --enable-cert-reload", args)
	case secret == nil || secret.DefaultMode == nil || *secret.DefaultMode != 0o440 || !mounted:
		t.Errorf("Secret volume %+v, mounted read-only at /etc/openepp-tls: %v; want mode 0440", secret, mounted)
	case spec.SecurityContext.FSGroup == nil || *spec.SecurityContext.FSGroup != *spec.SecurityContext.RunAsGroup:
		t.Errorf("fsGroup %v: want the EPP's group, so it can read the key", spec.SecurityContext.FSGroup)
	}
	dryRunApply(t, u, "the TLS Deployment")
}

// dryRunApply applies u to the test API server as a server-side dry run.
func dryRunApply(t *testing.T, u *unstructured.Unstructured, what string) {
	t.Helper()
	cl := testCluster(t)
	ctx := testContext(t)
	if err := cl.ensureNamespace(ctx, u.GetNamespace()); err != nil {
		t.Fatal(err)
	}
	if err := cl.applyDryRun(ctx, u); err != nil {
		t.Errorf("server-side apply (dry run) rejected %s: %v", what, err)
	}
}

// renderWith copies manifests/ into memory, adds a component to the
// top-level kustomization as the guide says, and renders it.
func renderWith(t *testing.T, component string) []*unstructured.Unstructured {
	t.Helper()
	return renderEdited(t, func(b []byte) []byte { return append(b, "components:\n- "+component+"\n"...) })
}

// renderEdited copies manifests/ into memory, edits the top-level
// kustomization with edit, and renders it.
func renderEdited(t *testing.T, edit func(kustomization []byte) []byte) []*unstructured.Unstructured {
	t.Helper()
	root := filepath.Join(repoRoot(t), "manifests")
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if p == filepath.Join(root, "kustomization.yaml") {
			b = edit(b)
		}
		return mem.WriteFile(p, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := renderFS(mem, root)
	if err != nil {
		t.Fatalf("kustomize build (edited): %v", err)
	}
	return objs
}
