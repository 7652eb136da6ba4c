package controller

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/endpoint"
)

func TestActivePorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ann     map[string]string
		want    map[int]bool
		wantErr string
	}{
		{name: "none"},
		{name: "gie", ann: map[string]string{GIEActivePortsAnnotation: "8000, 8001"}, want: map[int]bool{8000: true, 8001: true}},
		{name: "llm-d first", ann: map[string]string{GIEActivePortsAnnotation: "8000", ActivePortsAnnotation: "8001"}, want: map[int]bool{8001: true}},
		{name: "empty llm-d falls back", ann: map[string]string{GIEActivePortsAnnotation: "8000", ActivePortsAnnotation: " "}, want: map[int]bool{8000: true}},
		{name: "partly bad", ann: map[string]string{ActivePortsAnnotation: "8000,x,70000"}, want: map[int]bool{8000: true},
			wantErr: `annotation llm-d.ai/active-ports="8000,x,70000": "x" is not a port number (1-65535)` + "\n" + `"70000" is not a port number (1-65535)`},
		{name: "all bad", ann: map[string]string{GIEActivePortsAnnotation: "eighty"},
			wantErr: `annotation inference.networking.k8s.io/active-ports="eighty": "eighty" is not a port number (1-65535); annotation ignored`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := activePorts(tc.ann)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if gotErr := errString(err); gotErr != tc.wantErr {
				t.Errorf("error = %q, want %q", gotErr, tc.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func pod(mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Labels: map[string]string{"app": "m"}},
		Status: corev1.PodStatus{PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		}},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func TestPodEndpoints(t *testing.T) {
	t.Parallel()
	spec := &poolSpec{selector: labels.SelectorFromSet(labels.Set{"app": "m"}), ports: []int{8000, 8001}}
	single := naming{pool: "pool"}
	rank := func(i, port int) *endpoint.Spec {
		return &endpoint.Spec{Name: single.rank("p", i), Namespace: "ns", Pod: "p", Pool: "pool", Address: "10.0.0.1", Port: port, Labels: map[string]string{"app": "m"}}
	}
	onNode := func(s *endpoint.Spec, node string) *endpoint.Spec { s.Node = node; return s }
	inPool := func(s *endpoint.Spec, pool, name string) *endpoint.Spec { s.Pool, s.Name = pool, name; return s }
	none := []*endpoint.Spec{nil, nil}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		naming *naming // nil: single
		want   []*endpoint.Spec
	}{
		{name: "ready", pod: pod(nil), want: []*endpoint.Spec{rank(0, 8000), rank(1, 8001)}},
		{name: "one of several pools", pod: pod(nil), naming: &naming{pool: "b", prefix: "b/"},
			want: []*endpoint.Spec{inPool(rank(0, 8000), "b", "b/p-rank-0"), inPool(rank(1, 8001), "b", "b/p-rank-1")}},
		{name: "selector mode", pod: pod(nil), naming: &naming{},
			want: []*endpoint.Spec{inPool(rank(0, 8000), "", "p-rank-0"), inPool(rank(1, 8001), "", "p-rank-1")}},
		{name: "every rank on the pod's node", pod: pod(func(p *corev1.Pod) { p.Spec.NodeName = "node-1" }),
			want: []*endpoint.Spec{onNode(rank(0, 8000), "node-1"), onNode(rank(1, 8001), "node-1")}},
		{name: "active port keeps its rank", pod: pod(func(p *corev1.Pod) { p.Annotations = map[string]string{GIEActivePortsAnnotation: "8001"} }),
			want: []*endpoint.Spec{nil, rank(1, 8001)}},
		{name: "not ready", pod: pod(func(p *corev1.Pod) { p.Status.Conditions[1].Status = corev1.ConditionFalse }), want: none},
		{name: "no ready condition", pod: pod(func(p *corev1.Pod) { p.Status.Conditions = p.Status.Conditions[:1] }), want: none},
		{name: "no ip", pod: pod(func(p *corev1.Pod) { p.Status.PodIP = "" }), want: none},
		{name: "deleting", pod: pod(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: time.Now()} }), want: none},
		{name: "other labels", pod: pod(func(p *corev1.Pod) { p.Labels = map[string]string{"app": "x"} }), want: none},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := single
			if tc.naming != nil {
				n = *tc.naming
			}
			got, err := podEndpoints(tc.pod, spec, n)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSpecFromPool(t *testing.T) {
	t.Parallel()
	pool := func(ml map[infv1.LabelKey]infv1.LabelValue, ports ...infv1.PortNumber) *infv1.InferencePool {
		p := &infv1.InferencePool{}
		p.Spec.Selector.MatchLabels = ml
		for _, n := range ports {
			p.Spec.TargetPorts = append(p.Spec.TargetPorts, infv1.Port{Number: n})
		}
		return p
	}
	ok := map[infv1.LabelKey]infv1.LabelValue{"app": "m"}
	tests := []struct {
		name    string
		pool    *infv1.InferencePool
		want    string
		wantErr string
	}{
		{name: "valid", pool: pool(ok, 8000, 8001), want: "app=m [8000 8001]"},
		{name: "no labels", pool: pool(nil, 8000), wantErr: "spec.selector.matchLabels is empty"},
		{name: "bad label", pool: pool(map[infv1.LabelKey]infv1.LabelValue{"app": "a b"}, 8000), wantErr: "spec.selector: "},
		{name: "duplicate port", pool: pool(ok, 8000, 8000), wantErr: "spec.targetPorts: target port 8000 is listed twice"},
		{name: "no ports", pool: pool(ok), wantErr: "spec.targetPorts: need 1 to 8 target ports, got 0"},
		{name: "port range", pool: pool(ok, 0), wantErr: "spec.targetPorts: target port 0 is out of range 1-65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec, err := specFromPool(tc.pool)
			got := ""
			if spec != nil {
				got = spec.selector.String() + " " + fmt.Sprint(spec.ports)
			}
			if got != tc.want {
				t.Errorf("spec = %q, want %q", got, tc.want)
			}
			e := errString(err)
			if (tc.wantErr == "") != (e == "") || !strings.HasPrefix(e, tc.wantErr) {
				t.Errorf("error = %q, want prefix %q", e, tc.wantErr)
			}
		})
	}
}

func TestInstalled(t *testing.T) {
	t.Parallel()
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(v1alpha2.SchemeGroupVersion.WithKind("InferenceObjective"), meta.RESTScopeNamespace)
	for gvk, want := range map[string]bool{"InferenceObjective": true, "InferenceModelRewrite": false} {
		got, err := installed(m, v1alpha2.SchemeGroupVersion.WithKind(gvk))
		if err != nil || got != want {
			t.Errorf("installed(%s) = %v, %v; want %v", gvk, got, err, want)
		}
	}
}

func rwObject(name string, created time.Time, rules ...v1alpha2.InferenceModelRewriteRule) *v1alpha2.InferenceModelRewrite {
	return &v1alpha2.InferenceModelRewrite{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.Time{Time: created}},
		Spec:       v1alpha2.InferenceModelRewriteSpec{PoolRef: &v1alpha2.PoolObjectReference{Name: "pool"}, Rules: rules},
	}
}

