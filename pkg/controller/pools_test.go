package controller_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	"github.com/openepp/openepp/pkg/controller"
	"github.com/openepp/openepp/pkg/datastore"
)

// endpointPools renders the store as endpoint name -> pool.
func endpointPools(s *datastore.Store) map[string]string {
	out := map[string]string{}
	for _, e := range s.Snapshot() {
		out[e.Name] = e.Pool
	}
	return out
}

// TestSeveralPools serves two pools with disjoint selectors and a Pod
// selected by both: each pool has its own endpoints, named "<pool>/...",
// a relabelled Pod moves between them, and deleting one pool leaves the
// other serving.
func TestSeveralPools(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	inA, inB, inBoth := map[string]string{"a": "yes"}, map[string]string{"b": "yes"}, map[string]string{"a": "yes", "b": "yes"}
	poolA := env.Pool(t, ns, "a", inA, 8000)
	env.Pool(t, ns, "b", inB, 9000, 9001)
	env.Pool(t, ns, "c", inA, 7000) // not served: ignored
	pa := env.RunningPod(t, ns, "pa", "127.0.0.2", inA)
	env.RunningPod(t, ns, "pb", "127.0.0.3", inB)
	env.RunningPod(t, ns, "both", "127.0.0.4", inBoth)
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"a", "b"}})
	waitEndpoints(t, s.store,
		"a/both-rank-0=127.0.0.4:8000", "a/pa-rank-0=127.0.0.2:8000",
		"b/both-rank-0=127.0.0.4:9000", "b/both-rank-1=127.0.0.4:9001",
		"b/pb-rank-0=127.0.0.3:9000", "b/pb-rank-1=127.0.0.3:9001")
	eventually(t, "ready", s.store.Ready)
	want := map[string]string{
		"a/both-rank-0": "a", "a/pa-rank-0": "a",
		"b/both-rank-0": "b", "b/both-rank-1": "b", "b/pb-rank-0": "b", "b/pb-rank-1": "b",
	}
	if diff := cmp.Diff(want, endpointPools(s.store)); diff != "" {
		t.Errorf("endpoint pools (-want +got):\n%s", diff)
	}

	env.Update(t, pa, func() { pa.Labels = inB })
	waitEndpoints(t, s.store,
		"a/both-rank-0=127.0.0.4:8000",
		"b/both-rank-0=127.0.0.4:9000", "b/both-rank-1=127.0.0.4:9001",
		"b/pa-rank-0=127.0.0.2:9000", "b/pa-rank-1=127.0.0.2:9001",
		"b/pb-rank-0=127.0.0.3:9000", "b/pb-rank-1=127.0.0.3:9001")

	env.Delete(t, poolA)
	waitEndpoints(t, s.store,
		"b/both-rank-0=127.0.0.4:9000", "b/both-rank-1=127.0.0.4:9001",
		"b/pa-rank-0=127.0.0.2:9000", "b/pa-rank-1=127.0.0.2:9001",
		"b/pb-rank-0=127.0.0.3:9000", "b/pb-rank-1=127.0.0.3:9001")
	if !s.store.Ready() {
		t.Error("not ready while pool b still serves")
	}
	env.Pool(t, ns, "a", inA, 8000)
	waitEndpoints(t, s.store,
		"a/both-rank-0=127.0.0.4:8000",
		"b/both-rank-0=127.0.0.4:9000", "b/both-rank-1=127.0.0.4:9001",
		"b/pa-rank-0=127.0.0.2:9000", "b/pa-rank-1=127.0.0.2:9001",
		"b/pb-rank-0=127.0.0.3:9000", "b/pb-rank-1=127.0.0.3:9001")
}

// TestSeveralPoolsPolicies checks that objectives and rewrites reach only
// the Lookups of the pool their poolRef names, and follow a poolRef that
// moves.
func TestSeveralPoolsPolicies(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"a", "b"}})
	if a, b := s.lookups.Of("a"), s.lookups.Of("b"); a == nil || b == nil || a == b || s.lookups.Of("c") != nil {
		t.Fatalf("lookups of a, b, c = %p, %p, %p; want one per pool served, none for c", a, b, s.lookups.Of("c"))
	}
	env.Create(t, objective(ns, "chat", "b", ptr.To(7)))
	batch := objective(ns, "batch", "a", ptr.To(-1))
	env.Create(t, batch)
	env.Create(t, llmdObjective(ns, "llmd-b", "b", ptr.To(2)))
	env.Create(t, objective(ns, "elsewhere", "c", ptr.To(3)))
	env.Create(t, rewrite(ns, "rw-b", "b", rule("b-target", "m")))

	names := []string{"chat", "batch", "llmd-b", "elsewhere"}
	waitPriorities(t, s.lookups.Of("a").Objectives, names, map[string]priority{
		"chat": {}, "batch": {-1, true}, "llmd-b": {}, "elsewhere": {},
	})
	waitPriorities(t, s.lookups.Of("b").Objectives, names, map[string]priority{
		"chat": {7, true}, "batch": {}, "llmd-b": {2, true}, "elsewhere": {},
	})
	var got map[string]rewritten
	want := map[string]rewritten{"m": {"b-target", "rw-b"}}
	eventuallyQuiet(func() bool { got = rewrites(s.lookups.Of("b").Rewrites, "m"); return cmp.Equal(got, want) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pool b rewrites (-want +got):\n%s", diff)
	}
	if got := rewrites(s.lookups.Of("a").Rewrites, "m"); len(got) != 0 {
		t.Errorf("pool a rewrites = %v, want none", got)
	}

	env.Update(t, batch, func() { batch.Spec.PoolRef.Name = "b" })
	waitPriorities(t, s.lookups.Of("b").Objectives, names, map[string]priority{
		"chat": {7, true}, "batch": {-1, true}, "llmd-b": {2, true}, "elsewhere": {},
	})
	waitPriorities(t, s.lookups.Of("a").Objectives, names, map[string]priority{
		"chat": {}, "batch": {}, "llmd-b": {}, "elsewhere": {},
	})
}
