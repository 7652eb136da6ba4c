package controller

import (
	"maps"
	"slices"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
)

// Lookups are what the request path reads from the cluster for one pool.
// Both are always usable; without the CRDs they simply never match.
type Lookups struct {
	Objectives *Objectives
	Rewrites   *Rewrites
}

func newLookups() *Lookups { return &Lookups{Objectives: NewObjectives(), Rewrites: NewRewrites()} }

// PoolLookups are the Lookups of every pool, by pool name. It routes
// InferenceObjectives and InferenceModelRewrites to the pool their poolRef
// names, so that one watch per kind serves every pool. It is safe for
// concurrent use.
type PoolLookups struct {
	group string
	// open is PickerService mode: any pool may come to be served, so a
	// pool's Lookups are created on first use rather than up front.
	open   bool
	mu     sync.RWMutex
	byPool map[string]*Lookups
}

// newPoolLookups gives each pool named in o its Lookups (in selector mode
// one, under "", that no poolRef matches); with a picker service none yet.
func newPoolLookups(o Options) *PoolLookups {
	p := &PoolLookups{group: o.PoolGroup, open: o.PickerService != "", byPool: map[string]*Lookups{}}
	names := o.PoolNames
	if !o.followsPools() {
		names = []string{""}
	}
	for _, name := range names {
		p.byPool[name] = newLookups()
	}
	return p
}

// Of returns the Lookups of pool. With pools fixed up front (PoolNames,
// or the selector's stand-in "") it is nil for a pool not served. With a
// picker service it is never nil: a pool's Lookups are created by the
// first call here or by the first objective or rewrite naming the pool,
// whichever comes first, so policies recorded before their pool exists
// apply as soon as it is served.
func (p *PoolLookups) Of(pool string) *Lookups {
	p.mu.RLock()
	l := p.byPool[pool]
	p.mu.RUnlock()
	if l != nil || !p.open {
		return l
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ofLocked(pool)
}

func (p *PoolLookups) ofLocked(pool string) *Lookups {
	l := p.byPool[pool]
	if l == nil && p.open {
		l = newLookups()
		p.byPool[pool] = l
	}
	return l
}

// each calls set once per pool with whether that pool owns the object
// whose poolRef is ref (nil: none): the owner records it, every other
// forgets it, which is also how an object whose poolRef moved leaves its
// old pool. The owner is a pool served (or, with a picker service, one
// that may be) and named in the right group.
func (p *PoolLookups) each(ref *v1alpha2.PoolObjectReference, set func(l *Lookups, owned bool)) {
	p.mu.Lock()
	var owner *Lookups
	if ref != nil && ref.Name != "" && (poolRef{name: string(ref.Name), group: p.group}).matches(*ref) {
		owner = p.ofLocked(string(ref.Name))
	}
	all := slices.Collect(maps.Values(p.byPool))
	p.mu.Unlock()
	// Outside the lock: Of must not wait for a rewrite to recompile. A pool
	// whose Lookups appear meanwhile is empty and owns nothing.
	for _, l := range all {
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
func setupPolicies(mgr manager.Manager, pools *PoolLookups, log logr.Logger) error {
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
func objectiveApplier[T client.Object](pools *PoolLookups, g group, view func(T) *v1alpha2.InferenceObjective) func(string, T, bool) {
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
func rewriteApplier[T client.Object](pools *PoolLookups, g group, view func(T) *v1alpha2.InferenceModelRewrite) func(string, T, bool) {
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