func rwRule(target string, models ...string) v1alpha2.InferenceModelRewriteRule {
	r := v1alpha2.InferenceModelRewriteRule{Targets: []v1alpha2.TargetModel{{ModelRewrite: target}}}
	for _, m := range models {
		r.Matches = append(r.Matches, v1alpha2.Match{Model: &v1alpha2.ModelMatch{Value: m}})
	}
	return r
}

// TestRewritePrecedence checks §2.4: exact beats catch-all, then the oldest
// object, then the first rule; llm-d beats GIE at the same level.
func TestRewritePrecedence(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	r := NewRewrites()
	r.set(groupGIE, "new", rwObject("new", t0.Add(time.Hour), rwRule("new-a", "a"), rwRule("new-any")))
	r.set(groupGIE, "old", rwObject("old", t0, rwRule("old-any"), rwRule("old-b1", "b"), rwRule("old-b2", "b"), rwRule("old-a", "a")))
	r.set(groupGIE, "tie-z", rwObject("tie-z", t0, rwRule("tie-z-c", "c")))
	r.set(groupGIE, "tie-a", rwObject("tie-a", t0, rwRule("tie-a-c", "c")))
	r.set(groupLLMD, "llmd", rwObject("llmd", t0.Add(2*time.Hour), rwRule("llmd-d", "d"), rwRule("llmd-any")))
	r.set(groupGIE, "gone", rwObject("gone", t0.Add(-time.Hour), rwRule("gone-a", "a")))
	r.set(groupGIE, "gone", nil)
	want := map[string][2]string{
		"a": {"old-a", "old"},     // older object wins even with a later rule
		"b": {"old-b1", "old"},    // first rule of the object
		"c": {"tie-a-c", "tie-a"}, // same age: by name
		"d": {"llmd-d", "llmd"},
		"e": {"llmd-any", "llmd"}, // llm-d catch-all beats GIE's older one
	}
	got := map[string][2]string{}
	for m := range want {
		target, rule, ok := r.Rewrite(m, rand.New(rand.NewPCG(1, 2)))
		if ok {
			got[m] = [2]string{target, rule}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rewrites (-want +got):\n%s", diff)
	}
	// The listing /debug/policies shows: each model's winner, then the
	// catch-all that applies.
	var listed []string
	for _, rule := range r.Rules() {
		listed = append(listed, rule.Model+"→"+rule.Targets[0].Model)
	}
	if diff := cmp.Diff([]string{"a→old-a", "b→old-b1", "c→tie-a-c", "d→llmd-d", "→llmd-any"}, listed); diff != "" {
		t.Errorf("Rules (-want +got):\n%s", diff)
	}
	r.set(groupLLMD, "llmd", nil)
	if target, _, _ := r.Rewrite("e", nil); target != "old-any" {
		t.Errorf("catch-all = %q, want old-any (oldest GIE)", target)
	}
}

func TestRewriteWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int32
		want    []float64 // share of each target
	}{
		{name: "weighted", weights: []int32{1, 3}, want: []float64{0.25, 0.75}},
		{name: "all zero is uniform", weights: []int32{0, 0, 0, 0}, want: []float64{0.25, 0.25, 0.25, 0.25}},
		{name: "single", weights: []int32{7}, want: []float64{1}},
	}
	const draws = 20000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rule := v1alpha2.InferenceModelRewriteRule{}
			for i, w := range tc.weights {
				rule.Targets = append(rule.Targets, v1alpha2.TargetModel{ModelRewrite: string(rune('a' + i)), Weight: w})
			}
			r := NewRewrites()
			r.set(groupGIE, "w", rwObject("w", time.Now(), rule))
			rnd := rand.New(rand.NewPCG(7, 7))
			counts := map[string]int{}
			for range draws {
				target, _, _ := r.Rewrite("any", rnd)
				counts[target]++
			}
			for i, share := range tc.want {
				got := float64(counts[string(rune('a'+i))]) / draws
				if got < share-0.02 || got > share+0.02 {
					t.Errorf("target %d share = %.3f, want %.2f±0.02", i, got, share)
				}
			}
		})
	}
}

