// Package inflight counts the requests, and their estimated tokens, that
// this EPP has sent to each endpoint and not yet seen finish. It is the load
// signal of the plugins that judge endpoints by the EPP's own routing (the
// active-request and token-load scorers, the concurrency detector), which
// reacts to a burst at once instead of at the next metrics scrape.
//
// A request is keyed by its *scheduler.State: the state is created once per
// request and lives until ResponseComplete, whereas client-supplied request
// IDs may repeat or be absent. Keying by the state lets every Tracker keep
// its own books and release a request at most once. Endpoints are keyed by
// Endpoint.HostPort, the identity the proxy reports for the endpoint that
// served a request, which also survives a label change.
package inflight

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

// Tracker holds the in-flight books of one plugin instance. The plugin
// calls Start from PreRequest, MoveTo from ResponseHeaders when the proxy
// served the request elsewhere, and Finish from ResponseComplete. Finish,
// the TTL sweep and the departure of the request's endpoint all remove the
// request, and whichever comes first wins, so a lost completion cannot leak
// load and a late one cannot release it twice. Safe for concurrent use.
type Tracker struct {
	clock scheduler.Clock

	mu      sync.RWMutex
	ttl     time.Duration   // changed by an heir's SetTTL (Counter.Inherit)
	load    map[string]load // by Endpoint.HostPort; absent means zero
	flights map[*scheduler.State]flight
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

	// prefill is the endpoint prefilling a disaggregated request, charged
	// one request and prefillTokens until ReleasePrefill or the end; "" when
	// none is charged.
	prefill       string
	prefillTokens int
}

// New returns an empty tracker whose sweep releases requests older than
// ttl. A nil clock means the wall clock.
func New(clock scheduler.Clock, ttl time.Duration) *Tracker {
	if clock == nil {
		clock = scheduler.RealClock{}
	}
	return &Tracker{clock: clock, ttl: ttl, load: map[string]load{}, flights: map[*scheduler.State]flight{}}
}

// Start records that the request owning state was sent to hostPort with an
// estimated tokens. A second Start for the same request is ignored.
func (t *Tracker) Start(state *scheduler.State, hostPort string, tokens int) {
	t.StartSplit(state, hostPort, tokens, "", 0)
}

// StartSplit is Start for a disaggregated request: prefillHost, when not
// empty and not hostPort, is also charged one request and prefillTokens
// until ReleasePrefill, Finish, the TTL or its departure.
func (t *Tracker) StartSplit(state *scheduler.State, hostPort string, tokens int, prefillHost string, prefillTokens int) {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.flights[state]; dup {
		return
	}
	f := flight{endpoint: hostPort, tokens: tokens, started: now}
	if prefillHost != "" && prefillHost != hostPort {
		f.prefill, f.prefillTokens = prefillHost, prefillTokens
		t.addLocked(prefillHost, 1, prefillTokens)
	}
	t.flights[state] = f
	t.addLocked(hostPort, 1, tokens)
}

// ReleasePrefill ends the request's prefill leg (its prefill is done): the
// prefill endpoint no longer carries it. No leg, nothing happens.
func (t *Tracker) ReleasePrefill(state *scheduler.State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.flights[state]
	if !ok || f.prefill == "" {
		return
	}
	t.releasePrefillLocked(&f)
	t.flights[state] = f
}

func (t *Tracker) releasePrefillLocked(f *flight) {
	if f.prefill != "" {
		t.addLocked(f.prefill, -1, -f.prefillTokens)
		f.prefill, f.prefillTokens = "", 0
	}
}

// MoveTo re-attributes the request to served (surrounding spaces ignored)
// when the proxy reports that another endpoint, a fallback, served it. An
// empty served or an unknown request changes nothing.
func (t *Tracker) MoveTo(state *scheduler.State, served string) {
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
	t.flights[state] = f
	t.addLocked(served, 1, f.tokens)
}

// SetTokens replaces the request's token estimate with the usage the server
// reported; later calls are ignored.
func (t *Tracker) SetTokens(state *scheduler.State, tokens int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.flights[state]
	if !ok || f.actual {
		return
	}
	t.addLocked(f.endpoint, 0, tokens-f.tokens)
	f.tokens, f.actual = tokens, true
	t.flights[state] = f
}

// Finish releases exactly what the request holds; it reports whether
// anything was released (false for an unknown request, a repeated Finish,
// or when the TTL or an endpoint departure got there first).
func (t *Tracker) Finish(state *scheduler.State) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.flights[state]
	if !ok {
		return false
	}
	delete(t.flights, state)
	t.addLocked(f.endpoint, -1, -f.tokens)
	t.releasePrefillLocked(&f)
	return true
}

