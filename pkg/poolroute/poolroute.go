// Package poolroute decides which InferencePool a request is for when one
// EPP serves several. Endpoints carry their pool (endpoint.Spec.Pool); a
// request is then scheduled among its pool's endpoints only, as if each
// pool had its own EPP. The clues, in order: a header naming the pool (set
// by the client or by a gateway filter that runs before the EPP), the
// proxy's subset hint (it lists one pool's endpoints), then the model the
// request names when exactly one pool serves it.
package poolroute

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/openepp/openepp/pkg/endpoint"
)

// DefaultHeader is the request header that names a request's pool.
const DefaultHeader = "x-openepp-pool"

// Why a request has no pool. Each message names the pools and the header,
// so that whoever reads the 4xx knows how to fix the request.
var (
	// ErrUnknownPool: the header names a pool the EPP does not serve.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrAmbiguous: several pools may serve the request and nothing tells
	// which.
	ErrAmbiguous = errors.New("request matches several pools")
	// ErrModelNotServed: every pool has reported its models and none
	// serves the request's.
	ErrModelNotServed = errors.New("no pool serves the model")
	// ErrMaybeEmptyPool: no endpoint serves the model, but a pool that has
	// no endpoints now (scaled to zero, starting) may be the one.
	ErrMaybeEmptyPool = errors.New("no ready endpoint serves the model")
)

// Router resolves requests' pools. It is safe for concurrent use.
type Router struct {
	header   string
	declared atomic.Pointer[[]string]
	last     atomic.Pointer[index]
}

// New returns a router. declared are the pools the EPP is configured to
// serve (known even while one has no endpoints); pools named by endpoints
// are added to them. header is the request header naming a pool
// (DefaultHeader when empty).
func New(declared []string, header string) *Router {
	if header == "" {
		header = DefaultHeader
	}
	r := &Router{header: strings.ToLower(header)}
	r.SetDeclared(declared)
	return r
}

// SetDeclared replaces the pools the EPP serves, for an EPP that finds its
// pools at run time: a served pool without endpoints is then known (a
// request for it waits for endpoints, 503) rather than unknown (400).
func (r *Router) SetDeclared(pools []string) {
	d := slices.Clone(pools)
	r.declared.Store(&d)
}

// Header is the (lower-case) request header that names a pool.
func (r *Router) Header() string { return r.header }

// index groups one datastore snapshot by pool. It keeps the snapshot so
// that its backing array cannot be reused by a later one while the index
// is current.
type index struct {
	src      []*endpoint.Endpoint
	declared *[]string
	byPool   map[string][]*endpoint.Endpoint
	names    []string // sorted: declared pools and every endpoint's
}

func (r *Router) indexOf(all []*endpoint.Endpoint) *index {
	declared := r.declared.Load()
	if ix := r.last.Load(); ix != nil && ix.declared == declared && len(all) == len(ix.src) && (len(all) == 0 || &all[0] == &ix.src[0]) {
		return ix
	}
	ix := &index{src: all, declared: declared, byPool: map[string][]*endpoint.Endpoint{}}
	for _, p := range *declared {
		ix.byPool[p] = nil
	}
	for _, e := range all {
		ix.byPool[e.Pool] = append(ix.byPool[e.Pool], e)
	}
	if len(ix.byPool[""]) == 0 {
		delete(ix.byPool, "")
	}
	for p := range ix.byPool {
		ix.names = append(ix.names, p)
	}
	slices.Sort(ix.names)
	r.last.Store(ix)
	return ix
}

// Pools are the pools the snapshot all and the configuration name, sorted.
// An endpoint without a pool counts as the pool "".
func (r *Router) Pools(all []*endpoint.Endpoint) []string { return r.indexOf(all).names }

// Query is what one request says about its pool.
type Query struct {
	// Header is the pool header's value; empty when absent.
	Header string
	// Hinted are the endpoints of the proxy's subset hint; Hint reports
	// that there was one (the server reports an empty match itself).
	Hinted []*endpoint.Endpoint
	Hint   bool
	// Model is the model the client named; empty when the request has no
	// body or no model.
	Model string
	// Bodyless requests (GET /v1/models, health checks through the
	// gateway) may go to any pool when nothing tells which.
	Bodyless bool
	// Claims, when set, reports that pool takes model by its own policy
	// (an InferenceModelRewrite rule for it) whatever its servers list.
	Claims func(pool, model string) bool
}

