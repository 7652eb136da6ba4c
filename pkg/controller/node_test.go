package controller_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/openepp/openepp/pkg/controller"
	"github.com/openepp/openepp/pkg/datastore"
)

// nodes renders the store as endpoint name -> node.
func nodes(s *datastore.Store) map[string]string {
	out := map[string]string{}
	for _, e := range s.Snapshot() {
		out[e.Name] = e.Node
	}
	return out
}

// waitNodes waits until the store's endpoints carry exactly want.
func waitNodes(t *testing.T, s *datastore.Store, want map[string]string) {
	t.Helper()
	eventuallyQuiet(func() bool { return cmp.Equal(nodes(s), want) })
	if d := cmp.Diff(want, nodes(s)); d != "" {
		t.Fatalf("endpoint nodes after %s (-want +got):\n%s", waitFor, d)
	}
}

// TestEndpointNode checks that every rank of a Pod carries the Pod's node,
// whether the Pod was created on it or bound to it later (as the scheduler
// does, through pods/binding), in pool and in selector mode.
func TestEndpointNode(t *testing.T) {
	t.Parallel()
	ports := []int{8000, 8001}
	tests := []struct {
		name string
		opts func(t *testing.T, ns string) controller.Options
	}{
		{name: "pool", opts: func(t *testing.T, ns string) controller.Options {
			env.Pool(t, ns, "pool", model, ports...)
			return controller.Options{Namespace: ns, PoolNames: []string{"pool"}}
		}},
		{name: "selector", opts: func(t *testing.T, ns string) controller.Options {
			return controller.Options{Namespace: ns, Selector: labels.SelectorFromSet(model), TargetPorts: ports}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			// Created on its node before the source starts: the resync path.
			a := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a", Labels: model},
				Spec: corev1.PodSpec{NodeName: "node-a",
					Containers: []corev1.Container{{Name: "model-server", Image: "model-server:test"}}},
			}
			env.Create(t, a)
			env.SetPodStatus(t, a, "127.0.0.2", true)
			s := startSource(t, tc.opts(t, ns))
			waitNodes(t, s.store, map[string]string{"a-rank-0": "node-a", "a-rank-1": "node-a"})

			// Running before it is bound: only the binding changes, so the
			// Pod update must get through to the store on that alone.
			b := env.RunningPod(t, ns, "b", "127.0.0.3", model)
			waitNodes(t, s.store, map[string]string{"a-rank-0": "node-a", "a-rank-1": "node-a", "b-rank-0": "", "b-rank-1": ""})
			env.Bind(t, b, "node-b")
			waitNodes(t, s.store, map[string]string{"a-rank-0": "node-a", "a-rank-1": "node-a", "b-rank-0": "node-b", "b-rank-1": "node-b"})
		})
	}
}
