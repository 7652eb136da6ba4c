package scorers

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// maxSweepInterval bounds how long an expired request or a departed
// endpoint's counters linger before the background sweep drops them.
const maxSweepInterval = 10 * time.Second

// inflight counts the requests (and estimated tokens) this EPP has sent to
// each endpoint and not yet seen finish. It is the shared core of the
// active-request and token-load scorers: the scheduler calls start from
// PreRequest, moveTo from ResponseHeaders when the proxy served the request
// elsewhere, and finish from ResponseComplete.
//
// A request is identified by its *scheduler.State, which is unique per
// request (client-supplied request IDs are not), so each instance keeps its
// own books and a request is released at most once: finish, the TTL sweep
// and the departure of its endpoint all remove the flight, and whichever
// comes first wins. Safe for concurrent use.
type inflight struct {
	clock scheduler.Clock
	ttl   time.Duration

	mu      sync.RWMutex
	load    map[string]load // by Endpoint.HostPort; absent means zero
	flights map[*scheduler.State]*flight
}

// load is what one endpoint has in flight.
type load struct {
	requests int
	tokens   int
}

// flight is one request being served.
type flight struct {
	endpoint string
	tokens   int
	started  time.Time
	actual   bool // tokens come from reported usage, not the estimate
}

func newInflight(clock scheduler.Clock, ttl time.Duration) *inflight {
	if clock == nil {
		clock = scheduler.RealClock{}
	}
	return &inflight{clock: clock, ttl: ttl, load: map[string]load{}, flights: map[*scheduler.State]*flight{}}
}

// start records that the request owning state was sent to hostPort with an
// estimated tokens. A second start for the same request is ignored.
func (t *inflight) start(state *scheduler.State, hostPort string, tokens int) {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.flights[state]; dup {
		return
	}
	t.flights[state] = &flight{endpoint: hostPort, tokens: tokens, started: now}
	t.addLocked(hostPort, 1, tokens)
}

// moveTo re-attributes the request to served when the proxy reports that
// another endpoint (a fallback) served it.
func (t *inflight) moveTo(state *scheduler.State, served string) {
	served = strings.TrimSpace(served)
	if served == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.flights[state]
	if !ok || f.endpoint == served {
		return
	}
	t.addLocked(f.endpoint, -1, -f.tokens)
	f.endpoint = served
	t.addLocked(served, 1, f.tokens)
}

// setTokens replaces the request's token estimate with the usage the server
// reported; later calls are ignored.
func (t *inflight) setTokens(state *scheduler.State, tokens int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.flights[state]
	if !ok || f.actual {
		return
	}
	t.addLocked(f.endpoint, 0, tokens-f.tokens)
	f.tokens, f.actual = tokens, true
}

// finish releases the request; it reports whether anything was released
// (false when the TTL or an endpoint departure got there first).
func (t *inflight) finish(state *scheduler.State) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.flights[state]
	if !ok {
		return false
	}
	delete(t.flights, state)
	t.addLocked(f.endpoint, -1, -f.tokens)
	return true
}

// addLocked adjusts an endpoint's load, deleting it when it reaches zero so
// the map holds only busy endpoints.
func (t *inflight) addLocked(hostPort string, requests, tokens int) {
	l := t.load[hostPort]
	l.requests += requests
	l.tokens += tokens
	if l.requests <= 0 {
		delete(t.load, hostPort)
		return
	}
	t.load[hostPort] = l
}

// requests writes each endpoint's in-flight request count into out.
func (t *inflight) requests(eps []*endpoint.Endpoint, out []float64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.load) == 0 {
		return // out is zeroed
	}
	for i, e := range eps {
		out[i] = float64(t.load[e.HostPort].requests)
	}
}

// tokens writes each endpoint's in-flight token estimate into out.
func (t *inflight) tokens(eps []*endpoint.Endpoint, out []float64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.load) == 0 {
		return
	}
	for i, e := range eps {
		out[i] = float64(t.load[e.HostPort].tokens)
	}
}

// sweep releases requests older than the TTL and, when pool is not nil,
// forgets endpoints that are no longer in it together with their requests
// (an endpoint that comes back starts from zero). It returns how many
// requests each rule released.
func (t *inflight) sweep(now time.Time, pool []*endpoint.Endpoint) (expired, departed int) {
	var live map[string]bool
	if pool != nil {
		live = make(map[string]bool, len(pool))
		for _, e := range pool {
			live[e.HostPort] = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for state, f := range t.flights {
		switch {
		case live != nil && !live[f.endpoint]:
			delete(t.flights, state)
			departed++
		case now.Sub(f.started) >= t.ttl:
			delete(t.flights, state)
			t.addLocked(f.endpoint, -1, -f.tokens)
			expired++
		}
	}
	for hostPort := range t.load {
		if live != nil && !live[hostPort] {
			delete(t.load, hostPort)
		}
	}
	return expired, departed
}

// size returns how many requests and busy endpoints are tracked.
func (t *inflight) size() (flights, endpoints int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.flights), len(t.load)
}

// run sweeps periodically until ctx is done; it backs the plugins' Start.
func (t *inflight) run(ctx context.Context, h *scheduler.Handle, log logr.Logger) error {
	tick := time.NewTicker(min(t.ttl, maxSweepInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if expired, departed := t.sweep(t.clock.Now(), currentPool(h)); expired+departed > 0 {
				log.V(1).Info("released in-flight requests", "expired", expired, "departedEndpoint", departed)
			}
		}
	}
}

// currentPool returns the pool from h, or nil when h cannot tell (which
// sweep takes as "membership unknown", unlike an empty pool).
func currentPool(h *scheduler.Handle) []*endpoint.Endpoint {
	if h == nil || h.Endpoints == nil {
		return nil
	}
	if pool := h.Endpoints(); pool != nil {
		return pool
	}
	return []*endpoint.Endpoint{}
}

// primaryTarget is the endpoint a scheduled request is sent to first.
func primaryTarget(result *scheduler.Result) *endpoint.Endpoint {
	if targets := result.Targets(); len(targets) > 0 {
		return targets[0]
	}
	return nil
}
