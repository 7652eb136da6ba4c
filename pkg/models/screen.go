package models

import (
	"context"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// served is what one endpoint's list says about a model.
type served uint8

const (
	uncollected served = iota
	unlisted
	asBase
	asAdapter
)

func lookup(ep *endpoint.Endpoint, model string) served {
	ms := ep.Models()
	if ms == nil {
		return uncollected
	}
	m, ok := ms.Find(model)
	switch {
	case !ok:
		return unlisted
	case m.Adapter():
		return asAdapter
	}
	return asBase
}

// Screen implements scheduler.Screener. With the request's target model M
// (after any rewrite):
//   - no M: every candidate stays;
//   - some candidates list M as a base model: they, those listing it as an
//     adapter, and the uncollected ones stay (an uncollected server may
//     well serve the pool's base model);
//   - else some list M as a LoRA adapter: only they stay (adapters are
//     loaded per server);
//   - else none lists M: the uncollected candidates stay, or all of them
//     when every one is collected (a list may be out of date, and the
//     server's own 404 says more than a 503 from the EPP).
func (r *Responder) Screen(_ context.Context, _ *scheduler.State, req *scheduler.Request, endpoints []*endpoint.Endpoint) []*endpoint.Endpoint {
	if req.Model == "" {
		return endpoints
	}
	var n [asAdapter + 1]int
	for _, ep := range endpoints {
		n[lookup(ep, req.Model)]++
	}
	var keep func(served) bool
	switch {
	case n[asBase] > 0:
		keep = func(s served) bool { return s != unlisted }
	case n[asAdapter] > 0:
		keep = func(s served) bool { return s == asAdapter }
	case n[uncollected] > 0:
		keep = func(s served) bool { return s == uncollected }
	}
	if keep == nil {
		return endpoints
	}
	kept := 0
	for s, count := range n {
		if keep(served(s)) {
			kept += count
		}
	}
	if kept == len(endpoints) {
		return endpoints
	}
	out := make([]*endpoint.Endpoint, 0, len(endpoints))
	for _, ep := range endpoints {
		if keep(lookup(ep, req.Model)) {
			out = append(out, ep)
		}
	}
	return out
}
