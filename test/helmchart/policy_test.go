package helmchart

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/openepp/openepp/test/policy"
)

// TestChartHoldsTheManifestPolicies applies test/policy, the properties the
// kustomize manifests are held to, to the chart's objects: hardened pod,
// gRPC health probes, Service ports, least-privilege RBAC, downward-API pool
// flags, drain within the grace period, sized resources.
func TestChartHoldsTheManifestPolicies(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios("ns") {
		switch sc.name {
		case "everything": // active-active: see TestActiveActivePolicies
			continue
		case "precise-prefix-cache-active-active": // active-active; its Service ports: see TestPrecisePrefixCacheDiscoverPods
			continue
		case "precise-prefix-cache-istio": // a kv-events Service port: see TestPrecisePrefixCacheProfile
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			objs := render(t, sc.in)
			dep, c := deployment(t, objs)
			policy.Hardened(t, dep.Spec.Template.Spec)
			policy.Probes(t, c)
			policy.ServicePorts(t, policy.Typed[corev1.Service](t, find(t, objs, "Service", eppName)), dep, c)
			policy.RoleIsLeastPrivilege(t, policy.Typed[rbacv1.Role](t, find(t, objs, "Role", eppName)), nil)
			policy.RoleBindingBindsTheServiceAccount(t, policy.Typed[rbacv1.RoleBinding](t, find(t, objs, "RoleBinding", eppName)), dep, eppName)
			find(t, objs, "ServiceAccount", dep.Spec.Template.Spec.ServiceAccountName)
			policy.ClusterAccessOnlyChecksMetricsCallers(t, typedAll[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding"),
				typedAll[rbacv1.ClusterRole](t, objs, "ClusterRole"), dep)
			policy.PoolFlagsComeFromTheDownwardAPI(t, c, poolLabel)
			policy.ResourcesAreSized(t, c)
			if sc.name != "custom-config-istio" { // sets --v=2
				policy.Lifecycle(t, dep, c)
			}
			if got := dep.Spec.Template.Annotations[poolLabel]; got != release {
				t.Errorf("pod annotation %s=%q, want the pool %q", poolLabel, got, release)
			}
		})
	}
}

// TestAdditionalPools: openepp.additionalPools join the release's pool in
// the annotation --pool-name is read from.
func TestAdditionalPools(t *testing.T) {
	t.Parallel()
	objs := render(t, install{name: release, namespace: "ns", set: []string{modelApp, "openepp.additionalPools={qwen,mistral}"}})
	dep, _ := deployment(t, objs)
	if got, want := dep.Spec.Template.Annotations[poolLabel], release+",qwen,mistral"; got != want {
		t.Errorf("pod annotation %s=%q, want %q", poolLabel, got, want)
	}
	objs = render(t, install{name: release, namespace: "ns", set: []string{modelApp, "openepp.discoverPools=true"}})
	_, c := deployment(t, objs)
	if !slices.Contains(c.Args, "--endpoint-picker-service="+eppName) || slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--pool-name=") }) {
		t.Errorf("openepp.discoverPools: args %q, want --endpoint-picker-service=%s and no --pool-name", c.Args, eppName)
	}
}

// TestActiveActivePolicies: with openepp.activeActive (and TLS), the pod is
// as hardened, the Role grows only by reading EndpointSlices, the rollout
// is rolling, and the mounted keys are readable by the EPP's group only.
func TestActiveActivePolicies(t *testing.T) {
	t.Parallel()
	objs := render(t, install{name: release, namespace: "ns", files: []string{everything}, set: []string{modelApp}})
	dep, c := deployment(t, objs)
	policy.Hardened(t, dep.Spec.Template.Spec)
	policy.Probes(t, c)
	policy.RoleIsLeastPrivilege(t, policy.Typed[rbacv1.Role](t, find(t, objs, "Role", eppName)),
		map[string][]string{"discovery.k8s.io/endpointslices": {"get", "list", "watch"}})
	if dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || slices.Contains(c.Args, "--ha-enable-leader-election") {
		t.Errorf("strategy %s, args %v: active-active rolls and elects no leader", dep.Spec.Strategy.Type, c.Args)
	}
	spec := dep.Spec.Template.Spec
	if spec.SecurityContext.FSGroup == nil || *spec.SecurityContext.FSGroup != *spec.SecurityContext.RunAsGroup {
		t.Errorf("fsGroup %v: want the EPP's group, so it can read the keys", spec.SecurityContext.FSGroup)
	}
	modes := map[string]int32{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			modes[v.Secret.SecretName] = policy.PtrValue(v.Secret.DefaultMode)
		}
	}
	if diff := cmp.Diff(map[string]int32{"epp-tls": 0o440, eppName + "-replica-sync": 0o440}, modes); diff != "" {
		t.Errorf("secret volume modes (-want +got):\n%s", diff)
	}
	peers := policy.Typed[corev1.Service](t, find(t, objs, "Service", eppName+"-peers"))
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses || peers.Spec.Ports[0].Name != "replica-sync" {
		t.Errorf("peers Service %+v: want headless, publishing unready pods, port replica-sync", peers.Spec)
	}
	if v, _ := policy.FlagValue(c.Args, "--replica-sync-service"); v != peers.Name {
		t.Errorf("--replica-sync-service=%q, want %q", v, peers.Name)
	}
}

// TestHAFollowsReplicas: as upstream, more than one replica means leader
// election (and no more than one means none), with Recreate either way.
func TestHAFollowsReplicas(t *testing.T) {
	t.Parallel()
	for replicas, want := range map[string]bool{"1": false, "2": true, "3": true} {
		_, c := deployment(t, render(t, install{name: release, namespace: "ns",
			set: []string{modelApp, "inferenceExtension.replicas=" + replicas}}))
		if got := slices.Contains(c.Args, "--ha-enable-leader-election"); got != want {
			t.Errorf("replicas=%s: leader election %v, want %v", replicas, got, want)
		}
	}
}

// typedAll converts every rendered object of kind into T.
func typedAll[T any](t *testing.T, objs []*unstructured.Unstructured, kind string) []*T {
	t.Helper()
	var out []*T
	for _, u := range policy.OfKind(objs, kind) {
		out = append(out, policy.Typed[T](t, u))
	}
	return out
}
