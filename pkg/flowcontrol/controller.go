// Package flowcontrol holds requests while the pool is saturated and
// releases them band by band: strict priority across bands, the band's
// FairnessPolicy choosing the flow, the band's OrderingPolicy choosing the
// request within the flow. A request goroutine blocks in Admit until the
// dispatcher (Start) lets it go, so scheduling happens at dispatch time.
//
// Concurrency: one mutex guards all queues. Each waiting request has a
// channel with room for one decision; whoever takes the request off its
// queue, under the mutex, decides its outcome, so a request cancelled at
// the moment it is dispatched ends one way only, and the dispatcher never
// blocks on a waiter that has gone.
package flowcontrol

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// DefaultFlowID is the flow of requests that carry no fairness ID.
const DefaultFlowID = "default-flow"

// defaultPoll is how often the dispatcher re-reads saturation while
// requests wait and nothing wakes it.
const defaultPoll = 5 * time.Millisecond

// defaultSettle bounds how long the dispatcher waits, after releasing a
// request, for it to be scheduled (see Settled) before it reads saturation
// again.
const defaultSettle = 5 * time.Millisecond

// Band configures one priority level's queues. Zero limits mean unlimited.
type Band struct {
	MaxRequests int64
	MaxBytes    int64
	Fairness    scheduler.FairnessPolicy // nil: global strict fairness
	Ordering    scheduler.OrderingPolicy // nil: FCFS
}

// Config configures a Controller.
type Config struct {
	MaxRequests int64 // global, across bands; 0 unlimited
	MaxBytes    int64 // global; 0 unlimited
	// DefaultTTL bounds waiting; 0 means only the request context's
	// deadline applies.
	DefaultTTL time.Duration
	// NoEndpointTTL, when > 0, bounds waiting while the pool has no
	// endpoints (scale from zero); 0 means DefaultTTL applies. See
	// Controller for the exact rule.
	NoEndpointTTL time.Duration
	DefaultBand   Band         // template for a priority with no entry in Bands
	NegativeBand  *Band        // template for priority < 0 without an entry; nil: DefaultBand
	Bands         map[int]Band // per-priority templates
	// UsageLimit gives each priority's saturation ceiling; nil: 1.0 for
	// every priority.
	UsageLimit scheduler.UsageLimitPolicy
	// Saturation rates the pool now (>= 1 saturated; NaN counts as
	// saturated); required. PoolSize reports the number of endpoints that
	// could serve; required.
	Saturation func(now time.Time) float64
	PoolSize   func() int
	// Now is the clock (nil: time.Now). Poll is how often the dispatcher
	// re-reads saturation while requests wait (0: 5ms).
	Now  func() time.Time
	Poll time.Duration
	// Settle bounds the dispatcher's wait, after it releases a request,
	// for that request's Settled (0: 5ms; negative: no wait). Detectors
	// count a request once it is scheduled, not when it leaves the queue;
	// without the wait the dispatcher would read the same saturation for
	// the whole queue and release all of it at once.
	Settle time.Duration
	// Observer, when set, is told about outcomes (for metrics).
	Observer Observer
	// OnEnqueue, when set, is told how long a request that could not take
	// the fast path took to be queued or refused at the door, with
	// "Enqueued" or the refusal's outcome. OnDispatchCycle, when set, is
	// told how long each dispatcher pass over waiting requests took
	// (expiry and releases, without the waits for released requests to be
	// scheduled). Both are for metrics: they must be quick.
	OnEnqueue       func(r Request, outcome string, took time.Duration)
	OnDispatchCycle func(took time.Duration)
	// OnBlocked, when set, is told of every dispatcher pass that stops
	// because the top band may not go (head-of-line blocking): in-flight
	// eviction decides from it. It runs on the dispatcher and must not
	// block; the Blocked is reused after it returns.
	OnBlocked func(*Blocked)
}

// Enqueued is the OnEnqueue outcome of a request that was queued.
const Enqueued = "Enqueued"

