package manifests

import (
	"path"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/openepp/openepp/test/policy"
)

// What components/active-active wires together.
const (
	peerPortName = "replica-sync" // controller.DefaultPeerPortName
	peerPort     = 9004
	tokenSecret  = "openepp-replica-sync"
	tokenKey     = "token"
)

// TestActiveActiveComponent enables components/active-active in an
// in-memory copy of the tree and checks that it changes exactly what it
// should: three replicas rolled one at a time without leader election, the
// replica-sync port, flags that name the headless peer Service (whose
// EndpointSlices list the replicas) and a token file from the
// openepp-replica-sync Secret (created by the user, so not rendered), and
// read access to EndpointSlices. The API server accepts every changed or
// added object.
func TestActiveActiveComponent(t *testing.T) {
	t.Parallel()
	objs := renderWith(t, "components/active-active")
	if len(objs) != len(render(t))+1 {
		t.Errorf("with components/active-active %d objects render, without %d: want 1 more (the peer Service)", len(objs), len(render(t)))
	}
	u := findIn(t, objs, "Deployment", eppName)
	dep := typed[appsv1.Deployment](t, u)
	checkActiveActiveRollout(t, dep)
	c := dep.Spec.Template.Spec.Containers[0]
	if v, _ := flagValue(c.Args, "--replica-sync-port"); v != strconv.Itoa(peerPort) {
		t.Errorf("--replica-sync-port=%q, want %d", v, peerPort)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.Name == peerPortName && p.ContainerPort == peerPort && p.Protocol == corev1.ProtocolTCP
	}) {
		t.Errorf("container ports %+v: want %s %d/TCP", c.Ports, peerPortName, peerPort)
	}
	svcName, _ := flagValue(c.Args, "--replica-sync-service")
	svc := findIn(t, objs, "Service", svcName)
	checkPeerService(t, typed[corev1.Service](t, svc), dep)
	checkTokenFile(t, dep)
	if slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Secret" }) {
		t.Errorf("a Secret is rendered; %s must come from the user, never from the repository", tokenSecret)
	}
	role := findIn(t, objs, "Role", eppName)
	want := roleGrants(t, find(t, "Role", eppName))
	want["discovery.k8s.io/endpointslices"] = []string{"get", "list", "watch"}
	if diff := cmp.Diff(want, roleGrants(t, role)); diff != "" {
		t.Errorf("Role grants with active-active (-want +got):\n%s", diff)
	}
	dryRunApply(t, u, "the active-active Deployment")
	dryRunApply(t, svc, "the peer Service")
	dryRunApply(t, role, "the active-active Role")
}

// checkActiveActiveRollout: three replicas, replaced one at a time, and no
// leader election (which would keep all but one unready).
func checkActiveActiveRollout(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	type rollout struct {
		Replicas       int32
		Strategy       appsv1.DeploymentStrategyType
		MaxUnavailable string
		LeaderElection bool
	}
	got := rollout{Replicas: ptrValue(dep.Spec.Replicas), Strategy: dep.Spec.Strategy.Type,
		LeaderElection: slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--ha-enable-leader-election")}
	if ru := dep.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		got.MaxUnavailable = ru.MaxUnavailable.String()
	}
	want := rollout{3, appsv1.RollingUpdateDeploymentStrategyType, "1", false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("active-active Deployment (-want +got):\n%s", diff)
	}
}

// checkPeerService: the Service named by --replica-sync-service is headless,
// lists only ready pods, selects the EPP pods and has the replica-sync port
// (the port name the EPP looks for in its EndpointSlices) aimed at the
// container's port of that name.
func checkPeerService(t *testing.T, svc *corev1.Service, dep *appsv1.Deployment) {
	t.Helper()
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("peer Service clusterIP %q, publishNotReadyAddresses %v: want headless, starting pods listed too",
			svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	if len(svc.Spec.Selector) == 0 {
		t.Error("peer Service has no selector: the endpointslice controller would list nobody")
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("peer Service selector %s=%s does not match the EPP pods", k, v)
		}
	}
	want := []corev1.ServicePort{{Name: peerPortName, Port: peerPort, TargetPort: intstr.FromString(peerPortName), Protocol: corev1.ProtocolTCP}}
	if diff := cmp.Diff(want, svc.Spec.Ports); diff != "" {
		t.Errorf("peer Service ports (-want +got):\n%s", diff)
	}
}

// checkTokenFile: --replica-sync-token-file is the key "token" of the
// openepp-replica-sync Secret, mounted read-only, readable by the EPP's
// group only, and required (a missing Secret keeps the pod from starting
// rather than running replicas that cannot talk to each other).
func checkTokenFile(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	spec := dep.Spec.Template.Spec
	file, ok := flagValue(spec.Containers[0].Args, "--replica-sync-token-file")
	if !ok {
		t.Fatal("no --replica-sync-token-file")
	}
	var vol string
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.MountPath == path.Dir(file) && m.ReadOnly {
			vol = m.Name
		}
	}
	var secret *corev1.SecretVolumeSource
	for _, v := range spec.Volumes {
		if v.Name == vol && v.Secret != nil {
			secret = v.Secret
		}
	}
	if secret == nil {
		t.Fatalf("--replica-sync-token-file=%s is not in a read-only Secret volume", file)
	}
	got := map[string]any{"secret": secret.SecretName, "items": secret.Items,
		"mode": ptrValue(secret.DefaultMode), "optional": ptrValue(secret.Optional)}
	want := map[string]any{"secret": tokenSecret, "items": []corev1.KeyToPath{{Key: tokenKey, Path: path.Base(file)}},
		"mode": int32(0o440), "optional": false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("token volume (-want +got):\n%s", diff)
	}
	if sc := spec.SecurityContext; sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Errorf("fsGroup %v: want the EPP's group, so it can read the token", sc.FSGroup)
	}
}

// roleGrants flattens a rendered Role into "group/resource" → sorted verbs.
func roleGrants(t *testing.T, u *unstructured.Unstructured) map[string][]string {
	t.Helper()
	return policy.RoleGrants(typed[rbacv1.Role](t, u))
}
