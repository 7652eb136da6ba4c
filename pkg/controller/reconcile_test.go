package controller_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/openepp/openepp/pkg/controller"
	"github.com/openepp/openepp/pkg/datastore"
)

// endpoints renders the store as "name=ip:port" lines, sorted by name.
func endpoints(s *datastore.Store) []string {
	out := []string{}
	for _, e := range s.Snapshot() {
		out = append(out, e.Name+"="+e.HostPort)
	}
	return out
}

// waitEndpoints waits until the store holds exactly want, and returns how
// long that took.
func waitEndpoints(t *testing.T, s *datastore.Store, want ...string) time.Duration {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	start := time.Now()
	for {
		got := endpoints(s)
		if cmp.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > waitFor {
			t.Fatalf("endpoints after %s (-want +got):\n%s", waitFor, cmp.Diff(want, got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var model = map[string]string{"app": "model"}

// TestPodMembership follows Pods in and out of the pool: Ready with an IP
// and matching labels is in; not Ready, relabelled, being deleted or
// deleted is out.
func TestPodMembership(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, 8000)
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"pool"}})
	eventually(t, "store ready", s.store.Ready)
	waitEndpoints(t, s.store)

	a := env.RunningPod(t, ns, "a", "127.0.0.2", map[string]string{"app": "model", "rev": "1"})
	waitEndpoints(t, s.store, "a-rank-0=127.0.0.2:8000")
	if ep, _ := s.store.Get("a-rank-0"); !maps.Equal(ep.Labels, a.Labels) || ep.Pod != "a" || ep.Namespace != ns || ep.Pool != "pool" {
		t.Errorf("endpoint = %+v, want pod a's labels, name and namespace, and pool \"pool\"", ep.Spec)
	}
	b := env.Pod(t, ns, "b", model, nil)
	env.SetPodStatus(t, b, "127.0.0.3", false)
	time.Sleep(200 * time.Millisecond) // a wrong add would show by now
	waitEndpoints(t, s.store, "a-rank-0=127.0.0.2:8000")
	env.SetPodStatus(t, b, "127.0.0.3", true)
	d := waitEndpoints(t, s.store, "a-rank-0=127.0.0.2:8000", "b-rank-0=127.0.0.3:8000")
	t.Logf("pod Ready -> endpoint in the datastore: %s", d)

	env.SetPodStatus(t, a, "127.0.0.2", false)
	waitEndpoints(t, s.store, "b-rank-0=127.0.0.3:8000")
	env.Update(t, b, func() { b.Labels = map[string]string{"app": "other"} })
	waitEndpoints(t, s.store)
	env.Update(t, b, func() { b.Labels = model })
	waitEndpoints(t, s.store, "b-rank-0=127.0.0.3:8000")

	// A finalizer keeps the Pod while its deletion timestamp is set.
	env.Update(t, b, func() { b.Finalizers = []string{"test.openepp.dev/hold"} })
	env.Delete(t, b)
	waitEndpoints(t, s.store)
	env.Update(t, b, func() { b.Finalizers = nil })

	c := env.RunningPod(t, ns, "c", "127.0.0.4", model)
	waitEndpoints(t, s.store, "c-rank-0=127.0.0.4:8000")
	env.Delete(t, c)
	waitEndpoints(t, s.store)
	if !s.store.Ready() {
		t.Error("an empty pool must stay ready")
	}
}

// TestPoolSpecChanges checks that a selector or target-port change
// resyncs every Pod, and that the active-ports annotations pick ranks.
func TestPoolSpecChanges(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	pool := env.Pool(t, ns, "pool", model, 8000)
	env.RunningPod(t, ns, "m", "127.0.0.2", model)
	env.RunningPod(t, ns, "o", "127.0.0.3", map[string]string{"app": "other"})
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"pool"}})
	waitEndpoints(t, s.store, "m-rank-0=127.0.0.2:8000")

	env.Update(t, pool, func() { pool.Spec.Selector.MatchLabels = map[infv1.LabelKey]infv1.LabelValue{"app": "other"} })
	waitEndpoints(t, s.store, "o-rank-0=127.0.0.3:8000")
	env.Update(t, pool, func() {
		pool.Spec.TargetPorts = []infv1.Port{{Number: 8000}, {Number: 8001}, {Number: 8002}}
	})
	waitEndpoints(t, s.store, "o-rank-0=127.0.0.3:8000", "o-rank-1=127.0.0.3:8001", "o-rank-2=127.0.0.3:8002")

	o := &corev1.Pod{}
	o.Namespace, o.Name = ns, "o"
	tests := []struct {
		name string
		ann  map[string]string
		want []string
	}{
		{name: "gie annotation", ann: map[string]string{controller.GIEActivePortsAnnotation: "8002, 8000"},
			want: []string{"o-rank-0=127.0.0.3:8000", "o-rank-2=127.0.0.3:8002"}},
		{name: "llm-d annotation wins", ann: map[string]string{controller.GIEActivePortsAnnotation: "8000", controller.ActivePortsAnnotation: "8001"},
			want: []string{"o-rank-1=127.0.0.3:8001"}},
		{name: "unknown port ignored", ann: map[string]string{controller.ActivePortsAnnotation: "9999,8000"},
			want: []string{"o-rank-0=127.0.0.3:8000"}},
		{name: "malformed annotation ignored", ann: map[string]string{controller.ActivePortsAnnotation: "eight"},
			want: []string{"o-rank-0=127.0.0.3:8000", "o-rank-1=127.0.0.3:8001", "o-rank-2=127.0.0.3:8002"}},
		{name: "annotation removed", ann: nil,
			want: []string{"o-rank-0=127.0.0.3:8000", "o-rank-1=127.0.0.3:8001", "o-rank-2=127.0.0.3:8002"}},
	}
	for _, tc := range tests { // sequential: each step changes the same Pod
		env.Update(t, o, func() { o.Annotations = tc.ann })
		waitEndpoints(t, s.store, tc.want...)
	}
	env.Update(t, pool, func() { pool.Spec.TargetPorts = []infv1.Port{{Number: 8001}} })
	waitEndpoints(t, s.store, "o-rank-0=127.0.0.3:8001")
}