// validate reports every problem at once.
func (cfg *Config) validate() error {
	var errs []error
	if cfg.Saturation == nil {
		errs = append(errs, errors.New("saturation: required"))
	}
	if cfg.PoolSize == nil {
		errs = append(errs, errors.New("poolSize: required"))
	}
	nonNegative := func(path string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: must be >= 0, got %d", path, v))
		}
	}
	nonNegative("maxRequests", cfg.MaxRequests)
	nonNegative("maxBytes", cfg.MaxBytes)
	nonNegative("defaultTTL", int64(cfg.DefaultTTL))
	nonNegative("noEndpointTTL", int64(cfg.NoEndpointTTL))
	nonNegative("poll", int64(cfg.Poll))
	band := func(path string, b Band) {
		nonNegative(path+".maxRequests", b.MaxRequests)
		nonNegative(path+".maxBytes", b.MaxBytes)
	}
	band("defaultBand", cfg.DefaultBand)
	if cfg.NegativeBand != nil {
		band("negativeBand", *cfg.NegativeBand)
	}
	priorities := make([]int, 0, len(cfg.Bands))
	for p := range cfg.Bands {
		priorities = append(priorities, p)
	}
	slices.Sort(priorities)
	for _, p := range priorities {
		band(fmt.Sprintf("bands[%d]", p), cfg.Bands[p])
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flow control config: %w", err)
	}
	return nil
}

// Request describes a request asking to be dispatched.
type Request struct {
	FlowID      string // "" means DefaultFlowID
	Priority    int
	Bytes       int64     // negative counts as 0
	SLODeadline time.Time // zero when none
}

// Controller queues requests and dispatches them as saturation allows.
//
// TTL rule: each dispatcher pass picks one TTL for all waiting requests:
// NoEndpointTTL if it is > 0 and PoolSize() is 0 at that moment, otherwise
// DefaultTTL. A request whose time since enqueue has reached that TTL is
// evicted (EvictedNoEndpoints or EvictedTTL respectively) before anything
// is dispatched in that pass. QueuedRequest.Deadline is computed from
// DefaultTTL only (the TTL that applies while requests can be served),
// capped by the context's deadline. Expiry is checked on every dispatcher
// pass, which happens at least every Poll while requests wait. The clock is
// assumed not to go backwards.
type Controller struct {
	// cfg is swapped whole by Reconfigure; each use loads it once.
	cfg  atomic.Pointer[Config]
	now  func() time.Time
	poll time.Duration

	// wake (room for one) asks the dispatcher for a pass; quit is closed by
	// Stop.
	wake chan struct{}
	quit chan struct{}
	// settled (room for one) says a released request was scheduled.
	settled  chan struct{}
	settle   time.Duration
	stopOnce sync.Once
	started  atomic.Bool
	// queued mirrors requests and closed mirrors stopped, for
	// the lock-free fast path.
	queued atomic.Int64
	closed atomic.Bool
	// prios are the priorities in use, for banded usage-limit policies.
	prios ActivePriorities
	// block is the dispatcher's scratch for OnBlocked.
	block Blocked

	mu sync.Mutex
	// active holds the bands with waiting requests, highest priority first.
	active []*band
	// oldest and newest end the list of all waiting items, by arrival.
	oldest, newest *item
	requests       int64
	bytes          int64
	seq            uint64
	stopped        bool
}

// New validates cfg and returns a controller; it starts no goroutine.
func New(cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Controller{
		now:     cfg.Now,
		poll:    cfg.Poll,
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		settled: make(chan struct{}, 1),
		settle:  cfg.Settle,
	}
	if c.settle == 0 {
		c.settle = defaultSettle
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.poll == 0 {
		c.poll = defaultPoll
	}
	c.cfg.Store(&cfg)
	return c, nil
}

// conf is the configuration in force.
func (c *Controller) conf() *Config { return c.cfg.Load() }

// Start runs the dispatcher until ctx is done (which refuses everything
// still waiting, as Stop does) or Stop is called. Call it once; later calls
// return at once.
func (c *Controller) Start(ctx context.Context) {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	// The timer runs only while requests wait, so an idle controller costs
	// nothing.
	timer := time.NewTimer(c.poll)
	timer.Stop()
	defer timer.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		c.cycle(settle)
		var tick <-chan time.Time
		if c.queued.Load() > 0 {
			timer.Reset(c.poll)
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			c.Stop()
			return
		case <-c.quit:
			return
		case <-c.wake:
		case <-tick:
		}
		timer.Stop()
	}
}

