package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/eviction"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/sim/engine"
)

// flightStatus is where a request stands.
type flightStatus uint8

const (
	flightRunning    flightStatus = iota // routed and submitted
	flightDone                           // last token received
	flightTimedOut                       // cancelled by the client
	flightFailed                         // not routed, or rejected by the server
	flightQueued                         // held by flow control
	flightPrefilling                     // routed, its prefill running on its prefill server
	flightBatched                        // held for its batching window (batch.go)
	flightEvicted                        // ended by in-flight eviction: 429 (evict.go), maybe retried (retry.go)
)

// flight is one request of a run: one attempt, when clients retry
// (retry.go).
type flight struct {
	id       uint64
	p        *prompt       // released when the request ends, or kept for its retry
	arrival  time.Duration // the client's first send
	sent     time.Duration // this attempt's send (arrival for the first)
	server   int32
	measured bool
	waited   bool  // held by flow control before it was routed
	batched  bool  // its batching window closed (batch.go)
	class    uint8 // index into RunSpec.Classes
	replica  uint8 // the EPP replica that routes it (replicas.go)
	status   flightStatus
	promptN  int32
	outN     int32
	cached   int32
	ttft     time.Duration
	end      time.Duration
	// prefill is the server the EPP named for the prefill (-1: none);
	// prefillEnd, prefillCached and fellBack are set as for the phases
	// of a disaggregated request (disagg.go).
	prefill       int32
	prefillCached int32
	// source is the server the EPP named to pull the prompt's cached
	// prefix from (p2p.go; -1: none).
	source     int32
	prefillEnd time.Duration
	fellBack   bool
	// state and req are the scheduler's per-request state (schedRouter).
	state *scheduler.State
	req   *scheduler.Request
	// lease is its in-flight eviction lease while it runs (evict.go);
	// revoked says an eviction was issued for it.
	lease   *eviction.Lease
	revoked bool
	// attempt counts the client's earlier attempts of the request;
	// retried says it was evicted and the client sent it again.
	attempt uint8
	retried bool
}

// server is one simulated model server and its endpoint as the EPP sees it.
type server struct {
	eng       *engine.Engine
	ep        *endpoint.Endpoint
	wake      time.Duration
	version   uint32
	scheduled bool
	stalls    int
	work      int64 // computed tokens of measured requests
	// residency is the adapter map last published, reused while unchanged.
	residency map[string]endpoint.LoRAResidence
}

// enginePriority is the body's priority member a flight reaches its server
// with: its class's priority in vLLM's convention (lower runs first), or 0
// when the policy does not write it.
func (s *sim) enginePriority(f *flight) int {
	if !s.spec.Policy.EnginePriority {
		return 0
	}
	return -s.priority(f)
}

// maxStalls bounds back-to-back engine wake-ups that make no progress, so
// an engine bug surfaces as an error instead of a hang.
const maxStalls = 100000

// sim is the state of one run. It is single-threaded: the engines, the
// router and the plugins are only ever touched by the run's goroutine.
type sim struct {
	spec     RunSpec
	engCfg   engine.Config
	clock    *virtualClock
	events   eventQueue
	servers  []server
	router   router
	src      source
	rng      *rand.Rand // arrivals and prompt choice only
	jitter   *rand.Rand
	classRng *rand.Rand // class choice, apart so classes do not change the trace
	retryRng *rand.Rand // retry backoffs (retry.go)
	flights  []flight
	open     int
	arriving bool
	lora     bool
	start    time.Duration // measured window [start, end)
	end      time.Duration
	// windowDone counts requests of any phase finishing inside the window,
	// windowTokens the output tokens generated inside it.
	windowDone, windowTokens int
	// windowEvicted counts, by class, the evictions inside the window,
	// whenever their requests arrived (evict.go).
	windowEvicted [maxClasses]int
	failures      failureLog
	// queues are the policy's flow control, one per EPP replica (nil:
	// none).
	queues []flowQueue
	// kvPulled counts the KV transfers and tokens the decode servers had
	// started when the window opened and closed (disagg.go).
	kvPulled [2]kvCount
	// batches are the replicas' open batching windows (batch.go).
	batches map[uint8]*heldBatch
}

// failureLog keeps the first routing or submission error of a run.
type failureLog struct {
	count int
	first error
}

func (l *failureLog) add(err error) {
	if l.count == 0 {
		l.first = err
	}
	l.count++
}

// Run simulates spec and returns its measured stage.
func Run(ctx context.Context, spec RunSpec) (*StageResult, error) {
	spec = spec.withDefaults()
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("run spec: %w", err)
	}
	wall := time.Now()
	s, err := newSim(spec)
	if err != nil {
		return nil, err
	}
	if err := s.loop(ctx); err != nil {
		return nil, fmt.Errorf("simulate %s on %s at %g QPS: %w", spec.Policy.Name, spec.Workload.Name, spec.QPS, err)
	}
	res := s.result()
	res.WallSeconds = time.Since(wall).Seconds()
	return res, nil
}