// TestPoolDeletion checks that a deleted pool empties the source and makes
// the store not ready, and that a new pool of the same name brings it back.
func TestPoolDeletion(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"pool"}})
	env.RunningPod(t, ns, "m", "127.0.0.2", model)
	time.Sleep(200 * time.Millisecond)
	if s.store.Ready() {
		t.Fatal("ready without a pool")
	}
	pool := env.Pool(t, ns, "pool", model, 8000)
	env.Pool(t, ns, "another-pool", map[string]string{"app": "nothing"}, 9000) // not ours: ignored
	waitEndpoints(t, s.store, "m-rank-0=127.0.0.2:8000")
	eventually(t, "ready", s.store.Ready)

	env.Delete(t, pool)
	eventually(t, "not ready", func() bool { return !s.store.Ready() })
	waitEndpoints(t, s.store)
	env.Pool(t, ns, "pool", model, 8000)
	waitEndpoints(t, s.store, "m-rank-0=127.0.0.2:8000")
	eventually(t, "ready again", s.store.Ready)
}

// TestSelectorMode runs without an InferencePool: Pods matching a full
// label selector on the given ports.
func TestSelectorMode(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	sel, err := labels.Parse("app in (model, model-b), tier!=canary")
	if err != nil {
		t.Fatal(err)
	}
	env.RunningPod(t, ns, "a", "127.0.0.2", model)
	env.RunningPod(t, ns, "canary", "127.0.0.3", map[string]string{"app": "model", "tier": "canary"})
	s := startSource(t, controller.Options{Namespace: ns, Selector: sel, TargetPorts: []int{8000, 8001}})
	waitEndpoints(t, s.store, "a-rank-0=127.0.0.2:8000", "a-rank-1=127.0.0.2:8001")
	eventually(t, "ready", s.store.Ready)
	if ep, _ := s.store.Get("a-rank-0"); ep.Pool != "" {
		t.Errorf("endpoint pool = %q, want none in selector mode", ep.Pool)
	}
	if s.lookups.Of("") == nil || s.lookups.Of("pool") != nil {
		t.Errorf("lookups of \"\" and \"pool\" = %p, %p; want only the one under \"\"", s.lookups.Of(""), s.lookups.Of("pool"))
	}
	b := env.RunningPod(t, ns, "b", "127.0.0.4", map[string]string{"app": "model-b"})
	waitEndpoints(t, s.store, "a-rank-0=127.0.0.2:8000", "a-rank-1=127.0.0.2:8001", "b-rank-0=127.0.0.4:8000", "b-rank-1=127.0.0.4:8001")
	env.Update(t, b, func() { b.Labels["tier"] = "canary" })
	waitEndpoints(t, s.store, "a-rank-0=127.0.0.2:8000", "a-rank-1=127.0.0.2:8001")
}

