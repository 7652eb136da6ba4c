// Package filters holds the built-in filters: plugins that remove endpoints
// which must not serve a request (wrong role, wrong labels, saturated).
//
// Every filter follows the scheduler.Filter contract: it returns a subset of
// its input in input order, returns the input slice itself when it keeps
// everything (so the common case does not allocate), and never modifies the
// input slice or the endpoints.
package filters

import "github.com/openepp/openepp/pkg/endpoint"

// keep returns the endpoints for which ok is true, in input order. It returns
// eps itself when every endpoint is kept and allocates only once the first
// endpoint is dropped.
func keep(eps []*endpoint.Endpoint, ok func(*endpoint.Endpoint) bool) []*endpoint.Endpoint {
	for i, e := range eps {
		if ok(e) {
			continue
		}
		out := make([]*endpoint.Endpoint, i, len(eps)-1)
		copy(out, eps[:i])
		for _, e := range eps[i+1:] {
			if ok(e) {
				out = append(out, e)
			}
		}
		return out
	}
	return eps
}
