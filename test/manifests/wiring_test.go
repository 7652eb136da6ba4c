package manifests

import (
	"bytes"
	"path"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const inferenceGroup = "inference.networking.k8s.io"

// TestConfigMapIsTheShippedDefaultConfig: the EPP reads --config-file from a
// mounted ConfigMap whose content is config/default.yaml, byte for byte.
func TestConfigMapIsTheShippedDefaultConfig(t *testing.T) {
	t.Parallel()
	want := readFile(t, "config/default.yaml")
	if !bytes.Equal(readFile(t, "manifests/epp/default.yaml"), want) {
		t.Fatal("manifests/epp/default.yaml differs from config/default.yaml: copy it again")
	}
	c := eppContainer(t)
	file, ok := flagValue(c.Args, "--config-file")
	if !ok {
		t.Fatal("the EPP has no --config-file")
	}
	var volName string
	for _, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(file) {
			volName = m.Name
		}
	}
	var cmName string
	for _, v := range eppDeployment(t).Spec.Template.Spec.Volumes {
		if v.Name == volName && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	if cmName == "" {
		t.Fatalf("--config-file=%s is not in a mounted ConfigMap volume", file)
	}
	cm := typed[corev1.ConfigMap](t, find(t, "ConfigMap", cmName))
	if got := cm.Data[path.Base(file)]; got != string(want) {
		t.Errorf("ConfigMap %q key %q differs from config/default.yaml:\n%s",
			cmName, path.Base(file), cmp.Diff(string(want), got))
	}
}

// TestExampleWiring follows every reference in the example: route → pool →
// EPP Service port, pool selector → model-server pods, objectives → pool,
// EPP → pool name and namespace.
func TestExampleWiring(t *testing.T) {
	t.Parallel()
	pool := find(t, "InferencePool", poolName)
	svc := typed[corev1.Service](t, find(t, "Service", eppName))
	got := map[string]any{
		"pickerName":    str(t, pool, "spec", "endpointPickerRef", "name"),
		"pickerPort":    num(t, pool, "spec", "endpointPickerRef", "port", "number"),
		"failureMode":   str(t, pool, "spec", "endpointPickerRef", "failureMode"),
		"eppPool":       eppDeployment(t).Spec.Template.Annotations[poolAnnotation],
		"eppNamespace":  eppDeployment(t).Namespace,
		"poolNamespace": pool.GetNamespace(),
	}
	want := map[string]any{
		"pickerName":    svc.Name,
		"pickerPort":    int64(9002),
		"failureMode":   "FailOpen",
		"eppPool":       pool.GetName(),
		"eppNamespace":  pool.GetNamespace(),
		"poolNamespace": svc.Namespace,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pool ↔ EPP wiring (-want +got):\n%s", diff)
	}
	checkPoolSelectsModelServer(t, pool)
	checkRouteTargetsPool(t, pool)
	for _, kind := range []string{"InferenceObjective", "InferenceModelRewrite"} {
		for _, o := range ofKind(t, kind) {
			ref := map[string]string{"group": str(t, o, "spec", "poolRef", "group"), "name": str(t, o, "spec", "poolRef", "name")}
			if diff := cmp.Diff(map[string]string{"group": inferenceGroup, "name": pool.GetName()}, ref); diff != "" {
				t.Errorf("%s %q poolRef (-want +got):\n%s", kind, o.GetName(), diff)
			}
		}
	}
}

// checkPoolSelectsModelServer: the pool's labels select the example vLLM
// pods and its target ports are ports those pods serve.
func checkPoolSelectsModelServer(t *testing.T, pool *unstructured.Unstructured) {
	t.Helper()
	vllm := typed[corev1.PodTemplateSpec](t, &unstructured.Unstructured{Object: at(t, find(t, "Deployment", poolName).Object, "spec", "template")})
	selector, _, err := unstructured.NestedStringMap(pool.Object, "spec", "selector", "matchLabels")
	if err != nil || len(selector) == 0 {
		t.Fatalf("pool selector: %v %v", selector, err)
	}
	for k, v := range selector {
		if vllm.Labels[k] != v {
			t.Errorf("pool selects %s=%s, the model-server pods have %q", k, v, vllm.Labels[k])
		}
	}
	var served []int64
	for _, c := range vllm.Spec.Containers {
		for _, p := range c.Ports {
			served = append(served, int64(p.ContainerPort))
		}
	}
	ports, _, _ := unstructured.NestedSlice(pool.Object, "spec", "targetPorts")
	for i := range ports {
		if n := num(t, pool, "spec", "targetPorts", i, "number"); !slices.Contains(served, n) {
			t.Errorf("pool targetPort %d is not a model-server container port %v", n, served)
		}
	}
}

// checkRouteTargetsPool: every HTTPRoute sends to the pool (not a Service)
// and hangs off a rendered Gateway.
func checkRouteTargetsPool(t *testing.T, pool *unstructured.Unstructured) {
	t.Helper()
	routes := ofKind(t, "HTTPRoute")
	if len(routes) == 0 {
		t.Fatal("no HTTPRoute rendered")
	}
	for _, r := range routes {
		ref := map[string]string{
			"group": str(t, r, "spec", "rules", 0, "backendRefs", 0, "group"),
			"kind":  str(t, r, "spec", "rules", 0, "backendRefs", 0, "kind"),
			"name":  str(t, r, "spec", "rules", 0, "backendRefs", 0, "name"),
		}
		want := map[string]string{"group": inferenceGroup, "kind": "InferencePool", "name": pool.GetName()}
		if diff := cmp.Diff(want, ref); diff != "" {
			t.Errorf("HTTPRoute %q backendRef (-want +got):\n%s", r.GetName(), diff)
		}
		find(t, "Gateway", str(t, r, "spec", "parentRefs", 0, "name"))
	}
}

// str and num read a leaf of a rendered object; path steps are map keys
// (string) or list indices (int).
func str(t *testing.T, u *unstructured.Unstructured, path ...any) string {
	t.Helper()
	v, ok := leaf(t, u, path).(string)
	if !ok {
		t.Fatalf("%s %q: %v is not a string", u.GetKind(), u.GetName(), path)
	}
	return v
}

func num(t *testing.T, u *unstructured.Unstructured, path ...any) int64 {
	t.Helper()
	v, ok := leaf(t, u, path).(int64)
	if !ok {
		t.Fatalf("%s %q: %v is not an integer", u.GetKind(), u.GetName(), path)
	}
	return v
}

func leaf(t *testing.T, u *unstructured.Unstructured, path []any) any {
	t.Helper()
	parent, last := path[:len(path)-1], path[len(path)-1]
	key, ok := last.(string)
	if !ok {
		t.Fatalf("path %v must end in a map key", path)
	}
	return at(t, u.Object, parent...)[key]
}