func newSim(spec RunSpec) (*sim, error) {
	cfg, err := EngineConfig(spec.Workload)
	if err != nil {
		return nil, err
	}
	s := &sim{
		spec: spec, engCfg: cfg, clock: &virtualClock{}, rng: newRand(spec.Seed),
		jitter: newRand(spec.Seed ^ 0xa0761d6478bd642f), lora: len(spec.Workload.Traffic.Adapters) > 0,
		classRng: newRand(spec.Seed ^ 0xe7037ed1a0b428db), retryRng: newRand(spec.Seed ^ 0x8ebc6af09c88c6e3),
	}
	eps := make([]*endpoint.Endpoint, spec.Workload.Servers)
	s.servers = make([]server, len(eps))
	if spec.Policy.EnginePriority {
		cfg.Policy = engine.Priority
	}
	for i := range s.servers {
		c := cfg
		c.Seed = spec.Seed + uint64(i)
		if s.servers[i].eng, err = engine.New(c); err != nil {
			return nil, fmt.Errorf("server %d: %w", i, err)
		}
		eps[i] = endpoint.New(endpoint.Spec{
			Name: fmt.Sprintf("server-%d", i), Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Port: 8000,
			Labels: roleLabels(i, spec.PrefillServers), Node: spec.nodeOf(i),
		})
		s.servers[i].ep = eps[i]
	}
	kv := &kvHub{}
	if s.router, err = spec.Policy.newRouter(routerEnv{endpoints: eps, clock: s.clock, seed: spec.Seed,
		classes: spec.Classes, replication: spec.Replication, kv: kv}); err != nil {
		return nil, err
	}
	kv.listen(s)
	s.queues = newQueues(s.router)
	s.armEviction()
	if s.src, err = newSource(spec.Workload.Traffic, cfg.Model, spec.Seed); err != nil {
		return nil, err
	}
	warmup := time.Duration(float64(spec.Workload.WarmupRequests) / spec.QPS * float64(time.Second))
	s.start, s.end = warmup, warmup+spec.Workload.Duration
	return s, nil
}

// loop runs the event queue until every request has ended.
func (s *sim) loop(ctx context.Context) error {
	for i := range s.servers {
		s.publishMetrics(i)
		phase := time.Duration(s.jitter.Int64N(int64(s.spec.ScrapeInterval)))
		s.events.push(event{at: phase, kind: evScrape, server: int32(i)})
	}
	s.arriving = true
	s.events.push(event{at: s.interarrival(), kind: evArrival})
	for n := 0; s.events.Len() > 0 && (s.arriving || s.open > 0); n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.handle(s.events.pop()); err != nil {
			return err
		}
	}
	s.countPulled(maxDuration)
	return nil
}

// handle advances the clock to ev and runs it.
func (s *sim) handle(ev event) error {
	s.clock.now = ev.at
	s.countPulled(ev.at)
	switch ev.kind {
	case evArrival:
		return s.arrive()
	case evScrape:
		s.scrape(int(ev.server))
	case evEngine:
		return s.step(int(ev.server), ev.version)
	case evTimeout:
		s.timeout(ev.id)
	case evExpire:
		s.expire(ev.id)
	case evPrefillTimeout:
		s.abandonPrefill(ev.id)
	case evBatch:
		s.closeBatch(uint8(ev.server))
	case evEvict:
		s.evict(ev.id)
	case evRecheck:
		s.recheck(int(ev.server))
	case evRetry:
		s.resend(ev.id)
	}
	return nil
}

func (s *sim) now() time.Duration { return s.clock.now }

func (s *sim) interarrival() time.Duration {
	return s.now() + time.Duration(s.rng.ExpFloat64()/s.spec.QPS*float64(time.Second))
}

// arrive generates, routes and submits one request and schedules the next.
func (s *sim) arrive() error {
	p, err := s.src.next(s.rng)
	if err != nil {
		return err
	}
	now := s.now()
	f := flight{p: p, arrival: now, measured: now >= s.start && now < s.end}
	if len(s.spec.Classes) > 0 {
		f.class = pickClass(s.spec.Classes, s.classRng)
	}
	s.open++
	s.send(f)
	if next := s.nextArrival(); next < s.end {
		s.events.push(event{at: next, kind: evArrival})
	} else {
		s.arriving = false
	}
	return nil
}

// send makes f, a request or an attempt of one, reach the EPP now: it
// gets its ID and replica, then is routed or held.
func (s *sim) send(f flight) {
	id := uint64(len(s.flights))
	f.id, f.sent, f.server, f.prefill, f.source = id, s.now(), -1, -1, -1
	f.promptN, f.outN = int32(len(f.p.tokens)), int32(f.p.maxTokens)
	if n := s.spec.Replicas; n > 1 { // the proxy's round-robin over replicas
		f.replica = uint8(id % uint64(n))
	}
	s.flights = append(s.flights, f)
	s.admit(&s.flights[id])
	s.release()
}