// Resolve returns the request's pool and its candidate endpoints. all is
// the datastore's snapshot. With at most one pool the answer is the hinted
// endpoints (or all) and pool "" or the one pool's name: nothing changes
// for an EPP serving one pool. An empty result for a pool that has no
// endpoints now is not an error here: the server answers it as any empty
// candidate set.
func (r *Router) Resolve(all []*endpoint.Endpoint, q Query) (string, []*endpoint.Endpoint, error) {
	ix := r.indexOf(all)
	if len(ix.names) <= 1 {
		pool, cands := "", all
		if len(ix.names) == 1 {
			pool = ix.names[0]
		}
		if q.Hint {
			cands = q.Hinted
		}
		return pool, cands, nil
	}
	// The candidates by pool: the snapshot's index (shared, not copied)
	// or the hinted endpoints grouped.
	groups := ix.byPool
	if q.Hint {
		groups = map[string][]*endpoint.Endpoint{}
		for _, e := range q.Hinted {
			groups[e.Pool] = append(groups[e.Pool], e)
		}
	}
	if q.Header != "" {
		if _, ok := ix.byPool[q.Header]; !ok {
			return "", nil, fmt.Errorf("%w %q (header %s): this endpoint picker serves %s", ErrUnknownPool, q.Header, r.header, strings.Join(ix.names, ", "))
		}
		return q.Header, groups[q.Header], nil
	}
	pools := nonEmpty(groups)
	if len(pools) == 1 && q.Hint {
		return pools[0], groups[pools[0]], nil
	}
	if q.Model == "" {
		if q.Bodyless {
			if q.Hint {
				return "", q.Hinted, nil
			}
			return "", all, nil
		}
		return "", nil, fmt.Errorf("%w (%s) and names no model: set header %s", ErrAmbiguous, strings.Join(pools, ", "), r.header)
	}
	var serving, unknown []string
	for _, p := range pools {
		switch {
		case q.Claims != nil && q.Claims(p, q.Model):
			serving = append(serving, p)
		default:
			switch poolServes(groups[p], q.Model) {
			case serves:
				serving = append(serving, p)
			case silent:
				unknown = append(unknown, p)
			}
		}
	}
	switch {
	case len(serving) == 1:
		return serving[0], groups[serving[0]], nil
	case len(serving) > 1:
		return "", nil, fmt.Errorf("%w: model %q is served by pools %s; set header %s to one of them",
			ErrAmbiguous, q.Model, strings.Join(serving, ", "), r.header)
	case len(unknown) > 0:
		return "", nil, fmt.Errorf("%w: no pool lists model %q and pools %s have not reported their models yet (models-data-source); set header %s",
			ErrAmbiguous, q.Model, strings.Join(unknown, ", "), r.header)
	case len(pools) == 0:
		return "", nil, nil // nothing to pick from: the server's 503
	}
	if empty := ix.empty(); len(empty) > 0 && !q.Hint {
		return "", nil, fmt.Errorf("%w: no endpoint lists model %q and pools %s have no endpoints now", ErrMaybeEmptyPool, q.Model, strings.Join(empty, ", "))
	}
	return "", nil, fmt.Errorf("%w %q (pools %s)", ErrModelNotServed, q.Model, strings.Join(pools, ", "))
}

// Members are pool's endpoints in the snapshot all, in its order: shared,
// not to be modified.
func (r *Router) Members(all []*endpoint.Endpoint, pool string) []*endpoint.Endpoint {
	return r.indexOf(all).byPool[pool]
}

// empty lists the pools without endpoints.
func (ix *index) empty() []string {
	var out []string
	for _, p := range ix.names {
		if len(ix.byPool[p]) == 0 {
			out = append(out, p)
		}
	}
	return out
}

// nonEmpty lists the pools of groups that have endpoints, sorted.
func nonEmpty(groups map[string][]*endpoint.Endpoint) []string {
	var out []string
	for p, eps := range groups {
		if len(eps) > 0 {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// answer is what a pool's endpoints say about a model.
type answer int

const (
	silent answer = iota // none has said what it serves
	denies               // some have, none serves it
	serves               // one serves it
)

// poolServes asks eps in turn, stopping at the first that serves model.
func poolServes(eps []*endpoint.Endpoint, model string) answer {
	a := silent
	for _, e := range eps {
		switch knows, yes := endpointServes(e, model); {
		case yes:
			return serves
		case knows:
			a = denies
		}
	}
	return a
}

// endpointServes reports whether e has said anything about its models, and
// whether it serves model (its model list, its base model or its LoRA
// adapters say so).
func endpointServes(e *endpoint.Endpoint, model string) (knows, serves bool) {
	if ms := e.Models(); ms != nil {
		if _, ok := ms.Find(model); ok {
			return true, true
		}
		knows = true
	}
	m := e.Metrics()
	if m.BaseModel != "" {
		knows = true
		if m.BaseModel == model {
			return true, true
		}
	}
	if _, ok := m.ActiveModels[model]; ok {
		return true, true
	}
	if _, ok := m.WaitingModels[model]; ok {
		return true, true
	}
	return knows || len(m.ActiveModels)+len(m.WaitingModels) > 0, false
}

// Pool is one pool as the router sees it (the EPP's /debug/pools page).
type Pool struct {
	Name      string `json:"name"`
	Endpoints int    `json:"endpoints"`
	// Models are what its endpoints say they serve (model lists, base
	// models, running and waiting adapters), sorted: what routing by model
	// reads. Silent counts the endpoints that have said nothing yet.
	Models []string `json:"models"`
	Silent int      `json:"silentEndpoints"`
}

// Describe lists the pools of the snapshot all and the declared ones.
func (r *Router) Describe(all []*endpoint.Endpoint) []Pool {
	ix := r.indexOf(all)
	out := make([]Pool, 0, len(ix.names))
	for _, name := range ix.names {
		p := Pool{Name: name, Endpoints: len(ix.byPool[name]), Models: []string{}}
		for _, e := range ix.byPool[name] {
			models := modelsOf(e)
			if len(models) == 0 {
				p.Silent++
			}
			for _, m := range models {
				if !slices.Contains(p.Models, m) {
					p.Models = append(p.Models, m)
				}
			}
		}
		slices.Sort(p.Models)
		out = append(out, p)
	}
	return out
}

// modelsOf is every model e says it serves (see endpointServes).
func modelsOf(e *endpoint.Endpoint) []string {
	var out []string
	if ms := e.Models(); ms != nil {
		for _, it := range ms.Items {
			out = append(out, it.ID)
		}
	}
	m := e.Metrics()
	if m.BaseModel != "" {
		out = append(out, m.BaseModel)
	}
	for a := range m.ActiveModels {
		out = append(out, a)
	}
	for a := range m.WaitingModels {
		out = append(out, a)
	}
	return out
}