func TestPoolRefMatches(t *testing.T) {
	t.Parallel()
	p := poolRef{name: "pool", group: DefaultPoolGroup}
	tests := []struct {
		ref  v1alpha2.PoolObjectReference
		want bool
	}{
		{v1alpha2.PoolObjectReference{Name: "pool"}, true},
		{v1alpha2.PoolObjectReference{Name: "pool", Group: DefaultPoolGroup, Kind: "InferencePool"}, true},
		{v1alpha2.PoolObjectReference{Name: "other"}, false},
		{v1alpha2.PoolObjectReference{Name: "pool", Group: "inference.networking.x-k8s.io"}, false},
		{v1alpha2.PoolObjectReference{Name: "pool", Kind: "Service"}, false},
	}
	for _, tc := range tests {
		if got := p.matches(tc.ref); got != tc.want {
			t.Errorf("matches(%+v) = %v, want %v", tc.ref, got, tc.want)
		}
	}
}

func TestPicksService(t *testing.T) {
	t.Parallel()
	group := func(g string) *infv1.Group { return (*infv1.Group)(&g) }
	tests := []struct {
		name string
		ref  infv1.EndpointPickerRef
		want bool
	}{
		{name: "defaults", ref: infv1.EndpointPickerRef{Name: "epp"}, want: true},
		{name: "explicit", ref: infv1.EndpointPickerRef{Name: "epp", Kind: "Service", Group: group("")}, want: true},
		{name: "other name", ref: infv1.EndpointPickerRef{Name: "other-epp"}},
		{name: "other kind", ref: infv1.EndpointPickerRef{Name: "epp", Kind: "Gateway"}},
		{name: "other group", ref: infv1.EndpointPickerRef{Name: "epp", Group: group("example.com")}},
	}
	for _, tc := range tests {
		if got := picksService(tc.ref, "epp"); got != tc.want {
			t.Errorf("%s: picksService = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestPoolLookupsOf checks which pools have Lookups: those named up front,
// or with a picker service any pool, created on first use by Of or by a
// poolRef in the pool group (not by one in another group).
func TestPoolLookupsOf(t *testing.T) {
	t.Parallel()
	fixed := newPoolLookups(Options{PoolNames: []string{"a"}, PoolGroup: DefaultPoolGroup})
	if fixed.Of("a") == nil || fixed.Of("b") != nil {
		t.Errorf("fixed pools: Of(a), Of(b) = %p, %p; want only a", fixed.Of("a"), fixed.Of("b"))
	}
	open := newPoolLookups(Options{PickerService: "epp", PoolGroup: DefaultPoolGroup})
	foreign := &v1alpha2.PoolObjectReference{Name: "x", Group: "example.com"}
	open.each(foreign, func(*Lookups, bool) { t.Error("a poolRef in another group created Lookups") })
	var owners []*Lookups
	open.each(&v1alpha2.PoolObjectReference{Name: "b"}, func(l *Lookups, owned bool) {
		if owned {
			owners = append(owners, l)
		}
	})
	if len(owners) != 1 || open.Of("b") != owners[0] {
		t.Errorf("owners of a poolRef to b = %v, want the one Of(b) returns", owners)
	}
	if a := open.Of("a"); a == nil || open.Of("a") != a {
		t.Error("Of(a) must create a's Lookups once")
	}
}
