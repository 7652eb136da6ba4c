package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/openepp/openepp/pkg/endpoint"
)

// pools is the state the pool and Pod reconcilers share: the members of
// every pool served (in selector mode one, for pool ""). mu serialises
// every cache read + store write, so that a full resync and a single-Pod
// update are applied in the order they read the cache; it also guards list
// and byName, which change at run time with a picker service. One lock
// covers every pool: a single Pod and a single pool controller apply all
// changes anyway.
type pools struct {
	mu     sync.Mutex
	list   []*members
	byName map[string]*members
	// picker is the Service a pool's endpointPickerRef must name for the
	// pool to be served (Options.PickerService); empty when the pools are
	// fixed by newPools.
	picker    string
	onServed  func([]string) // Options.OnServed; may be nil
	namespace string
	reader    client.Reader
	store     Store
	log       logr.Logger
}

// members is one pool's endpoints: the spec they follow, the names and
// datastore source they are reported under.
type members struct {
	spec      *poolSpec // nil: no pool (not synced); guarded by pools.mu
	naming    naming
	source    string
	namespace string
	reader    client.Reader
	store     Store
	log       logr.Logger
}

// resyncLocked recomputes every endpoint under spec from the Pod cache and
// makes it the complete set of the source (which also marks it synced);
// spec becomes current only once that succeeded.
func (m *members) resyncLocked(ctx context.Context, spec *poolSpec) error {
	var pods corev1.PodList
	opts := []client.ListOption{client.InNamespace(m.namespace), client.MatchingLabelsSelector{Selector: spec.selector}}
	if err := m.reader.List(ctx, &pods, opts...); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	var specs []endpoint.Spec
	for i := range pods.Items {
		eps, err := podEndpoints(&pods.Items[i], spec, m.naming)
		m.logAnnotationErr(&pods.Items[i], err)
		for _, e := range eps {
			if e != nil {
				specs = append(specs, *e)
			}
		}
	}
	m.store.Replace(m.source, specs)
	m.spec = spec
	m.log.Info("endpoints resynced", "endpoints", len(specs), "pods", len(pods.Items))
	return nil
}

// applyPodLocked brings one Pod's ranks up to date; pod nil means it is gone.
func (m *members) applyPodLocked(name string, pod *corev1.Pod) {
	eps := make([]*endpoint.Spec, len(m.spec.ports))
	if pod != nil {
		var err error
		eps, err = podEndpoints(pod, m.spec, m.naming)
		m.logAnnotationErr(pod, err)
	}
	for i, e := range eps {
		if e == nil {
			m.store.Delete(m.naming.rank(name, i))
			continue
		}
		m.store.Upsert(m.source, *e)
	}
	kv := []any{"pod", name, "endpoints", countSet(eps)}
	if pod != nil && pod.Spec.NodeName != "" {
		kv = append(kv, "node", pod.Spec.NodeName)
	}
	m.log.V(1).Info("pod reconciled", kv...)
}

func (m *members) logAnnotationErr(pod *corev1.Pod, err error) {
	if err != nil {
		m.log.Error(err, "bad active-ports annotation", "pod", pod.Name)
	}
}

func countSet(eps []*endpoint.Spec) int {
	n := 0
	for _, e := range eps {
		if e != nil {
			n++
		}
	}
	return n
}

// podReconciler applies single-Pod changes to every pool that is known:
// a Pod may join or leave several pools at once (a relabel), so each pool
// re-evaluates it, and one that does not select it drops its ranks, if any.
type podReconciler struct {
	pools     *pools
	namespace string
	reader    client.Reader
}

func (r *podReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.Namespace != r.namespace {
		return reconcile.Result{}, nil
	}
	r.pools.mu.Lock()
	defer r.pools.mu.Unlock()
	known := slices.DeleteFunc(slices.Clone(r.pools.list), func(m *members) bool { return m.spec == nil })
	if len(known) == 0 {
		return reconcile.Result{}, nil // the pools' resyncs will see this Pod
	}
	var pod corev1.Pod
	found := &pod
	err := r.reader.Get(ctx, req.NamespacedName, &pod)
	switch {
	case apierrors.IsNotFound(err):
		found = nil
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("get pod %q: %w", req.Name, err)
	}
	for _, m := range known {
		m.applyPodLocked(req.Name, found)
	}
	return reconcile.Result{}, nil
}

// podChanged lets through only updates that can change a Pod's endpoints,
// sparing reconciles for container-status churn. The node name counts: a
// Pod is bound to its node after creation (pods/binding).
var podChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	oldPod, ok1 := e.ObjectOld.(*corev1.Pod)
	newPod, ok2 := e.ObjectNew.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	return oldPod.Status.PodIP != newPod.Status.PodIP ||
		oldPod.Spec.NodeName != newPod.Spec.NodeName ||
		!maps.Equal(oldPod.Labels, newPod.Labels) ||
		!maps.Equal(oldPod.Annotations, newPod.Annotations) ||
		(oldPod.DeletionTimestamp == nil) != (newPod.DeletionTimestamp == nil) ||
		podReady(oldPod) != podReady(newPod)
}}

func podReady(p *corev1.Pod) bool {
	i := slices.IndexFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady })
	return i >= 0 && p.Status.Conditions[i].Status == corev1.ConditionTrue
}
