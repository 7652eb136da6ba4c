package manifests

import (
	"bytes"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/openepp/openepp/test/policy"
)

// The properties every EPP installation is held to live in test/policy,
// shared with the Helm chart's tests (test/helmchart); these apply them to
// the kustomize tree.

// eppDeployment is the rendered EPP Deployment as its Go type.
func eppDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	return typed[appsv1.Deployment](t, find(t, "Deployment", eppName))
}

// eppContainer is the "epp" container of the EPP Deployment.
func eppContainer(t *testing.T) corev1.Container {
	t.Helper()
	return policy.Container(t, eppDeployment(t), "epp")
}

func TestEPPContainersAreHardened(t *testing.T) {
	t.Parallel()
	policy.Hardened(t, eppDeployment(t).Spec.Template.Spec)
}

func TestEPPProbesUseGRPCHealthServices(t *testing.T) {
	t.Parallel()
	policy.Probes(t, eppContainer(t))
}

func TestEPPServicePorts(t *testing.T) {
	t.Parallel()
	policy.ServicePorts(t, typed[corev1.Service](t, find(t, "Service", eppName)), eppDeployment(t), eppContainer(t))
}

func TestEPPRoleIsLeastPrivilege(t *testing.T) {
	t.Parallel()
	policy.RoleIsLeastPrivilege(t, typed[rbacv1.Role](t, find(t, "Role", eppName)), nil)
}

func TestEPPClusterAccessOnlyChecksMetricsCallers(t *testing.T) {
	t.Parallel()
	var bindings []*rbacv1.ClusterRoleBinding
	for _, u := range ofKind(t, "ClusterRoleBinding") {
		bindings = append(bindings, typed[rbacv1.ClusterRoleBinding](t, u))
	}
	var roles []*rbacv1.ClusterRole
	for _, u := range ofKind(t, "ClusterRole") {
		roles = append(roles, typed[rbacv1.ClusterRole](t, u))
	}
	policy.ClusterAccessOnlyChecksMetricsCallers(t, bindings, roles, eppDeployment(t))
}

// TestClusterBindingNamedPerNamespace: the manifests applied to two
// namespaces give two auth-delegator bindings, each binding its own
// namespace's service account, rather than one overwriting the other.
func TestClusterBindingNamedPerNamespace(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, ns := range []string{"team-a", "team-b"} {
		objs := renderEdited(t, func(kustomization []byte) []byte {
			return bytes.Replace(kustomization, []byte("namespace: openepp"), []byte("namespace: "+ns), 1)
		})
		for _, u := range policy.OfKind(objs, "ClusterRoleBinding") {
			crb := typed[rbacv1.ClusterRoleBinding](t, u)
			if len(crb.Subjects) != 1 || crb.Subjects[0].Namespace != ns {
				t.Errorf("namespace %s: binding %s subjects %+v", ns, crb.Name, crb.Subjects)
			}
			if other, clash := seen[crb.Name]; clash {
				t.Errorf("binding %s in both %s and %s", crb.Name, other, ns)
			}
			seen[crb.Name] = ns
		}
	}
	if _, ok := seen["openepp-auth-delegator-team-a"]; !ok {
		t.Errorf("bindings %v, want openepp-auth-delegator-team-a", seen)
	}
}

func TestEPPRoleBindingBindsTheEPPServiceAccount(t *testing.T) {
	t.Parallel()
	dep := eppDeployment(t)
	find(t, "ServiceAccount", dep.Spec.Template.Spec.ServiceAccountName)
	policy.RoleBindingBindsTheServiceAccount(t, typed[rbacv1.RoleBinding](t, find(t, "RoleBinding", eppName)), dep, eppName)
}

func TestEPPDeploymentLifecycle(t *testing.T) {
	t.Parallel()
	policy.Lifecycle(t, eppDeployment(t), eppContainer(t))
}

func TestEPPPoolFlagsComeFromTheDownwardAPI(t *testing.T) {
	t.Parallel()
	policy.PoolFlagsComeFromTheDownwardAPI(t, eppContainer(t), poolAnnotation)
}

func TestEPPResourcesAreSized(t *testing.T) {
	t.Parallel()
	policy.ResourcesAreSized(t, eppContainer(t))
}

// flagValue finds --name=value or --name value in args.
func flagValue(args []string, name string) (string, bool) { return policy.FlagValue(args, name) }

func ptrValue[T any](p *T) T { return policy.PtrValue(p) }
