package controller

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
)

// Rewrites holds one pool's InferenceModelRewrite rules for the request
// path (server.Rewrites). Lookups are lock-free: every change recompiles an
// immutable index. The zero value is not usable; call NewRewrites.
//
// Precedence (reference §2.4): a rule that names the model exactly beats a
// catch-all rule (one without matches). Among rules of the same kind the
// oldest object (creationTimestamp, then namespace/name) wins, then the
// first rule in its list. With both API groups installed, llm-d's rule wins
// over GIE's of the same kind, and an exact rule of either group still
// beats any catch-all.
type Rewrites struct {
	mu      sync.Mutex
	objects [numGroups]map[string]*v1alpha2.InferenceModelRewrite
	index   atomic.Pointer[rewriteIndex]
}

// rewriteRule is one compiled rule: where it came from and its targets.
type rewriteRule struct {
	object  string
	targets []v1alpha2.TargetModel
	total   int64
}

type rewriteIndex struct {
	exact    [numGroups]map[string]*rewriteRule
	catchAll [numGroups]*rewriteRule
}

// NewRewrites returns an empty rule set.
func NewRewrites() *Rewrites {
	r := &Rewrites{}
	for g := range r.objects {
		r.objects[g] = map[string]*v1alpha2.InferenceModelRewrite{}
	}
	r.index.Store(&rewriteIndex{})
	return r
}

// Rewrite returns the model a request for model should be sent as, and the
// name of the InferenceModelRewrite that decided it; ok is false when no
// rule applies. Targets are drawn by weight from rnd (all weights 0: each
// equally likely); a nil rnd uses math/rand/v2's global source.
func (r *Rewrites) Rewrite(model string, rnd *rand.Rand) (target, rule string, ok bool) {
	idx := r.index.Load()
	var hit *rewriteRule
	for g := range numGroups {
		if hit = idx.exact[g][model]; hit != nil {
			break
		}
	}
	for g := range numGroups {
		if hit != nil {
			break
		}
		hit = idx.catchAll[g]
	}
	if hit == nil {
		return "", "", false
	}
	return hit.pick(rnd), hit.object, true
}

// Claims reports whether an exact rule (not a catch-all) names model: an
// EPP serving several pools sends such a request to this pool whatever its
// servers list. A catch-all claims nothing, or it would claim every model.
func (r *Rewrites) Claims(model string) bool {
	idx := r.index.Load()
	for g := range numGroups {
		if idx.exact[g][model] != nil {
			return true
		}
	}
	return false
}

func (rr *rewriteRule) pick(rnd *rand.Rand) string {
	intN, int64N := rand.IntN, rand.Int64N
	if rnd != nil {
		intN, int64N = rnd.IntN, rnd.Int64N
	}
	if rr.total <= 0 {
		return rr.targets[intN(len(rr.targets))].ModelRewrite
	}
	x := int64N(rr.total)
	for _, t := range rr.targets {
		if x -= int64(max(t.Weight, 0)); x < 0 {
			return t.ModelRewrite
		}
	}
	return rr.targets[len(rr.targets)-1].ModelRewrite
}

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
	idx := &rewriteIndex{}
	for g, objs := range r.objects {
		idx.exact[g], idx.catchAll[g] = compileRewrites(objs)
	}
	r.index.Store(idx)
}

// compileRewrites orders the objects by age and keeps, per exact model and
// for the catch-all, the first rule that claims it.
func compileRewrites(objs map[string]*v1alpha2.InferenceModelRewrite) (map[string]*rewriteRule, *rewriteRule) {
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
	exact := map[string]*rewriteRule{}
	var catchAll *rewriteRule
	for _, o := range sorted {
		for _, rule := range o.Spec.Rules {
			if len(rule.Targets) == 0 {
				continue
			}
			cr := &rewriteRule{object: o.Name, targets: rule.Targets}
			for _, t := range rule.Targets {
				cr.total += int64(max(t.Weight, 0))
			}
			if len(rule.Matches) == 0 && catchAll == nil {
				catchAll = cr
			}
			for _, m := range rule.Matches {
				if m.Model == nil || m.Model.Type != nil && *m.Model.Type != v1alpha2.MatchExact {
					continue // only Exact exists; a future type must not match by accident
				}
				if _, taken := exact[m.Model.Value]; !taken {
					exact[m.Model.Value] = cr
				}
			}
		}
	}
	return exact, catchAll
}
