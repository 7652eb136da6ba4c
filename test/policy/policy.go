package policy

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

// Hardened: no host namespaces, and every container runs as non-root with a
// read-only root file system, no privilege escalation, no capabilities and
// the runtime's seccomp profile.
func Hardened(t testing.TB, spec corev1.PodSpec) {
	t.Helper()
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

// Probes: liveness and readiness ask the EPP's gRPC health services on the
// declared port 9003.
func Probes(t testing.TB, c corev1.Container) {
	t.Helper()
	type probe struct {
		Port    int32
		Service string
	}
	grpcProbe := func(p *corev1.Probe) probe {
		if p == nil || p.GRPC == nil {
			return probe{}
		}
		return probe{Port: p.GRPC.Port, Service: PtrValue(p.GRPC.Service)}
	}
	got := map[string]probe{"liveness": grpcProbe(c.LivenessProbe), "readiness": grpcProbe(c.ReadinessProbe)}
	want := map[string]probe{"liveness": {9003, "liveness"}, "readiness": {9003, "readiness"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("probes (-want +got):\n%s", diff)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == 9003 }) {
		t.Error("the probe port 9003 is not a declared container port")
	}
}

// ServicePorts: ext_proc (HTTP/2), health and metrics, each targeting a
// port the container declares, and a selector matching the EPP pods.
func ServicePorts(t testing.TB, svc *corev1.Service, dep *appsv1.Deployment, c corev1.Container) {
	t.Helper()
	type port struct{ Name, TargetPort, AppProtocol string }
	got := map[int32]port{}
	for _, p := range svc.Spec.Ports {
		got[p.Port] = port{p.Name, p.TargetPort.String(), PtrValue(p.AppProtocol)}
	}
	want := map[int32]port{
		9002: {"grpc-ext-proc", "grpc", "http2"},
		9003: {"grpc-health", "grpc-health", ""},
		9090: {"http-metrics", "metrics", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Service ports (-want +got):\n%s", diff)
	}
	for _, p := range svc.Spec.Ports {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.String() }) {
			t.Errorf("Service port %q targets %q, which the epp container does not declare", p.Name, p.TargetPort.String())
		}
	}
	labels := dep.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the EPP pods", k, v)
		}
	}
}

// RoleIsLeastPrivilege pins the Role to exactly what the EPP uses: it reads
// pods, its pool and the objectives/rewrites, keeps a leader-election Lease
// and records events, plus extra ("group/resource" → verbs); nothing else.
func RoleIsLeastPrivilege(t testing.TB, role *rbacv1.Role, extra map[string][]string) {
	t.Helper()
	for _, r := range role.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected resourceNames/nonResourceURLs in rule %+v", r)
		}
	}
	got := RoleGrants(role)
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
	for k, v := range extra {
		want[k] = v
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

// ClusterAccessOnlyChecksMetricsCallers: the EPP's one cluster-wide grant is
// the built-in system:auth-delegator (create TokenReviews and
// SubjectAccessReviews, for --metrics-endpoint-auth); the only ClusterRole
// shipped is the scrapers' read-only /metrics grant.
func ClusterAccessOnlyChecksMetricsCallers(t testing.TB, bindings []*rbacv1.ClusterRoleBinding, roles []*rbacv1.ClusterRole, dep *appsv1.Deployment) {
	t.Helper()
	if len(bindings) != 1 {
		t.Fatalf("%d ClusterRoleBindings rendered, want 1 (auth delegation)", len(bindings))
	}
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"}
	wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: dep.Spec.Template.Spec.ServiceAccountName, Namespace: dep.Namespace}}
	if diff := cmp.Diff(wantRef, bindings[0].RoleRef); diff != "" {
		t.Errorf("ClusterRoleBinding roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSubjects, bindings[0].Subjects); diff != "" {
		t.Errorf("ClusterRoleBinding subjects (-want +got):\n%s", diff)
	}
	if len(roles) != 1 {
		t.Fatalf("%d ClusterRoles rendered, want 1 (the metrics reader)", len(roles))
	}
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if diff := cmp.Diff(want, roles[0].Rules); diff != "" {
		t.Errorf("%s rules (-want +got):\n%s", roles[0].Name, diff)
	}
}

// RoleBindingBindsTheServiceAccount: the RoleBinding grants role to the
// EPP's own service account, in the EPP's namespace.
func RoleBindingBindsTheServiceAccount(t testing.TB, rb *rbacv1.RoleBinding, dep *appsv1.Deployment, role string) {
	t.Helper()
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role}
	if diff := cmp.Diff(wantRef, rb.RoleRef); diff != "" {
		t.Errorf("roleRef (-want +got):\n%s", diff)
	}
	wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: dep.Spec.Template.Spec.ServiceAccountName, Namespace: dep.Namespace}}
	if diff := cmp.Diff(wantSubjects, rb.Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
}

// Lifecycle: Recreate (one active EPP), a grace period longer than the
// drain timeout, and one log line per decision (--v=1).
func Lifecycle(t testing.TB, dep *appsv1.Deployment, c corev1.Container) {
	t.Helper()
	if got := dep.Spec.Strategy.Type; got != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q, want Recreate (one active EPP; see the comment in deployment.yaml)", got)
	}
	drain := 30 * time.Second // the EPP's default when the flag is absent
	if v, ok := FlagValue(c.Args, "--drain-timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("--drain-timeout=%q: %v", v, err)
		}
		drain = d
	}
	grace := time.Duration(PtrValue(dep.Spec.Template.Spec.TerminationGracePeriodSeconds)) * time.Second
	if grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %s must exceed the drain timeout %s", grace, drain)
	}
	if v, _ := FlagValue(c.Args, "--v"); v != "1" {
		t.Errorf("--v=%q, want 1 (one log line per decision)", v)
	}
}

// PoolFlagsComeFromTheDownwardAPI: --pool-name and --pool-namespace are
// filled from the pod's own metadata (the pool name from annotation), so
// the namespace follows wherever the objects are applied.
func PoolFlagsComeFromTheDownwardAPI(t testing.TB, c corev1.Container, annotation string) {
	t.Helper()
	fieldPaths := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			fieldPaths[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	got := map[string]string{}
	for _, name := range []string{"--pool-name", "--pool-namespace"} {
		v, _ := FlagValue(c.Args, name)
		env, ok := strings.CutPrefix(v, "$(")
		env, ok2 := strings.CutSuffix(env, ")")
		if !ok || !ok2 {
			t.Errorf("%s=%q is not an env var reference", name, v)
			continue
		}
		got[name] = fieldPaths[env]
	}
	want := map[string]string{
		"--pool-name":      "metadata.annotations['" + annotation + "']",
		"--pool-namespace": "metadata.namespace",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("downward API field paths (-want +got):\n%s", diff)
	}
}

// ResourcesAreSized: requests are set, smaller than upstream's 4 CPU / 8Gi,
// and bounded by a memory limit.
func ResourcesAreSized(t testing.TB, c corev1.Container) {
	t.Helper()
	res := c.Resources
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

// RoleGrants flattens a Role into "group/resource" → sorted verbs.
func RoleGrants(role *rbacv1.Role) map[string][]string {
	got := map[string][]string{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				got[g+"/"+res] = sortedUnion(got[g+"/"+res], r.Verbs)
			}
		}
	}
	return got
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
