package inflight

import (
	"context"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Counter is embedded by plugins that count the requests this EPP has in
// flight: it implements their PreRequest, ResponseHeaders and
// ResponseComplete hooks, scheduler.Runnable and scheduler.StateDumper
// (dump.go) over one Tracker, so each such plugin only reads the books.
type Counter struct {
	tracker  *Tracker
	ttl      time.Duration // this instance's; the tracker's once Start runs
	estimate Estimate
	handle   *scheduler.Handle
	log      logr.Logger

	// With ChargePrefill, a disaggregated request weighs prefill on its
	// prefill endpoint and decode on its decode endpoint.
	prefill, decode Estimate
}

// ChargePrefill makes the books charge a disaggregated request's prefill
// endpoint too (Result.PrefillTarget, when it is not the decode target):
// one request weighing prefill(state, req, that endpoint), released by
// Tracker.ReleasePrefill (the plugin calls it when the prefill is done) or
// at the end, while the decode target weighs decode(...) instead of the
// usual estimate. Without it the decode target alone carries the request.
func (c *Counter) ChargePrefill(prefill, decode Estimate) { c.prefill, c.decode = prefill, decode }

// Estimate weighs a request in tokens as it is sent to target; state is the
// request's, holding what the scheduler's plugins found for it (a prefix
// match, say).
type Estimate func(state *scheduler.State, req *scheduler.Request, target *endpoint.Endpoint) int

// NewCounter returns the books of the plugin instance called plugin: a
// Tracker releasing requests older than ttl, each request weighing
// estimate(state, req, target) tokens (0 when estimate is nil). The clock, the logger and,
// for the sweep (Start), the pool come from h, which (and any of which) may
// be unset: then the wall clock, no logging, no sweep of departed endpoints.
func NewCounter(h *scheduler.Handle, plugin string, ttl time.Duration, estimate Estimate) Counter {
	var clock scheduler.Clock
	log := logr.Discard()
	if h != nil {
		clock, log = h.Clock, h.Log
	}
	return Counter{tracker: New(clock, ttl), ttl: ttl, estimate: estimate, handle: h, log: log.WithValues("plugin", plugin)}
}

// Tracker returns the books.
func (c *Counter) Tracker() *Tracker { return c.tracker }

// PreRequest counts the request against its primary target. A request that
// was not scheduled, or is seen a second time, adds nothing.
func (c *Counter) PreRequest(_ context.Context, state *scheduler.State, req *scheduler.Request, result *scheduler.Result) {
	e := PrimaryTarget(result)
	if e == nil || state == nil {
		return
	}
	if pf := result.PrefillTarget(); c.prefill != nil && pf != nil && pf != e {
		c.tracker.StartSplit(state, e.HostPort, weigh(c.decode, state, req, e), pf.HostPort, weigh(c.prefill, state, req, pf))
		return
	}
	c.tracker.Start(state, e.HostPort, weigh(c.estimate, state, req, e))
}

// PromptTokens is an Estimate: the request's estimated prompt length
// (bytes/4), wherever it goes.
func PromptTokens(_ *scheduler.State, req *scheduler.Request, _ *endpoint.Endpoint) int {
	if req == nil || req.Body == nil {
		return 0
	}
	return req.Body.EstimatedPromptTokens()
}

// weigh is estimate's weight of the request on target, 0 without one.
func weigh(estimate Estimate, state *scheduler.State, req *scheduler.Request, target *endpoint.Endpoint) int {
	if estimate == nil {
		return 0
	}
	return estimate(state, req, target)
}

// ResponseHeaders moves the request to the endpoint the proxy reports as
// having served it (the primary failed and a fallback answered).
func (c *Counter) ResponseHeaders(_ context.Context, state *scheduler.State, _ *scheduler.Request, resp *scheduler.Response) {
	c.tracker.MoveTo(state, resp.Served)
}

// ResponseComplete releases the request (completed, failed or cancelled).
func (c *Counter) ResponseComplete(_ context.Context, state *scheduler.State, _ *scheduler.Request, _ *scheduler.Response) {
	c.tracker.Finish(state)
}

// Inherit implements scheduler.Inheritor: after a reload that changed the
// plugin's parameters, the new instance keeps the books of the one it
// replaces, which go on counting down as the requests routed before the
// reload finish through the old instance. A concurrency limit raised by a
// reload is then measured against the requests really in flight, not
// against zero. The books take this instance's request timeout when it
// starts, so a reload refused after the build changes nothing.
func (c *Counter) Inherit(prev scheduler.Plugin) {
	old, ok := prev.(interface{ Tracker() *Tracker })
	if !ok || old.Tracker() == nil || c.tracker == nil {
		return
	}
	c.tracker = old.Tracker()
}

// Start sweeps expired requests and departed endpoints until ctx is done.
func (c *Counter) Start(ctx context.Context) error {
	c.tracker.SetTTL(c.ttl) // books inherited from an instance with another timeout
	return c.tracker.Run(ctx, c.handle, c.log)
}