// cycle is one dispatcher pass: expiry, then releases. A pass over an
// empty controller (every release wakes the dispatcher) is not timed.
func (c *Controller) cycle(settle *time.Timer) {
	observe := c.conf().OnDispatchCycle
	if observe == nil || c.queued.Load() == 0 {
		c.expire()
		c.dispatch(settle)
		return
	}
	start := c.now()
	c.expire()
	settling := c.dispatch(settle)
	observe(c.now().Sub(start) - settling)
}

// dispatch releases requests while the top band's ceiling allows,
// re-reading saturation before each one: the detector may count in-flight
// requests, so every dispatch can raise it. A top band that may not
// dispatch holds every lower band too (strict priority). It returns how
// long it waited for released requests to be scheduled.
func (c *Controller) dispatch(settle *time.Timer) (settling time.Duration) {
	for {
		c.mu.Lock()
		if len(c.active) == 0 {
			c.mu.Unlock()
			return settling
		}
		top := c.active[0].priority
		c.mu.Unlock()

		if ok, saturation, now := c.belowAt(top); !ok {
			c.blocked(saturation, now)
			return settling
		}

		c.mu.Lock()
		// A higher band may have appeared, or this one emptied, while the
		// lock was released; then judge again.
		released := false
		if len(c.active) > 0 && c.active[0].priority == top {
			it := c.active[0].next()
			c.remove(it)
			select { // a late signal from an earlier release must not count for this one
			case <-c.settled:
			default:
			}
			it.done <- nil
			released = true
		}
		c.mu.Unlock()
		if !released {
			continue
		}
		waitFrom := c.now()
		ok := c.awaitSettled(settle)
		settling += c.now().Sub(waitFrom)
		if !ok {
			return settling
		}
	}
}

// expire evicts the requests that have outlived the TTL (see Controller).
func (c *Controller) expire() {
	if c.queued.Load() == 0 {
		return
	}
	cfg := c.conf()
	noEndpoints := cfg.PoolSize() == 0
	ttl, noEndpointTTL := cfg.DefaultTTL, false
	if noEndpoints && cfg.NoEndpointTTL > 0 {
		ttl, noEndpointTTL = cfg.NoEndpointTTL, true
	}
	if ttl <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for it := c.oldest; it != nil; it = c.oldest {
		waited := now.Sub(it.q.Enqueued)
		if waited < ttl {
			return
		}
		c.remove(it)
		err := ttlError(it.q.FlowID, it.q.Priority, waited, ttl, noEndpointTTL)
		err.NoEndpoints = noEndpoints
		it.done <- err
	}
}

// Admit blocks until the request may be scheduled (nil) or is refused
// (*Error). When nothing at all waits and the pool is below the ceiling for
// r.Priority, it returns nil at once, without queueing or waking anyone.
// Otherwise the request waits for the dispatcher (Start); if its context
// ends at the moment it is dispatched, whichever took it off its queue
// first decides, so it may return nil with ctx already done.
func (c *Controller) Admit(ctx context.Context, r Request) error {
	_, err := c.AdmitQueued(ctx, r)
	return err
}

// AdmitQueued is Admit that also reports whether the request waited in a
// queue; the caller then calls Settled once it has been scheduled, so the
// dispatcher judges the next request with this one counted.
func (c *Controller) AdmitQueued(ctx context.Context, r Request) (queued bool, err error) {
	if r.FlowID == "" {
		r.FlowID = DefaultFlowID
	}
	r.Bytes = max(r.Bytes, 0)
	if ctx.Err() != nil {
		return false, c.refuse(r, cancelledError(r, false, 0, context.Cause(ctx)))
	}
	if _, banded := c.conf().UsageLimit.(scheduler.BandedUsageLimitPolicy); banded {
		c.prios.Touch(r.Priority, c.now())
	}
	if c.fastPath(r.Priority) {
		c.finished(r, Dispatched, 0)
		return false, nil
	}
	return c.wait(ctx, r)
}

