package helmchart

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/openepp/openepp/test/policy"
)

// The chart's defaults differ from manifests/epp only in these args (the
// config path and what upstream's chart passes: JSON logs, tracing off) and
// these env vars (upstream's chart sets them; values may refer to them).
var (
	chartOnlyArgs = []string{"--zap-encoder=json", "--tracing=false"}
	chartOnlyEnv  = []string{"NAMESPACE", "POD_NAME"}
)

// TestDefaultsMatchTheManifests renders the chart with only the required
// value and manifests/epp with kustomize, and requires the same EPP: pod
// and container security, probes, ports, resources, lifecycle, args and env
// (but for the listed differences), Service ports, RBAC, and a config file
// identical to config/default.yaml. Change one, change the other.
func TestDefaultsMatchTheManifests(t *testing.T) {
	t.Parallel()
	chart := render(t, install{name: release, namespace: "ns", set: []string{modelApp}})
	kust := kustomize(t, filepath.Join(repoRoot(t), "manifests", "epp"))
	const kName = "openepp"
	cDep, cC := deployment(t, chart)
	kDep := policy.Typed[appsv1.Deployment](t, find(t, kust, "Deployment", kName))
	kC := policy.Container(t, kDep, "epp")

	// The config: the chart's default-plugins.yaml is the manifests' file.
	cFile, _ := policy.FlagValue(cC.Args, "--config-file")
	kFile, _ := policy.FlagValue(kC.Args, "--config-file")
	cCM := policy.Typed[corev1.ConfigMap](t, find(t, chart, "ConfigMap", eppName))
	kCM := policy.Typed[corev1.ConfigMap](t, find(t, kust, "ConfigMap", "openepp-config"))
	if diff := cmp.Diff(kCM.Data[filepath.Base(kFile)], cCM.Data[filepath.Base(cFile)]); diff != "" {
		t.Errorf("the chart's %s differs from manifests/epp's %s (-manifests +chart):\n%s", cFile, kFile, diff)
	}

	// The pod.
	type pod struct {
		Replicas    int32
		Strategy    appsv1.DeploymentStrategy
		Grace       int64
		PodSecurity *corev1.PodSecurityContext
		Image       string
		PullPolicy  corev1.PullPolicy
		Security    *corev1.SecurityContext
		Ports       []corev1.ContainerPort
		Liveness    *corev1.Probe
		Readiness   *corev1.Probe
		Resources   corev1.ResourceRequirements
		Args        []string
		Env         []corev1.EnvVar
		Tmp         *corev1.EmptyDirVolumeSource
	}
	podOf := func(dep *appsv1.Deployment, c corev1.Container, file string, dropArgs, dropEnv []string) pod {
		var args []string
		for _, a := range c.Args {
			if !slices.Contains(dropArgs, a) {
				args = append(args, strings.ReplaceAll(a, file, "CONFIG"))
			}
		}
		slices.Sort(args)
		var envs []corev1.EnvVar
		for _, e := range c.Env {
			if !slices.Contains(dropEnv, e.Name) {
				envs = append(envs, e)
			}
		}
		var tmp *corev1.EmptyDirVolumeSource
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == "tmp" {
				tmp = v.EmptyDir
			}
		}
		s := dep.Spec.Template.Spec
		return pod{policy.PtrValue(dep.Spec.Replicas), dep.Spec.Strategy, policy.PtrValue(s.TerminationGracePeriodSeconds),
			s.SecurityContext, c.Image, c.ImagePullPolicy, c.SecurityContext, c.Ports, c.LivenessProbe, c.ReadinessProbe,
			c.Resources, args, envs, tmp}
	}
	for _, a := range chartOnlyArgs {
		if !slices.Contains(cC.Args, a) {
			t.Errorf("the chart no longer passes %s: update chartOnlyArgs and the chart's README", a)
		}
	}
	want := podOf(kDep, kC, kFile, nil, nil)
	got := podOf(cDep, cC, cFile, chartOnlyArgs, chartOnlyEnv)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the chart's EPP pod differs from manifests/epp's (-manifests +chart):\n%s", diff)
	}
	if len(cDep.Spec.Template.Spec.Containers) != len(kDep.Spec.Template.Spec.Containers) {
		t.Errorf("%d containers, the manifests have %d", len(cDep.Spec.Template.Spec.Containers), len(kDep.Spec.Template.Spec.Containers))
	}
	checkSameRBACAndService(t, chart, kust, kName)
}

// checkSameRBACAndService: the same Role grants, cluster grants and Service
// ports as the manifests.
func checkSameRBACAndService(t *testing.T, chart, kust []*unstructured.Unstructured, kName string) {
	t.Helper()
	cRole := policy.Typed[rbacv1.Role](t, find(t, chart, "Role", eppName))
	kRole := policy.Typed[rbacv1.Role](t, find(t, kust, "Role", kName))
	if diff := cmp.Diff(policy.RoleGrants(kRole), policy.RoleGrants(cRole)); diff != "" {
		t.Errorf("Role grants (-manifests +chart):\n%s", diff)
	}
	cCRB := policy.Typed[rbacv1.ClusterRoleBinding](t, policy.OfKind(chart, "ClusterRoleBinding")[0])
	kCRB := policy.Typed[rbacv1.ClusterRoleBinding](t, policy.OfKind(kust, "ClusterRoleBinding")[0])
	if diff := cmp.Diff(kCRB.RoleRef, cCRB.RoleRef); diff != "" {
		t.Errorf("ClusterRoleBinding roleRef (-manifests +chart):\n%s", diff)
	}
	cCR := policy.Typed[rbacv1.ClusterRole](t, policy.OfKind(chart, "ClusterRole")[0])
	kCR := policy.Typed[rbacv1.ClusterRole](t, policy.OfKind(kust, "ClusterRole")[0])
	if diff := cmp.Diff(kCR.Rules, cCR.Rules); diff != "" {
		t.Errorf("metrics-reader ClusterRole rules (-manifests +chart):\n%s", diff)
	}
	cSvc := policy.Typed[corev1.Service](t, find(t, chart, "Service", eppName))
	kSvc := policy.Typed[corev1.Service](t, find(t, kust, "Service", kName))
	if diff := cmp.Diff(kSvc.Spec.Ports, cSvc.Spec.Ports); diff != "" {
		t.Errorf("Service ports (-manifests +chart):\n%s", diff)
	}
}

// kustomize builds dir as `kubectl apply -k` would.
func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, u)
	}
	return objs
}
