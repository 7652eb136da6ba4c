package server

import (
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/poolroute"
)

// resolvePool finds the request's pool when the EPP serves several (see
// package poolroute); x.pool then narrows the candidates and picks the
// pool's objectives and rewrites. model is the client's model name ("" for
// bodyless requests). With one pool it only names it.
func (x *exchange) resolvePool(model string, bodyless bool) error {
	r := x.srv.opts.Pools
	if r == nil {
		return nil
	}
	all := x.srv.endpoints.Snapshot()
	if pools := r.Pools(all); len(pools) <= 1 {
		if len(pools) == 1 { // the request's pool all the same (its flow-control gate, its objectives)
			x.pool = pools[0]
		}
		return nil
	}
	q := poolroute.Query{Header: strings.TrimSpace(x.poolHeader(r.Header())), Model: model, Bodyless: bodyless}
	if !x.srv.opts.DisableSubsetFilter {
		if hint := parseSubset(x.filterMD); hint.present {
			q.Hint, q.Hinted = true, hint.filter(all)
		}
	}
	if x.srv.opts.PoolPolicies != nil {
		q.Claims = func(pool, model string) bool {
			_, rw := x.srv.opts.PoolPolicies(pool)
			c, ok := rw.(claimer)
			return ok && c.Claims(model)
		}
	}
	// Only the pool is kept: candidates() reads the pool's endpoints when
	// the request is scheduled, from the snapshot of then (an index
	// lookup, not a copy).
	pool, _, err := r.Resolve(all, q)
	x.pool = pool
	return err
}

// poolHeader is the request header naming the pool, else the same key in
// the ext_proc stream's gRPC metadata: Envoy adds that per filter or per
// route (grpc_service.initial_metadata, ExtProcPerRoute's
// grpc_initial_metadata), so a gateway configured per pool can name it
// without touching the request.
func (x *exchange) poolHeader(name string) string {
	if v := x.headers[name]; v != "" {
		return v
	}
	if vs := metadata.ValueFromIncomingContext(x.ctx, name); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// claimer is implemented by Rewrites that can tell whether a rule takes a
// model without choosing a target.
type claimer interface{ Claims(model string) bool }

// inPool narrows eps (all, or the hinted endpoints of all) to the
// request's pool, when it has one and the EPP serves several.
func (x *exchange) inPool(all, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	r := x.srv.opts.Pools
	if x.pool == "" || len(r.Pools(all)) <= 1 {
		return eps
	}
	if len(eps) == len(all) {
		return r.Members(all, x.pool) // the index's slice: no copy
	}
	out := make([]*endpoint.Endpoint, 0, len(eps))
	for _, e := range eps {
		if e.Pool == x.pool {
			out = append(out, e)
		}
	}
	return out
}

// objectives and rewrites are the request's pool's policies.
func (x *exchange) objectives() Objectives {
	o, _ := x.srv.PoliciesOf(x.pool)
	return o
}

func (x *exchange) rewrites() Rewrites {
	_, rw := x.srv.PoliciesOf(x.pool)
	return rw
}

// PoliciesOf returns the objectives and rewrites a request of pool gets
// (pool "" for an EPP that does not split requests by pool); either may be
// nil.
func (s *Server) PoliciesOf(pool string) (Objectives, Rewrites) {
	if pp := s.opts.PoolPolicies; pp != nil && pool != "" {
		return pp(pool)
	}
	return s.opts.Objectives, s.opts.Rewrites
}

// poolStatus maps poolroute's errors to HTTP statuses; ok is false for
// other errors.
func poolStatus(err error) (code int, reason string, ok bool) {
	switch {
	case errors.Is(err, poolroute.ErrUnknownPool), errors.Is(err, poolroute.ErrAmbiguous):
		return http.StatusBadRequest, "bad-request", true
	case errors.Is(err, poolroute.ErrModelNotServed):
		return http.StatusNotFound, "model-not-found", true
	case errors.Is(err, poolroute.ErrMaybeEmptyPool):
		return http.StatusServiceUnavailable, "rejected-no-endpoints", true
	}
	return 0, "", false
}