// dispatch routes f and submits it to the chosen engine, or starts its
// prefill on the prefill server the EPP named.
func (s *sim) dispatch(f *flight) {
	if s.hold(f) {
		return
	}
	i, err := s.router.route(f)
	if err != nil {
		s.fail(f, fmt.Errorf("route: %w", err))
		return
	}
	f.server = int32(i)
	s.track(f)
	if f.prefill < 0 || !s.startPrefill(f) {
		if err := s.submit(f, false); err != nil {
			s.router.complete(f, request.Usage{}, scheduler.TerminationError)
			s.fail(f, err)
			return
		}
	}
	if s.spec.Timeout > 0 && !f.waited { // a held request has its timeout already
		s.events.push(event{at: f.arrival + s.spec.Timeout, kind: evTimeout, id: f.id})
	}
}

// submit sends f to its server, as the request itself or (remote) as the
// decode of a prefill done elsewhere.
func (s *sim) submit(f *flight, remote bool) error {
	i := int(f.server)
	req := engine.Request{ID: f.id, Tokens: f.p.tokens, MaxTokens: f.p.maxTokens, LoRA: f.p.lora, RemotePrefill: remote,
		Media: f.p.media, Priority: s.enginePriority(f)}
	if remote {
		req.TransferPerToken = s.transferPrice(int(f.prefill), i)
	} else {
		req.PullTokens, req.TransferPerToken = s.pullTokens(f, i)
	}
	if err := s.servers[i].eng.Submit(req, s.now()); err != nil {
		return err
	}
	s.reschedule(i)
	return nil
}

func (s *sim) fail(f *flight, err error) {
	s.endLease(f)
	f.status, f.p, f.state, f.req = flightFailed, nil, nil, nil
	s.open--
	s.failures.add(err)
}

// reschedule makes sure server i's next engine event is queued.
func (s *sim) reschedule(i int) {
	srv := &s.servers[i]
	t, ok := srv.eng.NextEventTime()
	if !ok {
		srv.scheduled = false
		return
	}
	if srv.scheduled && srv.wake == t {
		return
	}
	srv.version++
	srv.wake, srv.scheduled = t, true
	s.events.push(event{at: t, kind: evEngine, server: int32(i), version: srv.version})
}

// step runs server i's engine to now and delivers the tokens it produced.
func (s *sim) step(i int, version uint32) error {
	srv := &s.servers[i]
	if version != srv.version {
		return nil // superseded
	}
	srv.scheduled = false
	events := srv.eng.Step(s.now())
	for _, ev := range events {
		s.token(i, ev)
	}
	if t, ok := srv.eng.NextEventTime(); ok && t <= s.now() && len(events) == 0 {
		if srv.stalls++; srv.stalls > maxStalls {
			return fmt.Errorf("server %d: engine makes no progress at %s", i, s.now())
		}
	} else {
		srv.stalls = 0
	}
	s.reschedule(i)
	return nil
}

// token delivers one output token of a request from server i.
func (s *sim) token(i int, ev engine.Event) {
	f := &s.flights[ev.ID]
	if f.status == flightPrefilling && i == int(f.prefill) && ev.Done {
		s.prefilled(f, ev)
		return
	}
	if f.status != flightRunning || i != int(f.server) {
		return
	}
	if ev.Time >= s.start && ev.Time < s.end {
		s.windowTokens++
	}
	if ev.Token == 1 {
		f.ttft, f.cached = ev.Time-f.arrival, int32(ev.Cached)
		s.router.firstToken(f)
	}
	if !ev.Done {
		return
	}
	f.end, f.status = ev.Time, flightDone
	s.open--
	if ev.Time >= s.start && ev.Time < s.end {
		s.windowDone++
	}
	usage := request.Usage{
		PromptTokens: int(f.promptN), CompletionTokens: int(f.outN),
		TotalTokens: int(f.promptN + f.outN), CachedTokens: int(f.cached),
	}
	s.router.complete(f, usage, scheduler.TerminationNatural)
	if f.measured && f.remote() {
		s.servers[f.prefill].work += int64(f.promptN - f.prefillCached)
		s.servers[f.server].work += int64(f.outN)
	} else if f.measured {
		s.servers[f.server].work += int64(f.promptN - f.cached + f.outN)
	}
	f.p = nil
	s.endLease(f) // before the release, as the live pass ends it before waking the dispatcher
	s.release()
}

// timeout cancels a request whose client gave up.
func (s *sim) timeout(id uint64) {
	f := &s.flights[id]
	if f.status == flightQueued {
		s.leaveQueue(f, flightTimedOut, nil)
		return
	}
	s.abort(f, flightTimedOut)
}

// abort ends f with status on the server running its current phase, as a
// client disconnect does; it does nothing to a request not running.
func (s *sim) abort(f *flight, status flightStatus) {
	at := f.server // the server running the request's current phase
	switch f.status {
	case flightRunning:
	case flightPrefilling:
		at = f.prefill
	default:
		return
	}
	s.servers[at].eng.Cancel(f.id)
	f.status, f.p = status, nil
	s.open--
	cause := scheduler.TerminationClientDisconnect
	if status == flightEvicted {
		cause = scheduler.TerminationEvicted
	}
	s.router.complete(f, request.Usage{}, cause)
	s.endLease(f)
	s.reschedule(int(at))
	s.release()
}
