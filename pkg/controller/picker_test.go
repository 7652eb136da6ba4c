package controller_test

import (
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/openepp/openepp/pkg/controller"
	"github.com/openepp/openepp/test/kube"
)

// pickedPool creates a pool like env.Pool whose endpointPickerRef names
// ref instead of the Service "epp".
func pickedPool(t *testing.T, ns, name string, ref infv1.EndpointPickerRef, matchLabels map[string]string, port int) *infv1.InferencePool {
	t.Helper()
	p := &infv1.InferencePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	kube.SetPoolSpec(p, matchLabels, port)
	ref.Port = &infv1.Port{Number: 9002}
	p.Spec.EndpointPickerRef = ref
	env.Create(t, p)
	return p
}

// TestPickerService serves the pools whose endpointPickerRef names the
// Service "epp", found at run time: pools join when created or re-pointed
// to it, leave when deleted or re-pointed elsewhere, and objectives reach
// a pool whichever of the two comes first.
func TestPickerService(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	inA, inB := map[string]string{"a": "yes"}, map[string]string{"b": "yes"}
	a := env.Pool(t, ns, "a", inA, 8000) // names "epp"
	c := pickedPool(t, ns, "c", infv1.EndpointPickerRef{Name: "other-epp"}, inA, 7000)
	pickedPool(t, ns, "d", infv1.EndpointPickerRef{Name: "epp", Kind: "Gateway"}, inA, 6000) // not a Service
	env.RunningPod(t, ns, "pa", "127.0.0.2", inA)
	env.RunningPod(t, ns, "pb", "127.0.0.3", inB)
	env.Create(t, objective(ns, "chat", "b", ptr.To(7))) // before its pool
	var logs logSink
	s := startSource(t, controller.Options{Namespace: ns, PickerService: "epp", Log: funcr.New(logs.add, funcr.Options{})})
	waitEndpoints(t, s.store, "a/pa-rank-0=127.0.0.2:8000")
	eventually(t, "ready", s.store.Ready)
	if diff := cmp.Diff(map[string]string{"a/pa-rank-0": "a"}, endpointPools(s.store)); diff != "" {
		t.Errorf("endpoint pools (-want +got):\n%s", diff)
	}

	la := s.lookups.Of("a") // before its objective
	env.Create(t, objective(ns, "batch", "a", ptr.To(-1)))
	b := env.Pool(t, ns, "b", inB, 9000)
	waitEndpoints(t, s.store, "a/pa-rank-0=127.0.0.2:8000", "b/pb-rank-0=127.0.0.3:9000")
	names := []string{"chat", "batch"}
	waitPriorities(t, s.lookups.Of("b").Objectives, names, map[string]priority{"chat": {7, true}, "batch": {}})
	waitPriorities(t, la.Objectives, names, map[string]priority{"chat": {}, "batch": {-1, true}})
	if s.lookups.Of("a") != la || s.lookups.Of("not-yet") == nil {
		t.Error("Of must return the same Lookups for a pool, and never nil with a picker service")
	}

	env.Update(t, a, func() { a.Spec.EndpointPickerRef.Name = "other-epp" })
	waitEndpoints(t, s.store, "b/pb-rank-0=127.0.0.3:9000")
	env.Update(t, c, func() { c.Spec.EndpointPickerRef.Name = "epp" })
	waitEndpoints(t, s.store, "b/pb-rank-0=127.0.0.3:9000", "c/pa-rank-0=127.0.0.2:7000")
	env.Delete(t, b)
	waitEndpoints(t, s.store, "c/pa-rank-0=127.0.0.2:7000")
	if !s.store.Ready() {
		t.Error("not ready while pool c still serves")
	}
	env.Update(t, c, func() { c.Spec.EndpointPickerRef.Name = "other-epp" })
	waitEndpoints(t, s.store)
	eventually(t, "not ready without a pool naming the picker", func() bool { return !s.store.Ready() })

	const (
		picks   = `"reason"="endpointPickerRef names this picker" "service"="epp"`
		other   = `"reason"="endpointPickerRef names another picker"`
		deleted = `"reason"="pool deleted"`
	)
	want := []string{
		`"level"=0 "msg"="pool no longer served" "pool"="a" ` + other,
		`"level"=0 "msg"="pool no longer served" "pool"="b" ` + deleted,
		`"level"=0 "msg"="pool no longer served" "pool"="c" ` + other,
		`"level"=0 "msg"="pool served" "pool"="a" ` + picks,
		`"level"=0 "msg"="pool served" "pool"="b" ` + picks,
		`"level"=0 "msg"="pool served" "pool"="c" ` + picks,
	}
	if diff := cmp.Diff(want, logs.matching(" served")); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}
