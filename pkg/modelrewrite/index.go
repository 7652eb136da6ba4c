// Package modelrewrite applies InferenceModelRewrite rules: the model a
// request is sent as, drawn by weight among a rule's targets (canaries,
// A/B tests, renames). The rules come from the API server (package
// controller keeps the objects and compiles them here) or, without
// Kubernetes, from a file of the same manifests (File, --model-rewrites-file).
package modelrewrite

import (
	"math/rand/v2"
	"slices"
	"strings"

	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
)

// Index is a compiled, immutable set of rules. Its zero value matches
// nothing; a nil *Index is usable and matches nothing too.
//
// Precedence (the InferenceModelRewrite API's): a rule that names the model
// exactly beats a catch-all rule (one without matches). Among rules of the
// same kind the older object wins (the order Compile is given), then the
// first rule in its list. Objects come in groups (llm-d's API group, then
// GIE's): an earlier group's rule wins over a later group's of the same
// kind, and an exact rule of any group still beats every catch-all.
type Index struct {
	exact    []map[string]*rule // per group
	catchAll []*rule            // per group; nil entries for none
}

// rule is one compiled rule: the object it came from and its targets.
type rule struct {
	object  string
	targets []v1alpha2.TargetModel
	total   int64
}

// Compile indexes the rules of groups of objects, each group ordered
// oldest first.
func Compile(groups ...[]*v1alpha2.InferenceModelRewrite) *Index {
	ix := &Index{exact: make([]map[string]*rule, len(groups)), catchAll: make([]*rule, len(groups))}
	for g, objs := range groups {
		ix.exact[g], ix.catchAll[g] = compile(objs)
	}
	return ix
}

// compile keeps, per exact model and for the catch-all, the first rule of
// objs (oldest first) that claims it.
func compile(objs []*v1alpha2.InferenceModelRewrite) (map[string]*rule, *rule) {
	exact := map[string]*rule{}
	var catchAll *rule
	for _, o := range objs {
		for _, r := range o.Spec.Rules {
			if len(r.Targets) == 0 {
				continue
			}
			cr := &rule{object: o.Name, targets: r.Targets}
			for _, t := range r.Targets {
				cr.total += int64(max(t.Weight, 0))
			}
			if len(r.Matches) == 0 && catchAll == nil {
				catchAll = cr
			}
			for _, m := range r.Matches {
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

// Rewrite returns the model a request for model should be sent as, and the
// name of the object whose rule decided it; ok is false when no rule
// applies. Targets are drawn by weight from rnd (all weights 0: each
// equally likely); a nil rnd uses math/rand/v2's global source.
func (ix *Index) Rewrite(model string, rnd *rand.Rand) (target, object string, ok bool) {
	if ix == nil {
		return "", "", false
	}
	var hit *rule
	for _, exact := range ix.exact {
		if hit = exact[model]; hit != nil {
			break
		}
	}
	for _, c := range ix.catchAll {
		if hit != nil {
			break
		}
		hit = c
	}
	if hit == nil {
		return "", "", false
	}
	return hit.pick(rnd), hit.object, true
}

// Claims reports whether an exact rule (not a catch-all) names model: an
// EPP serving several pools sends such a request to the rule's pool
// whatever its servers list. A catch-all claims nothing, or it would claim
// every model.
func (ix *Index) Claims(model string) bool {
	if ix == nil {
		return false
	}
	for _, exact := range ix.exact {
		if exact[model] != nil {
			return true
		}
	}
	return false
}

// Rule is one rule as it applies (the /debug/policies page): the object it
// comes from, the model it matches ("" for a catch-all) and its targets.
type Rule struct {
	Object  string       `json:"object"`
	Model   string       `json:"model,omitempty"`
	Targets []RuleTarget `json:"targets"`
}

// RuleTarget is a target and its weight (0: all weights unset, equal
// shares).
type RuleTarget struct {
	Model  string `json:"model"`
	Weight int32  `json:"weight,omitempty"`
}

// Rules lists the rules that apply, in precedence order: each model's
// exact rule (by model name), then the catch-all that applies to every
// other model.
func (ix *Index) Rules() []Rule {
	if ix == nil {
		return nil
	}
	seen := map[string]bool{}
	var exact []Rule
	for _, byModel := range ix.exact {
		for model, r := range byModel {
			if !seen[model] {
				seen[model] = true
				exact = append(exact, r.view(model))
			}
		}
	}
	slices.SortFunc(exact, func(a, b Rule) int { return strings.Compare(a.Model, b.Model) })
	for _, c := range ix.catchAll {
		if c != nil {
			return append(exact, c.view(""))
		}
	}
	return exact
}

func (r *rule) view(model string) Rule {
	v := Rule{Object: r.object, Model: model}
	for _, t := range r.targets {
		v.Targets = append(v.Targets, RuleTarget{Model: t.ModelRewrite, Weight: t.Weight})
	}
	return v
}

func (r *rule) pick(rnd *rand.Rand) string {
	intN, int64N := rand.IntN, rand.Int64N
	if rnd != nil {
		intN, int64N = rnd.IntN, rnd.Int64N
	}
	if r.total <= 0 {
		return r.targets[intN(len(r.targets))].ModelRewrite
	}
	x := int64N(r.total)
	for _, t := range r.targets {
		if x -= int64(max(t.Weight, 0)); x < 0 {
			return t.ModelRewrite
		}
	}
	return r.targets[len(r.targets)-1].ModelRewrite
}