// fastPath reports whether r may go without queueing. It takes no lock:
// it reads no queue, only whether any exists.
func (c *Controller) fastPath(priority int) bool {
	if c.queued.Load() != 0 || c.closed.Load() {
		return false
	}
	if !c.below(priority) {
		return false
	}
	// Something may have been queued while saturation was read.
	return c.queued.Load() == 0 && !c.closed.Load()
}

// wait queues r and blocks until it is decided or ctx is done.
func (c *Controller) wait(ctx context.Context, r Request) (bool, error) {
	observe := c.conf().OnEnqueue
	var start time.Time
	if observe != nil {
		start = c.now()
	}
	it, err := c.enqueue(ctx, r)
	if err != nil && err.Outcome == RejectedCapacity && c.conf().PoolSize() == 0 {
		// Full queues in front of an empty pool: unavailable, not busy.
		err.Outcome, err.msg = RejectedNoEndpoints, err.msg+" while the pool has no endpoints"
	}
	if observe != nil {
		outcome := Enqueued
		if err != nil {
			outcome = err.Outcome.String()
		}
		observe(r, outcome, c.now().Sub(start))
	}
	if err != nil {
		return false, c.refuse(r, err)
	}
	c.Wake()
	var decided *Error
	select {
	case decided = <-it.done:
	case <-ctx.Done():
		decided = c.abandon(ctx, r, it)
	}
	waited := c.now().Sub(it.q.Enqueued)
	if decided != nil {
		c.finished(r, decided.Outcome, waited)
		return false, decided
	}
	c.finished(r, Dispatched, waited)
	return true, nil
}

// enqueue checks that r may wait and queues it.
func (c *Controller) enqueue(ctx context.Context, r Request) (*item, *Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, shutdownError(r.FlowID, r.Priority, false, 0)
	}
	if err := c.checkCapacity(r); err != nil {
		return nil, err
	}
	now := c.now()
	c.seq++
	it := &item{
		q: scheduler.QueuedRequest{
			FlowID: r.FlowID, Priority: r.Priority, Bytes: r.Bytes,
			Enqueued: now, Deadline: c.deadline(ctx, now), SLODeadline: r.SLODeadline, Seq: c.seq,
		},
		done: make(chan *Error, 1),
	}
	c.push(it)
	return it, nil
}

// deadline is min(now+DefaultTTL, ctx's deadline), zero when neither.
func (c *Controller) deadline(ctx context.Context, now time.Time) time.Time {
	var d time.Time
	if ttl := c.conf().DefaultTTL; ttl > 0 {
		d = now.Add(ttl)
	}
	if cd, ok := ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d = cd
	}
	return d
}

// abandon takes a waiter whose ctx is done off its queue, unless it was
// decided meanwhile, in which case that decision stands.
func (c *Controller) abandon(ctx context.Context, r Request, it *item) *Error {
	c.mu.Lock()
	if !it.queued {
		c.mu.Unlock()
		return <-it.done
	}
	c.remove(it)
	c.mu.Unlock()
	c.Wake() // a lower band may be free to go now
	err := cancelledError(r, true, c.now().Sub(it.q.Enqueued), context.Cause(ctx))
	err.NoEndpoints = c.conf().PoolSize() == 0
	return err
}

// refuse reports an immediate refusal.
func (c *Controller) refuse(r Request, err *Error) error {
	err.NoEndpoints = c.conf().PoolSize() == 0
	c.finished(r, err.Outcome, 0)
	return err
}

func (c *Controller) finished(r Request, o Outcome, waited time.Duration) {
	if obs := c.conf().Observer; obs != nil {
		obs.Finished(r, o, waited)
	}
}