// TestManyPods checks a resync and steady state with more Pods than a
// unit test would use.
func TestManyPods(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, 8000)
	var want []string
	for i := range 30 {
		name := fmt.Sprintf("p%02d", i)
		ip := fmt.Sprintf("127.0.1.%d", i+1)
		env.RunningPod(t, ns, name, ip, model)
		want = append(want, name+"-rank-0="+ip+":8000")
	}
	slices.Sort(want)
	s := startSource(t, controller.Options{Namespace: ns, PoolNames: []string{"pool"}})
	waitEndpoints(t, s.store, want...)
}

// TestSetupErrors checks that bad options are refused with every problem
// named.
func TestSetupErrors(t *testing.T) {
	t.Parallel()
	sel := labels.SelectorFromSet(model)
	const oneMode = "exactly one of pool names, picker service and endpoint selector is required"
	tests := []struct {
		name string
		opts controller.Options
		want string
	}{
		{name: "no mode", opts: controller.Options{Namespace: "x", Store: datastore.New()},
			want: "kubernetes source: " + oneMode},
		{name: "pool names and selector", opts: controller.Options{Namespace: "x", PoolNames: []string{"p"}, Selector: sel, TargetPorts: []int{1}, Store: datastore.New()},
			want: "kubernetes source: " + oneMode},
		{name: "pool names and picker service", opts: controller.Options{Namespace: "x", PoolNames: []string{"p"}, PickerService: "epp", Store: datastore.New()},
			want: "kubernetes source: " + oneMode},
		{name: "picker service and selector", opts: controller.Options{Namespace: "x", PickerService: "epp", Selector: sel, TargetPorts: []int{1}, Store: datastore.New()},
			want: "kubernetes source: " + oneMode},
		{name: "all three", opts: controller.Options{Namespace: "x", PoolNames: []string{"p"}, PickerService: "epp", Selector: sel, Store: datastore.New()},
			want: "kubernetes source: " + oneMode},
		{name: "picker service with a bad group", opts: controller.Options{Namespace: "x", PickerService: "epp", PoolGroup: "example.com", Store: datastore.New()},
			want: "kubernetes source: pool group \"example.com\" is not supported (only inference.networking.k8s.io/v1)"},
		{name: "bad pool names", opts: controller.Options{Namespace: "x", PoolNames: []string{"p", "", "q", "p"}, Store: datastore.New()},
			want: "kubernetes source: pool names[1]: must not be empty\npool names[3]: \"p\" is listed twice"},
		{name: "selector without ports", opts: controller.Options{Namespace: "x", Selector: sel, Store: datastore.New()},
			want: "kubernetes source: endpoint target ports: need 1 to 8 target ports, got 0"},
		{name: "everything wrong", opts: controller.Options{PoolNames: []string{"p"}, PoolGroup: "example.com"},
			want: "kubernetes source: namespace is required\npool group \"example.com\" is not supported (only inference.networking.k8s.io/v1)\nstore is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := controller.Setup(nil, tc.opts)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}
