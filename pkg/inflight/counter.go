package inflight

import (
	"context"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Counter is embedded by plugins that count the requests this EPP has in
// flight: it implements their PreRequest, ResponseHeaders and
// ResponseComplete hooks, scheduler.Runnable and scheduler.StateDumper
// (dump.go) over one Tracker, so each such plugin only reads the books.
type Counter struct {
	tracker  *Tracker
	estimate func(*scheduler.Request) int
	handle   *scheduler.Handle
	log      logr.Logger
}

// NewCounter counts with t, each request weighing estimate(req) tokens (0
// when estimate is nil); the sweep (Start) reads the pool from h.
func NewCounter(t *Tracker, estimate func(*scheduler.Request) int, h *scheduler.Handle, log logr.Logger) Counter {
	return Counter{tracker: t, estimate: estimate, handle: h, log: log}
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
	tokens := 0
	if c.estimate != nil {
		tokens = c.estimate(req)
	}
	c.tracker.Start(state, e.HostPort, tokens)
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

// Start sweeps expired requests and departed endpoints until ctx is done.
func (c *Counter) Start(ctx context.Context) error {
	return c.tracker.Run(ctx, c.handle, c.log)
}