// addLocked adjusts an endpoint's load, deleting it when it reaches zero so
// the map holds only busy endpoints.
func (t *Tracker) addLocked(hostPort string, requests, tokens int) {
	l := t.load[hostPort]
	l.requests += requests
	l.tokens += tokens
	if l.requests <= 0 {
		delete(t.load, hostPort)
		return
	}
	t.load[hostPort] = l
}

// Requests writes each endpoint's in-flight request count into out, which
// must be index-aligned with eps and zeroed (idle endpoints are skipped).
func (t *Tracker) Requests(eps []*endpoint.Endpoint, out []float64) { t.fill(eps, out, false) }

// Tokens writes each endpoint's in-flight tokens into out, which must be
// index-aligned with eps and zeroed (idle endpoints are skipped).
func (t *Tracker) Tokens(eps []*endpoint.Endpoint, out []float64) { t.fill(eps, out, true) }

// fill backs Requests and Tokens.
func (t *Tracker) fill(eps []*endpoint.Endpoint, out []float64, tokens bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.load) == 0 {
		return // out is zeroed
	}
	for i, e := range eps {
		l := t.load[e.HostPort]
		if tokens {
			out[i] = float64(l.tokens)
		} else {
			out[i] = float64(l.requests)
		}
	}
}

// Of returns what the endpoint at hostPort has in flight.
func (t *Tracker) Of(hostPort string) (requests, tokens int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	l := t.load[hostPort]
	return l.requests, l.tokens
}

// Each calls fn with each endpoint of eps and what it has in flight, under
// one read lock and without allocating; fn must not call back into t.
func (t *Tracker) Each(eps []*endpoint.Endpoint, fn func(e *endpoint.Endpoint, requests, tokens int)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range eps {
		l := t.load[e.HostPort]
		fn(e, l.requests, l.tokens)
	}
}

// Sum returns the total in flight on eps, and only on them: load on
// endpoints not given does not count. It reads the books once, under one
// lock, and does not allocate.
func (t *Tracker) Sum(eps []*endpoint.Endpoint) (requests, tokens int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.load) == 0 {
		return 0, 0
	}
	for _, e := range eps {
		l := t.load[e.HostPort]
		requests += l.requests
		tokens += l.tokens
	}
	return requests, tokens
}

// TTL returns how old a request may get before the sweep releases it.
func (t *Tracker) TTL() time.Duration {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.ttl
}

// SetTTL changes the TTL; the next sweep applies it to every request.
func (t *Tracker) SetTTL(ttl time.Duration) {
	t.mu.Lock()
	t.ttl = ttl
	t.mu.Unlock()
}

// Sweep releases requests older than the TTL at now and, when pool is not
// nil, forgets endpoints that are no longer in it together with their
// requests (an endpoint that comes back starts from zero). It returns how
// many requests each rule released.
func (t *Tracker) Sweep(now time.Time, pool []*endpoint.Endpoint) (expired, departed int) {
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
			t.releasePrefillLocked(&f) // a departed prefill endpoint's load goes below
			departed++
		case now.Sub(f.started) >= t.ttl:
			delete(t.flights, state)
			t.addLocked(f.endpoint, -1, -f.tokens)
			t.releasePrefillLocked(&f)
			expired++
		case live != nil && f.prefill != "" && !live[f.prefill]:
			f.prefill, f.prefillTokens = "", 0 // its load goes below
			t.flights[state] = f
		}
	}
	for hostPort := range t.load {
		if live != nil && !live[hostPort] {
			delete(t.load, hostPort)
		}
	}
	return expired, departed
}

// Size returns how many requests and busy endpoints are tracked.
func (t *Tracker) Size() (flights, endpoints int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.flights), len(t.load)
}

// Run sweeps periodically, with the tracker's clock and h's pool, until ctx
// is done; it backs the plugins' scheduler.Runnable Start. h may be nil or
// lack Endpoints, and then only the TTL applies.
func (t *Tracker) Run(ctx context.Context, h *scheduler.Handle, log logr.Logger) error {
	tick := time.NewTicker(min(t.TTL(), maxSweepInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if expired, departed := t.Sweep(t.clock.Now(), currentPool(h)); expired+departed > 0 {
				log.V(1).Info("released in-flight requests", "expired", expired, "departedEndpoint", departed)
			}
		}
	}
}

// currentPool returns the pool from h, or nil when h cannot tell (which
// Sweep takes as "membership unknown", unlike an empty pool).
func currentPool(h *scheduler.Handle) []*endpoint.Endpoint {
	if h == nil || h.Endpoints == nil {
		return nil
	}
	if pool := h.Endpoints(); pool != nil {
		return pool
	}
	return []*endpoint.Endpoint{}
}

// PrimaryTarget is the endpoint a scheduled request is sent to first, the
// one its load is counted against; nil when nothing was scheduled.
func PrimaryTarget(result *scheduler.Result) *endpoint.Endpoint {
	if targets := result.Targets(); len(targets) > 0 {
		return targets[0]
	}
	return nil
}
