package manifests

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// eppDeployment is the rendered EPP Deployment as its Go type.
func eppDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	return typed[appsv1.Deployment](t, find(t, "Deployment", eppName))
}

// eppContainer is the "epp" container of the EPP Deployment.
func eppContainer(t *testing.T) corev1.Container {
	t.Helper()
	for _, c := range eppDeployment(t).Spec.Template.Spec.Containers {
		if c.Name == "epp" {
			return c
		}
	}
	t.Fatal("EPP Deployment has no container named epp")
	return corev1.Container{}
}

// hardening is what a restricted Pod Security profile (and a reviewer) asks
// of every container; each field is true when the container complies.
type hardening struct {
	RunAsNonRoot, ReadOnlyRootFS, NoPrivilegeEscalation, DropsAll, AddsNothing, SeccompRuntimeDefault bool
}

func hardeningOf(pod *corev1.PodSecurityContext, c corev1.Container) hardening {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil && pod != nil {
		nonRoot = pod.RunAsNonRoot
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && pod != nil {
		seccomp = pod.SeccompProfile
	}
	h := hardening{
		RunAsNonRoot:          nonRoot != nil && *nonRoot,
		ReadOnlyRootFS:        sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		NoPrivilegeEscalation: sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		AddsNothing:           true,
		SeccompRuntimeDefault: seccomp != nil && seccomp.Type == corev1.SeccompProfileTypeRuntimeDefault,
	}
	if caps := sc.Capabilities; caps != nil {
		h.DropsAll = slices.Contains(caps.Drop, "ALL")
		h.AddsNothing = len(caps.Add) == 0
	}
	return h
}

func TestEPPContainersAreHardened(t *testing.T) {
	t.Parallel()
	spec := eppDeployment(t).Spec.Template.Spec
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("EPP pod shares a host namespace")
	}
	all := hardening{true, true, true, true, true, true}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if diff := cmp.Diff(all, hardeningOf(spec.SecurityContext, c)); diff != "" {
			t.Errorf("container %q is not hardened (-want +got):\n%s", c.Name, diff)
		}
	}
}

func TestEPPProbesUseGRPCHealthServices(t *testing.T) {
	t.Parallel()
	type probe struct {
		Port    int32
		Service string
	}
	grpcProbe := func(p *corev1.Probe) probe {
		if p == nil || p.GRPC == nil {
			return probe{}
		}
		return probe{Port: p.GRPC.Port, Service: ptrValue(p.GRPC.Service)}
	}
	c := eppContainer(t)
	got := map[string]probe{"liveness": grpcProbe(c.LivenessProbe), "readiness": grpcProbe(c.ReadinessProbe)}
	want := map[string]probe{"liveness": {9003, "liveness"}, "readiness": {9003, "readiness"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("probes (-want +got):\n%s", diff)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == 9003 }) {
		t.Error("the probe port 9003 is not a declared container port")
	}
}

func TestEPPServicePorts(t *testing.T) {
	t.Parallel()
	svc := typed[corev1.Service](t, find(t, "Service", eppName))
	type port struct{ Name, TargetPort, AppProtocol string }
	got := map[int32]port{}
	for _, p := range svc.Spec.Ports {
		got[p.Port] = port{p.Name, p.TargetPort.String(), ptrValue(p.AppProtocol)}
	}
	want := map[int32]port{
		9002: {"grpc-ext-proc", "grpc", "http2"},
		9003: {"grpc-health", "grpc-health", ""},
		9090: {"http-metrics", "metrics", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Service ports (-want +got):\n%s", diff)
	}
	c := eppContainer(t)
	for _, p := range svc.Spec.Ports {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.String() }) {
			t.Errorf("Service port %q targets %q, which the epp container does not declare", p.Name, p.TargetPort.String())
		}
	}
	labels := eppDeployment(t).Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the EPP pods", k, v)
		}
	}
}

// TestEPPRoleIsLeastPrivilege pins the Role to exactly what the EPP uses: it
// reads pods, its pool and the objectives/rewrites, keeps a leader-election
// Lease and records events; nothing else, and no cluster-wide grant.
func TestEPPRoleIsLeastPrivilege(t *testing.T) {
	t.Parallel()
	role := typed[rbacv1.Role](t, find(t, "Role", eppName))
	got := map[string][]string{}
	for _, r := range role.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected resourceNames/nonResourceURLs in rule %+v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				got[g+"/"+res] = sortedUnion(got[g+"/"+res], r.Verbs)
			}
		}
	}
	read := []string{"get", "list", "watch"}
	want := map[string][]string{
		"/pods": read,
		"inference.networking.k8s.io/inferencepools":           read,
		"inference.networking.x-k8s.io/inferenceobjectives":    read,
		"inference.networking.x-k8s.io/inferencemodelrewrites": read,
		"llm-d.ai/inferenceobjectives":                         read,
		"llm-d.ai/inferencemodelrewrites":                      read,
		"coordination.k8s.io/leases":                           {"create", "get", "update"},
		"/events":                                              {"create", "patch"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Role grants (-want +got):\n%s", diff)
	}
	for key, verbs := range got {
		if strings.Contains(key, "*") || slices.Contains(verbs, "*") {
			t.Errorf("wildcard grant on %s: %v", key, verbs)
		}
		res := key[strings.Index(key, "/")+1:]
		if strings.HasPrefix(res, "pods") || strings.HasPrefix(res, "inferencepools") {
			if w := writeVerbs(verbs); len(w) > 0 {
				t.Errorf("write verbs %v on %s: the EPP only reads pods and pools", w, key)
			}
		}
	}
}

