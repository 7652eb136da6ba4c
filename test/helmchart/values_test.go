package helmchart

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/openepp/openepp/test/policy"
)

// TestUpstreamNamesAndSelector: the objects carry the names of upstream's
// chart and the Deployment its selector, which `helm upgrade` from that
// chart cannot change; the pool points at the EPP Service's ext_proc port.
func TestUpstreamNamesAndSelector(t *testing.T) {
	t.Parallel()
	objs := render(t, install{name: release, namespace: "ns", set: []string{modelApp, "inferenceExtension.extProcPort=9100"}})
	dep, _ := deployment(t, objs)
	if diff := cmp.Diff(map[string]string{"inferencepool": eppName}, dep.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("Deployment selector (-upstream +chart):\n%s", diff)
	}
	for _, kind := range []string{"Service", "ServiceAccount", "ConfigMap"} {
		find(t, objs, kind, eppName)
	}
	pool := find(t, objs, "InferencePool", release)
	ref, _, _ := unstructured.NestedMap(pool.Object, "spec", "endpointPickerRef")
	want := map[string]any{"name": eppName, "port": map[string]any{"number": int64(9100)}, "failureMode": "FailOpen"}
	if diff := cmp.Diff(want, ref); diff != "" {
		t.Errorf("endpointPickerRef (-want +got):\n%s", diff)
	}
	svc := policy.Typed[corev1.Service](t, find(t, objs, "Service", eppName))
	if svc.Spec.Ports[0].Port != 9100 || svc.Spec.Ports[0].TargetPort.String() != "grpc" {
		t.Errorf("ext_proc Service port %+v: want 9100 → grpc", svc.Spec.Ports[0])
	}
}

// TestClusterNamesStayApart: cluster-scoped objects of one release name in
// two namespaces alike in their first 40 characters get different names
// (the cut names carry a hash); short names keep the plain form.
func TestClusterNamesStayApart(t *testing.T) {
	t.Parallel()
	binding := func(ns string) string {
		for _, o := range render(t, install{name: release, namespace: ns, set: []string{modelApp}}) {
			if o.GetKind() == "ClusterRoleBinding" {
				return o.GetName()
			}
		}
		t.Fatalf("namespace %s: no ClusterRoleBinding rendered", ns)
		return ""
	}
	if got, want := binding("ns"), release+"-ns-epp-auth-delegator"; got != want {
		t.Errorf("short namespace: binding %q, want %q", got, want)
	}
	long := strings.Repeat("inference-", 4) // 40 characters
	blue, green := binding(long+"blue"), binding(long+"green")
	if blue == green {
		t.Errorf("namespaces %sblue and %sgreen share the binding %q", long, long, blue)
	}
	for _, name := range []string{blue, green} {
		if len(name) > 253 {
			t.Errorf("binding name %q is longer than 253 characters", name)
		}
	}
}

// TestValueShapes pins how values become the pod: flag formatting and
// overrides, env forms, GOMEMLIMIT, ports that follow flags, Istio TLS.
func TestValueShapes(t *testing.T) {
	t.Parallel()
	args := func(set ...string) []string {
		_, c := deployment(t, render(t, install{name: release, namespace: "ns", set: append([]string{modelApp}, set...)}))
		return c.Args
	}
	for _, tc := range []struct {
		name       string
		set        []string
		has, lacks []string
	}{
		{"a flag replaces the chart's", []string{"inferenceExtension.flags.drain-timeout=60s", "inferenceExtension.flags.tracing=true"},
			[]string{"--drain-timeout=60s", "--tracing=true"}, []string{"--drain-timeout=30s", "--tracing=false"}},
		{"null removes a default flag", []string{"inferenceExtension.flags.v=null"}, nil, []string{"--v=1"}},
		{"booleans as --name=value", []string{"inferenceExtension.flags.secure-serving=false"}, []string{"--secure-serving=false"}, nil},
		{"metrics auth off", []string{"inferenceExtension.monitoring.prometheus.auth.enabled=false"}, []string{"--metrics-endpoint-auth=false"}, nil},
	} {
		got := args(tc.set...)
		for _, a := range tc.has {
			if !slices.Contains(got, a) {
				t.Errorf("%s: args %q lack %s", tc.name, got, a)
			}
		}
		for _, a := range tc.lacks {
			if slices.Contains(got, a) {
				t.Errorf("%s: args %q have %s", tc.name, got, a)
			}
		}
	}

	// A values file's numbers are floats to Helm; flags get them whole.
	_, c := deployment(t, render(t, install{name: release, namespace: "ns", set: []string{modelApp},
		files: []string{"inferenceExtension:\n  flags:\n    max-request-body-bytes: 33554432\n    metrics-staleness-threshold: 2s\n"}}))
	if !slices.Contains(c.Args, "--max-request-body-bytes=33554432") {
		t.Errorf("args %q: want --max-request-body-bytes=33554432", c.Args)
	}

	for limit, want := range map[string]string{"memory=4Gi": "3GiB", "memory=16Gi": "12GiB", "memory=2500Mi": "1875MiB",
		"memory=8G": "5722MiB", "memory=null": ""} {
		_, c := deployment(t, render(t, install{name: release, namespace: "ns",
			set: []string{modelApp, "inferenceExtension.resources.limits." + limit}}))
		if got := envValue(c, "GOMEMLIMIT"); got != want {
			t.Errorf("limits.memory=%q: GOMEMLIMIT %q, want %q", limit, got, want)
		}
	}
	_, c = deployment(t, render(t, install{name: release, namespace: "ns", set: []string{modelApp},
		files: []string{"inferenceExtension:\n  env:\n    GOMEMLIMIT: 1GiB\n    FOO: bar\n"}}))
	if envValue(c, "GOMEMLIMIT") != "1GiB" || envValue(c, "FOO") != "bar" || countEnv(c, "GOMEMLIMIT") != 1 {
		t.Errorf("env map form: %+v", c.Env)
	}

	dep, c := deployment(t, render(t, install{name: release, namespace: "ns",
		set: []string{modelApp, "inferenceExtension.flags.grpc-health-port=9300", "inferenceExtension.flags.grpc-port=9200"}}))
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc"] != 9200 || ports["grpc-health"] != 9300 || c.ReadinessProbe.GRPC.Port != 9300 || dep == nil {
		t.Errorf("ports %v, readiness probe port %d: want them to follow the flags", ports, c.ReadinessProbe.GRPC.Port)
	}

	for secure, wantTLS := range map[string]bool{"true": true, "false": false} {
		dr := find(t, render(t, install{name: release, namespace: "ns", set: []string{modelApp, "provider.name=istio",
			"inferenceExtension.flags.secure-serving=" + secure}}), "DestinationRule", eppName)
		_, hasTLS, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy", "tls")
		if hasTLS != wantTLS {
			t.Errorf("secure-serving=%s: DestinationRule TLS %v, want %v", secure, hasTLS, wantTLS)
		}
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func countEnv(c corev1.Container, name string) int {
	n := 0
	for _, e := range c.Env {
		if e.Name == name {
			n++
		}
	}
	return n
}
