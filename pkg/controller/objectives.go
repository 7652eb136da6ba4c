package controller

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
)

// group is the API group an objective or rewrite came from; a lower value
// wins when both groups answer (llm-d's group supersedes GIE's).
type group int

const (
	groupLLMD group = iota
	groupGIE
	numGroups
)

func (g group) String() string {
	if g == groupLLMD {
		return LLMDGroupVersion.Group
	}
	return v1alpha2.GroupName
}

// Objectives maps one pool's InferenceObjective names to priorities for
// the request path (server.Objectives). It is safe for concurrent use; the
// zero value is not, use NewObjectives.
type Objectives struct {
	mu      sync.RWMutex
	byGroup [numGroups]map[string]int
}

// NewObjectives returns an empty table.
func NewObjectives() *Objectives {
	o := &Objectives{}
	for g := range o.byGroup {
		o.byGroup[g] = map[string]int{}
	}
	return o
}

// Priority returns the priority of the objective called name (an unset
// priority is 0; negative means sheddable). ok is false when no objective
// of this pool has that name.
func (o *Objectives) Priority(name string) (priority int, ok bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, m := range o.byGroup {
		if p, ok := m[name]; ok {
			return p, true
		}
	}
	return 0, false
}

// Priorities lists every objective's priority by name (llm-d's group
// first on a clash, as Priority reads them).
func (o *Objectives) Priorities() map[string]int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := map[string]int{}
	for g := len(o.byGroup) - 1; g >= 0; g-- { // earlier groups overwrite
		for name, p := range o.byGroup[g] {
			out[name] = p
		}
	}
	return out
}

func (o *Objectives) set(g group, name string, obj *v1alpha2.InferenceObjective) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if obj == nil {
		delete(o.byGroup[g], name)
		return
	}
	p := 0
	if obj.Spec.Priority != nil {
		p = *obj.Spec.Priority
	}
	o.byGroup[g][name] = p
}

// poolRef is a pool this EPP serves, as objectives and rewrites name it.
type poolRef struct{ name, group string }

// matches applies the CRD defaults: group inference.networking.k8s.io,
// kind InferencePool.
func (p poolRef) matches(ref v1alpha2.PoolObjectReference) bool {
	g, k := string(ref.Group), string(ref.Kind)
	if g == "" {
		g = DefaultPoolGroup
	}
	if k == "" {
		k = "InferencePool"
	}
	return string(ref.Name) == p.name && g == p.group && k == "InferencePool"
}

// crdReconciler feeds one kind of one group into a lookup table: apply
// gets the object, or nil when it is gone or being deleted.
type crdReconciler[T client.Object] struct {
	reader client.Reader
	newObj func() T
	apply  func(name string, obj T, present bool)
}

func (r *crdReconciler[T]) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	obj := r.newObj()
	err := r.reader.Get(ctx, req.NamespacedName, obj)
	switch {
	case apierrors.IsNotFound(err):
		r.apply(req.Name, obj, false)
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("get %q: %w", req.Name, err)
	default:
		r.apply(req.Name, obj, obj.GetDeletionTimestamp() == nil)
	}
	return reconcile.Result{}, nil
}
