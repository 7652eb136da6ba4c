package helmchart

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// noCRD are the kinds whose CRDs no Go module ships (GKE's gateway
// policies): the API server cannot validate them, so their wiring is
// checked here instead.
var noCRD = []string{"networking.gke.io/v1/HealthCheckPolicy", "networking.gke.io/v1/GCPBackendPolicy"}

// TestEveryObjectPassesServerSideDryRun renders each scenario into a fresh
// namespace and applies every object, as `helm install` followed by
// `kubectl apply --server-side --dry-run=server` would, to a real API server
// with the CRDs installed: a wrong field, type or enum value, a missing
// required field or a violated CEL rule fails here.
func TestEveryObjectPassesServerSideDryRun(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios("") {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.in.namespace = env.Namespace(t)
			objs := render(t, sc.in)
			if len(objs) == 0 {
				t.Fatal("the chart rendered no objects")
			}
			ctx := testContext(t)
			for _, o := range objs {
				gvk := o.GroupVersionKind()
				if slices.Contains(noCRD, gvk.GroupVersion().String()+"/"+gvk.Kind) {
					checkTargetsPool(t, o)
					continue
				}
				if ns := o.GetNamespace(); ns != "" && ns != sc.in.namespace {
					t.Errorf("%s %s is in namespace %q, not the release's", o.GetKind(), o.GetName(), ns)
				}
				if err := env.DryRunApply(ctx, o); err != nil {
					t.Errorf("%s %s: server-side apply (dry run) rejected it: %v", o.GetKind(), o.GetName(), err)
				}
			}
		})
	}
}

// checkTargetsPool: a GKE policy targets the release's InferencePool.
func checkTargetsPool(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	ref, _, _ := unstructured.NestedStringMap(o.Object, "spec", "targetRef")
	want := map[string]string{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": release}
	if diff := cmp.Diff(want, ref); diff != "" {
		t.Errorf("%s targetRef (-want +got):\n%s", o.GetKind(), diff)
	}
}

// TestRenderedKinds pins which objects each scenario renders, by kind and
// name, so that a value switching an object on or off is noticed.
func TestRenderedKinds(t *testing.T) {
	t.Parallel()
	base := []string{
		"ClusterRole/" + release + "-ns-epp-metrics-reader", "ClusterRoleBinding/" + release + "-ns-epp-auth-delegator",
		"ConfigMap/" + eppName, "Deployment/" + eppName, "InferencePool/" + release, "Role/" + eppName,
		"RoleBinding/" + eppName, "Service/" + eppName, "ServiceAccount/" + eppName,
	}
	want := map[string][]string{
		"defaults":      base,
		"upstream-line": base,
		"custom-config-istio": append(slices.Clone(base), "DestinationRule/"+eppName, "HTTPRoute/"+release,
			"InferenceObjective/batch", "InferenceObjective/critical"),
		"ha": base,
		"everything": append(slices.Clone(base), "ClusterRoleBinding/"+release+"-ns-epp-metrics-reader",
			"ConfigMap/"+eppName+"-dashboard", "ConfigMap/helper-config", "PrometheusRule/"+eppName, "Secret/inference-gateway-sa-metrics-reader-secret",
			"Service/"+eppName+"-peers", "ServiceMonitor/"+eppName+"-monitor"),
		"precise-prefix-cache-istio":         append(slices.Clone(base), "DestinationRule/"+eppName),
		"precise-prefix-cache-active-active": append(slices.Clone(base), "Service/"+eppName+"-peers"),
		"gke-trtllm":                         append(slices.Clone(base), "GCPBackendPolicy/"+release, "HTTPRoute/"+release, "HealthCheckPolicy/"+release),
	}
	for _, sc := range scenarios("ns") {
		var got []string
		for _, o := range render(t, sc.in) {
			got = append(got, o.GetKind()+"/"+o.GetName())
		}
		slices.Sort(got)
		w := slices.Clone(want[sc.name])
		slices.Sort(w)
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s: rendered objects (-want +got):\n%s", sc.name, diff)
		}
	}
}

// TestHTTPRouteTimeoutFollowsProvider: as upstream, the route carries a
// request timeout except on GKE (whose gateway takes it from
// GCPBackendPolicy).
func TestHTTPRouteTimeoutFollowsProvider(t *testing.T) {
	t.Parallel()
	for provider, want := range map[string]string{"none": "300s", "istio": "300s", "gke": ""} {
		objs := render(t, install{name: release, namespace: "ns", set: []string{modelApp,
			"experimentalHttpRoute.enabled=true", "provider.name=" + provider}})
		route := find(t, objs, "HTTPRoute", release)
		rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
		got, _, _ := unstructured.NestedString(rules[0].(map[string]any), "timeouts", "request")
		if got != want {
			t.Errorf("provider %s: route timeout %q, want %q", provider, got, want)
		}
		if strings.Contains(route.GetName(), "epp") {
			t.Errorf("route named %q, want the pool's name", route.GetName())
		}
	}
}

// TestDryRunValidatesTheOtherCRDs proves the Istio and Prometheus Operator
// CRDs installed are really checked: a typo in a rendered DestinationRule
// or ServiceMonitor is rejected, naming the field.
func TestDryRunValidatesTheOtherCRDs(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	objs := render(t, install{name: release, namespace: ns, set: []string{modelApp, "provider.name=istio",
		"inferenceExtension.monitoring.prometheus.enabled=true"}})
	for _, tc := range []struct {
		kind, name, want string
		mutate           func(u map[string]any)
	}{
		{"DestinationRule", eppName, "spec.trafficPolicy.tls.mode", func(u map[string]any) {
			_ = unstructured.SetNestedField(u, "BOGUS", "spec", "trafficPolicy", "tls", "mode")
		}},
		{"ServiceMonitor", eppName + "-monitor", "spec.endpoints[0].scheme", func(u map[string]any) {
			eps, _, _ := unstructured.NestedSlice(u, "spec", "endpoints")
			eps[0].(map[string]any)["scheme"] = "gopher"
			_ = unstructured.SetNestedSlice(u, eps, "spec", "endpoints")
		}},
	} {
		obj := find(t, objs, tc.kind, tc.name).DeepCopy()
		tc.mutate(obj.Object)
		err := env.DryRunApply(testContext(t), obj)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with a typo: error %v, want one naming %s", tc.kind, err, tc.want)
		}
	}
}
