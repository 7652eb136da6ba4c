package epp

import "github.com/openepp/openepp/pkg/modelrewrite"

// policiesState is the body of /debug/policies: where the policies come
// from and, per pool, the objectives' priorities and the model rewrites a
// request of that pool gets — what to read when a request got an
// unexpected priority or model.
type policiesState struct {
	// Source is "kubernetes" (InferenceObjectives and
	// InferenceModelRewrites of the API server), "files" (--objectives-file,
	// --model-rewrites-file) or "none".
	Source string         `json:"source"`
	Pools  []poolPolicies `json:"pools"`
	// Files are the policy files and how many of their reloads were
	// rejected (an edit that did not take: the log says why).
	Files []policyFile `json:"files,omitempty"`
}

// policyFile is one policy file on /debug/policies.
type policyFile struct {
	Flag            string `json:"flag"`
	Path            string `json:"path"`
	RejectedReloads int64  `json:"rejectedReloads"`
}

// poolPolicies is one pool's policies; Pool is "" for an EPP that does not
// split requests by pool.
type poolPolicies struct {
	Pool       string              `json:"pool"`
	Objectives map[string]int      `json:"objectives"`
	Rewrites   []modelrewrite.Rule `json:"rewrites"`
}

func (a *app) policiesState() policiesState {
	out := policiesState{Source: "none", Pools: []poolPolicies{}}
	switch f := a.flags; {
	case a.kube != nil && (f.Kube.PoolName != "" || f.Kube.PickerService != ""):
		out.Source = "kubernetes"
	case f.ObjectivesFile != "" || f.ModelRewritesFile != "":
		out.Source = "files"
	}
	pools := []string{""}
	switch {
	case a.severalPools():
		pools = a.router.Pools(a.store.Snapshot())
	case len(a.pools) == 1:
		pools = a.pools
	}
	for _, pool := range pools {
		pp := poolPolicies{Pool: pool, Objectives: map[string]int{}, Rewrites: []modelrewrite.Rule{}}
		objs, rewrites := a.srv.PoliciesOf(pool)
		if o, ok := objs.(interface{ Priorities() map[string]int }); ok {
			for name, p := range o.Priorities() {
				pp.Objectives[name] = p
			}
		}
		if r, ok := rewrites.(interface{ Rules() []modelrewrite.Rule }); ok && r.Rules() != nil {
			pp.Rewrites = r.Rules()
		}
		out.Pools = append(out.Pools, pp)
	}
	for _, f := range a.policyFiles {
		out.Files = append(out.Files, policyFile{Flag: f.flag, Path: f.path, RejectedReloads: f.rejections()})
	}
	return out
}
