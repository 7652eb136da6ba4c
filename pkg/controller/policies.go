package controller

import (
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
)

// servedPools routes InferenceObjectives and InferenceModelRewrites to the
// Lookups of the pool their poolRef names, so that one watch per kind
// serves every pool.
type servedPools struct {
	group   string
	lookups map[string]*Lookups // by pool name
}

// owner returns the Lookups of the pool ref names; nil when ref is nil or
// names no pool this EPP serves.
func (s servedPools) owner(ref *v1alpha2.PoolObjectReference) *Lookups {
	if ref == nil {
		return nil
	}
	l := s.lookups[string(ref.Name)]
	if l == nil || !(poolRef{name: string(ref.Name), group: s.group}).matches(*ref) {
		return nil
	}
	return l
}

// each calls set once per served pool with whether that pool owns the
// object: the owner records it, every other forgets it, which is also how
// an object whose poolRef moved leaves its old pool.
func (s servedPools) each(ref *v1alpha2.PoolObjectReference, set func(l *Lookups, owned bool)) {
	owner := s.owner(ref)
	for _, l := range s.lookups {
		set(l, l == owner)
	}
}

// policyKind is one optional watch: a kind in one group.
type policyKind struct {
	gvk  schema.GroupVersionKind
	name string
	add  func(mgr manager.Manager, name string) error
}

// setupPolicies starts the InferenceObjective and InferenceModelRewrite
// watches of each group whose CRD is installed: one controller per kind and
// group, feeding every pool's Lookups.
func setupPolicies(mgr manager.Manager, pools servedPools, log logr.Logger) error {
	llmd, gie := LLMDGroupVersion, v1alpha2.SchemeGroupVersion
	kinds := []policyKind{
		{llmd.WithKind("InferenceObjective"), "objective-llmd", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, objectiveApplier(pools, groupLLMD, func(o *LLMDObjective) *v1alpha2.InferenceObjective { return (*v1alpha2.InferenceObjective)(o) }))
		}},
		{gie.WithKind("InferenceObjective"), "objective-gie", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, objectiveApplier(pools, groupGIE, func(o *v1alpha2.InferenceObjective) *v1alpha2.InferenceObjective { return o }))
		}},
		{llmd.WithKind("InferenceModelRewrite"), "rewrite-llmd", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, rewriteApplier(pools, groupLLMD, func(o *LLMDModelRewrite) *v1alpha2.InferenceModelRewrite { return (*v1alpha2.InferenceModelRewrite)(o) }))
		}},
		{gie.WithKind("InferenceModelRewrite"), "rewrite-gie", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, rewriteApplier(pools, groupGIE, func(o *v1alpha2.InferenceModelRewrite) *v1alpha2.InferenceModelRewrite { return o }))
		}},
	}
	for _, k := range kinds {
		ok, err := installed(mgr.GetRESTMapper(), k.gvk)
		if err != nil {
			return err
		}
		if !ok {
			log.Info("watch disabled: CRD not installed", "kind", k.gvk.Kind, "group", k.gvk.Group)
			continue
		}
		log.Info("watching", "kind", k.gvk.Kind, "group", k.gvk.Group)
		if err := k.add(mgr, k.name); err != nil {
			return err
		}
	}
	return nil
}

// watchPolicy registers the controller feeding apply with objects of T.
func watchPolicy[T any, PT interface {
	*T
	client.Object
}](mgr manager.Manager, name string, apply func(string, PT, bool)) error {
	r := &crdReconciler[PT]{reader: mgr.GetClient(), newObj: func() PT { return PT(new(T)) }, apply: apply}
	return watch(mgr, name, PT(new(T)), r)
}

// objectiveApplier records an objective in the Lookups of the pool it
// names, when it is present, and forgets it in every other pool.
func objectiveApplier[T client.Object](pools servedPools, g group, view func(T) *v1alpha2.InferenceObjective) func(string, T, bool) {
	return func(name string, obj T, present bool) {
		var io *v1alpha2.InferenceObjective
		var ref *v1alpha2.PoolObjectReference
		if present {
			io = view(obj)
			ref = &io.Spec.PoolRef
		}
		pools.each(ref, func(l *Lookups, owned bool) {
			if owned {
				l.Objectives.set(g, name, io)
			} else {
				l.Objectives.set(g, name, nil)
			}
		})
	}
}

// rewriteApplier records a rewrite in the Lookups of the pool it names,
// when it is present, and forgets it in every other pool; a rewrite without
// a poolRef belongs to none.
func rewriteApplier[T client.Object](pools servedPools, g group, view func(T) *v1alpha2.InferenceModelRewrite) func(string, T, bool) {
	return func(name string, obj T, present bool) {
		var rw *v1alpha2.InferenceModelRewrite
		var ref *v1alpha2.PoolObjectReference
		if present {
			rw = view(obj)
			ref = rw.Spec.PoolRef
		}
		pools.each(ref, func(l *Lookups, owned bool) {
			if owned {
				l.Rewrites.set(g, name, rw)
			} else {
				l.Rewrites.set(g, name, nil)
			}
		})
	}
}