// TestEPPClusterAccessOnlyChecksMetricsCallers: the EPP's one cluster-wide
// grant is the built-in system:auth-delegator (create TokenReviews and
// SubjectAccessReviews, for --metrics-endpoint-auth); the only ClusterRole
// shipped is the scrapers' read-only /metrics grant, bound to nobody.
func TestEPPClusterAccessOnlyChecksMetricsCallers(t *testing.T) {
	t.Parallel()
	bindings := ofKind(t, "ClusterRoleBinding")
	if len(bindings) != 1 {
		t.Fatalf("%d ClusterRoleBindings rendered, want 1 (auth delegation)", len(bindings))
	}
	crb := typed[rbacv1.ClusterRoleBinding](t, bindings[0])
	dep := eppDeployment(t)
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"}
	wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: dep.Spec.Template.Spec.ServiceAccountName, Namespace: dep.Namespace}}
	if diff := cmp.Diff(wantRef, crb.RoleRef); diff != "" {
		t.Errorf("ClusterRoleBinding roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSubjects, crb.Subjects); diff != "" {
		t.Errorf("ClusterRoleBinding subjects (-want +got):\n%s", diff)
	}
	roles := ofKind(t, "ClusterRole")
	if len(roles) != 1 {
		t.Fatalf("%d ClusterRoles rendered, want 1 (the metrics reader)", len(roles))
	}
	reader := typed[rbacv1.ClusterRole](t, roles[0])
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if diff := cmp.Diff(want, reader.Rules); diff != "" {
		t.Errorf("%s rules (-want +got):\n%s", reader.Name, diff)
	}
}

func TestEPPRoleBindingBindsTheEPPServiceAccount(t *testing.T) {
	t.Parallel()
	rb := typed[rbacv1.RoleBinding](t, find(t, "RoleBinding", eppName))
	dep := eppDeployment(t)
	sa := find(t, "ServiceAccount", dep.Spec.Template.Spec.ServiceAccountName)
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: eppName}
	if diff := cmp.Diff(wantRef, rb.RoleRef); diff != "" {
		t.Errorf("roleRef (-want +got):\n%s", diff)
	}
	wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.GetName(), Namespace: dep.Namespace}}
	if diff := cmp.Diff(wantSubjects, rb.Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
}

func TestEPPDeploymentLifecycle(t *testing.T) {
	t.Parallel()
	dep := eppDeployment(t)
	if got := dep.Spec.Strategy.Type; got != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q, want Recreate (one active EPP; see the comment in deployment.yaml)", got)
	}
	drain := 30 * time.Second // the EPP's default when the flag is absent
	if v, ok := flagValue(eppContainer(t).Args, "--drain-timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("--drain-timeout=%q: %v", v, err)
		}
		drain = d
	}
	grace := time.Duration(ptrValue(dep.Spec.Template.Spec.TerminationGracePeriodSeconds)) * time.Second
	if grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %s must exceed the drain timeout %s", grace, drain)
	}
	if v, _ := flagValue(eppContainer(t).Args, "--v"); v != "1" {
		t.Errorf("--v=%q, want 1 (one log line per decision)", v)
	}
}

// TestEPPPoolFlagsComeFromTheDownwardAPI checks that --pool-name and
// --pool-namespace are filled from the pod's own metadata, so the namespace
// follows wherever the manifests are applied.
func TestEPPPoolFlagsComeFromTheDownwardAPI(t *testing.T) {
	t.Parallel()
	c := eppContainer(t)
	fieldPaths := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			fieldPaths[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	got := map[string]string{}
	for _, name := range []string{"--pool-name", "--pool-namespace"} {
		v, _ := flagValue(c.Args, name)
		env, ok := strings.CutPrefix(v, "$(")
		env, ok2 := strings.CutSuffix(env, ")")
		if !ok || !ok2 {
			t.Errorf("%s=%q is not an env var reference", name, v)
			continue
		}
		got[name] = fieldPaths[env]
	}
	want := map[string]string{
		"--pool-name":      "metadata.annotations['" + poolAnnotation + "']",
		"--pool-namespace": "metadata.namespace",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("downward API field paths (-want +got):\n%s", diff)
	}
}

// TestEPPResourcesAreSized checks requests are set, smaller than upstream's
// 4 CPU / 8Gi, and bounded by a memory limit.
func TestEPPResourcesAreSized(t *testing.T) {
	t.Parallel()
	res := eppContainer(t).Resources
	cpu, mem, limit := res.Requests.Cpu(), res.Requests.Memory(), res.Limits.Memory()
	if cpu.IsZero() || mem.IsZero() || limit.IsZero() {
		t.Fatalf("want cpu and memory requests and a memory limit, got %+v", res)
	}
	if cpu.Cmp(resource.MustParse("4")) >= 0 || mem.Cmp(resource.MustParse("8Gi")) >= 0 {
		t.Errorf("requests %s CPU / %s are not below upstream's 4 / 8Gi", cpu, mem)
	}
	if limit.Cmp(*mem) < 0 {
		t.Errorf("memory limit %s is below the request %s", limit, mem)
	}
}

// flagValue finds --name=value or --name value in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// writeVerbs returns the verbs in verbs that modify objects.
func writeVerbs(verbs []string) []string {
	var out []string
	for _, v := range verbs {
		if v != "get" && v != "list" && v != "watch" {
			out = append(out, v)
		}
	}
	return out
}

func sortedUnion(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
