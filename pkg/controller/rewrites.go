package controller

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/modelrewrite"
)

// Rewrites holds one pool's InferenceModelRewrite objects and their
// compiled rules for the request path (server.Rewrites). Lookups are
// lock-free: every change recompiles an immutable index
// (modelrewrite.Index, which states the precedence: exact before
// catch-all, then the oldest object by creationTimestamp and
// namespace/name, llm-d's group before GIE's). The zero value is not
// usable; call NewRewrites.
type Rewrites struct {
	mu      sync.Mutex
	objects [numGroups]map[string]*v1alpha2.InferenceModelRewrite
	index   atomic.Pointer[modelrewrite.Index]
}

// NewRewrites returns an empty rule set.
func NewRewrites() *Rewrites {
	r := &Rewrites{}
	for g := range r.objects {
		r.objects[g] = map[string]*v1alpha2.InferenceModelRewrite{}
	}
	r.index.Store(modelrewrite.Compile())
	return r
}

// Rewrite returns the model a request for model should be sent as, and the
// name of the InferenceModelRewrite that decided it (modelrewrite.Index).
func (r *Rewrites) Rewrite(model string, rnd *rand.Rand) (target, rule string, ok bool) {
	return r.index.Load().Rewrite(model, rnd)
}

// Claims reports whether an exact rule names model (modelrewrite.Index).
func (r *Rewrites) Claims(model string) bool { return r.index.Load().Claims(model) }

// Rules lists the rules that apply (modelrewrite.Index.Rules).
func (r *Rewrites) Rules() []modelrewrite.Rule { return r.index.Load().Rules() }

func (r *Rewrites) set(g group, name string, obj *v1alpha2.InferenceModelRewrite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if obj == nil {
		if _, ok := r.objects[g][name]; !ok {
			return // each event clears the object in every other pool: nothing to recompile
		}
		delete(r.objects[g], name)
	} else {
		r.objects[g][name] = obj.DeepCopy()
	}
	var groups [numGroups][]*v1alpha2.InferenceModelRewrite
	for g, objs := range r.objects {
		groups[g] = oldestFirst(objs)
	}
	r.index.Store(modelrewrite.Compile(groups[:]...))
}

// oldestFirst orders objects by creationTimestamp, then namespace/name.
func oldestFirst(objs map[string]*v1alpha2.InferenceModelRewrite) []*v1alpha2.InferenceModelRewrite {
	sorted := make([]*v1alpha2.InferenceModelRewrite, 0, len(objs))
	for _, o := range objs {
		sorted = append(sorted, o)
	}
	slices.SortFunc(sorted, func(a, b *v1alpha2.InferenceModelRewrite) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return sorted
}
