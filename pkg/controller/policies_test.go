package controller_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/controller"
)

func objective(ns, name, pool string, priority *int) *v1alpha2.InferenceObjective {
	return &v1alpha2.InferenceObjective{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha2.InferenceObjectiveSpec{Priority: priority, PoolRef: v1alpha2.PoolObjectReference{Name: v1alpha2.ObjectName(pool)}},
	}
}

func llmdObjective(ns, name, pool string, priority *int) *controller.LLMDObjective {
	o := controller.LLMDObjective(*objective(ns, name, pool, priority))
	return &o
}

type priority struct {
	P  int
	OK bool
}

func priorities(o *controller.Objectives, names ...string) map[string]priority {
	out := map[string]priority{}
	for _, n := range names {
		p, ok := o.Priority(n)
		out[n] = priority{p, ok}
	}
	return out
}

// TestObjectives checks that objectives of our pool are read from both API
// groups, llm-d's winning, and that others are ignored.
func TestObjectives(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, 8000)
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"pool"}})
	env.Create(t, objective(ns, "chat", "pool", ptr.To(5)))
	batch := objective(ns, "batch", "pool", ptr.To(-1))
	env.Create(t, batch)
	env.Create(t, objective(ns, "unset", "pool", nil))
	env.Create(t, objective(ns, "elsewhere", "other-pool", ptr.To(3)))
	other := objective(ns, "other-group", "pool", ptr.To(3))
	other.Spec.PoolRef.Group = "example.com"
	env.Create(t, other)
	llmdChat := llmdObjective(ns, "chat", "pool", ptr.To(9))
	env.Create(t, llmdChat)
	env.Create(t, llmdObjective(ns, "llmd-only", "pool", ptr.To(2)))

	names := []string{"chat", "batch", "unset", "elsewhere", "other-group", "llmd-only", "missing"}
	want := map[string]priority{
		"chat": {9, true}, "batch": {-1, true}, "unset": {0, true}, "elsewhere": {}, "other-group": {},
		"llmd-only": {2, true}, "missing": {},
	}
	waitPriorities(t, s.lookups.Of("pool").Objectives, names, want)
	listed := map[string]int{"chat": 9, "batch": -1, "unset": 0, "llmd-only": 2}
	if diff := cmp.Diff(listed, s.lookups.Of("pool").Objectives.Priorities()); diff != "" {
		t.Errorf("Priorities, llm-d's chat winning (-want +got):\n%s", diff)
	}

	env.Delete(t, llmdChat)
	env.Update(t, batch, func() { batch.Spec.PoolRef.Name = "other-pool" })
	want["chat"], want["batch"] = priority{5, true}, priority{}
	waitPriorities(t, s.lookups.Of("pool").Objectives, names, want)
}

func waitPriorities(t *testing.T, o *controller.Objectives, names []string, want map[string]priority) {
	t.Helper()
	var got map[string]priority
	eventuallyQuiet(func() bool { got = priorities(o, names...); return cmp.Equal(got, want) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("priorities (-want +got):\n%s", diff)
	}
}

func rewrite(ns, name, pool string, rules ...v1alpha2.InferenceModelRewriteRule) *v1alpha2.InferenceModelRewrite {
	return &v1alpha2.InferenceModelRewrite{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha2.InferenceModelRewriteSpec{
			PoolRef: &v1alpha2.PoolObjectReference{Name: v1alpha2.ObjectName(pool)},
			Rules:   rules,
		},
	}
}

// rule rewrites the listed models (none: every model) to target.
func rule(target string, models ...string) v1alpha2.InferenceModelRewriteRule {
	r := v1alpha2.InferenceModelRewriteRule{Targets: []v1alpha2.TargetModel{{ModelRewrite: target, Weight: 1}}}
	for _, m := range models {
		r.Matches = append(r.Matches, v1alpha2.Match{Model: &v1alpha2.ModelMatch{Value: m}})
	}
	return r
}

type rewritten struct{ Target, Rule string }

func rewrites(r *controller.Rewrites, models ...string) map[string]rewritten {
	out := map[string]rewritten{}
	for _, m := range models {
		target, name, ok := r.Rewrite(m, nil)
		if ok {
			out[m] = rewritten{target, name}
		}
	}
	return out
}

// TestRewrites checks that rewrites of our pool are read from both groups:
// exact rules beat catch-alls, llm-d's beat GIE's, other pools are ignored.
func TestRewrites(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, 8000)
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"pool"}})
	env.Create(t, rewrite(ns, "gie", "pool", rule("gie-a", "a"), rule("gie-any")))
	env.Create(t, rewrite(ns, "elsewhere", "other-pool", rule("never", "b")))
	llmd := controller.LLMDModelRewrite(*rewrite(ns, "llmd", "pool", rule("llmd-c", "c"), rule("llmd-any")))
	env.Create(t, &llmd)
	models := []string{"a", "b", "c"}
	want := map[string]rewritten{"a": {"gie-a", "gie"}, "b": {"llmd-any", "llmd"}, "c": {"llmd-c", "llmd"}}
	var got map[string]rewritten
	eventuallyQuiet(func() bool { got = rewrites(s.lookups.Of("pool").Rewrites, models...); return cmp.Equal(got, want) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("rewrites (-want +got):\n%s", diff)
	}
	rw := s.lookups.Of("pool").Rewrites
	if !rw.Claims("a") || !rw.Claims("c") || rw.Claims("b") {
		t.Errorf("claims a, b, c: %v %v %v; want only the exact rules' models (a catch-all claims nothing)", rw.Claims("a"), rw.Claims("b"), rw.Claims("c"))
	}
	env.Delete(t, &llmd)
	want = map[string]rewritten{"a": {"gie-a", "gie"}, "b": {"gie-any", "gie"}, "c": {"gie-any", "gie"}}
	eventuallyQuiet(func() bool { got = rewrites(s.lookups.Of("pool").Rewrites, models...); return cmp.Equal(got, want) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after deleting the llm-d rewrite (-want +got):\n%s", diff)
	}
}
