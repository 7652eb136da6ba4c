package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/disagg"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/p2psource"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// router decides where each request goes and hears how it went. A run
// builds a fresh router, so state never leaks between runs.
type router interface {
	// route returns the index of the server that serves f (its decode
	// server when the EPP disaggregated it, and then sets f.prefill).
	route(f *flight) (int, error)
	// firstToken reports the response's start (headers and first chunk).
	firstToken(f *flight)
	// complete reports the end of a routed request exactly once: finished
	// with usage, or cancelled (client timeout, rejected submission).
	complete(f *flight, usage request.Usage, cause scheduler.TerminationCause)
}

// routerEnv is what a policy needs to build its router.
type routerEnv struct {
	endpoints []*endpoint.Endpoint
	clock     scheduler.Clock
	seed      uint64
	classes   []Class
	// replication is the run's EPP replicas, defaults applied.
	replication Replication
	// kv carries KV events to the configs' precise producers.
	kv *kvHub
}

// epoch is virtual time zero on the plugins' clock.
var epoch = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// virtualClock is the plugins' clock: the simulation's current instant.
// A run is single-threaded, so it needs no locking.
type virtualClock struct{ now time.Duration }

func (c *virtualClock) Now() time.Time { return epoch.Add(c.now) }

// schedRouter runs a real OpenEPP scheduler built from a config file, with
// every lifecycle hook a live EPP would call.
type schedRouter struct {
	sched *scheduler.Scheduler
	eps   []*endpoint.Endpoint
	index map[*endpoint.Endpoint]int
	// hostPorts finds the server a prefiller header names.
	hostPorts map[string]int
	ctx       context.Context
	// admission is the config's flow control, nil without the gate.
	admission *admission
	classes   []Class
	// built is the config's instances (replica sync finds its producers).
	built *config.Built
	// routing is the flight being scheduled, whose tokens a token
	// producer reads.
	routing *flight
	// batchers are the config's batching producers and window their
	// longest window (batch.go).
	batchers []scheduler.Batcher
	window   time.Duration
}

// newSchedRouter loads and builds yaml with the in-tree plugins plus extra.
func newSchedRouter(yaml []byte, reg *scheduler.Registry, env routerEnv) (*schedRouter, error) {
	cfg, err := config.Load(yaml)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	eps := env.endpoints
	built, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg, Seed: env.seed, Handle: &scheduler.Handle{
		Log: logr.Discard(), Clock: env.clock, StalenessThreshold: 2 * time.Second,
		Endpoints: func() []*endpoint.Endpoint { return eps },
	}})
	if err != nil {
		return nil, fmt.Errorf("build config: %w", err)
	}
	adm, err := newAdmission(built.FlowControl(), eps, env.clock)
	if err != nil {
		return nil, err
	}
	r := &schedRouter{sched: built.Scheduler, eps: eps, index: make(map[*endpoint.Endpoint]int, len(eps)),
		hostPorts: make(map[string]int, len(eps)), ctx: context.Background(), admission: adm, classes: env.classes,
		built: built}
	for i, e := range eps {
		r.index[e] = i
		r.hostPorts[e.HostPort] = i
	}
	r.batchers = built.Scheduler.Batchers()
	for _, b := range r.batchers {
		r.window = max(r.window, b.Window())
	}
	if env.kv != nil {
		env.kv.join(built, r.tokensOf)
	}
	return r, nil
}

// tokensOf gives a token producer the tokens of the flight being routed.
func (r *schedRouter) tokensOf(req *scheduler.Request) ([]uint32, bool) {
	if f := r.routing; f != nil && f.req == req {
		return f.p.tokens, len(f.p.tokens) > 0
	}
	return nil, false
}

func (r *schedRouter) route(f *flight) (int, error) {
	f.state = r.sched.NewState()
	f.req = &scheduler.Request{
		ID: strconv.FormatUint(f.id, 10), Model: f.p.body.Model, IncomingModel: f.p.body.Model, Body: f.p.body,
		FairnessID: "default-flow",
	}
	if len(r.classes) > 0 {
		c := r.classes[f.class]
		f.req.Priority, f.req.FairnessID = c.Priority, c.Name
		f.req.Headers = c.sloHeaders()
	}
	r.routing = f
	res, err := r.sched.Schedule(r.ctx, f.state, f.req, r.eps)
	r.routing = nil
	if err != nil {
		return -1, err
	}
	target := res.Targets()[0]
	i, ok := r.index[target]
	if !ok {
		return -1, fmt.Errorf("scheduler picked %s, which is not in the pool", target)
	}
	r.sched.PreRequest(r.ctx, f.state, f.req, res)
	for _, named := range [...]struct {
		header string
		server *int32
	}{{disagg.PrefillerHeader, &f.prefill}, {p2psource.Header, &f.source}} {
		addr, ok := res.Headers[named.header]
		if !ok {
			continue
		}
		p, known := r.hostPorts[addr]
		if !known {
			// PreRequest ran: release the request as a live EPP would.
			f.server = int32(i)
			r.complete(f, request.Usage{}, scheduler.TerminationError)
			return -1, fmt.Errorf("%s names %q, which is not in the pool", named.header, addr)
		}
		*named.server = int32(p)
	}
	return i, nil
}

func (r *schedRouter) firstToken(f *flight) {
	if f.state == nil {
		return
	}
	resp := &scheduler.Response{StatusCode: 200, Streaming: true, Served: r.eps[f.server].HostPort}
	r.sched.ResponseHeaders(r.ctx, f.state, f.req, resp)
	if r.sched.WantsResponseChunks() {
		resp.BodyBytes = len(firstChunk)
		r.sched.ResponseChunk(r.ctx, f.state, f.req, resp, firstChunk)
	}
}

// firstChunk stands for the first server-sent event of a streamed
// response, which a live EPP sees with the first token.
var firstChunk = []byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n")

func (r *schedRouter) complete(f *flight, usage request.Usage, cause scheduler.TerminationCause) {
	if f.state == nil {
		return
	}
	natural := cause == scheduler.TerminationNatural
	resp := &scheduler.Response{
		StatusCode: 200, Streaming: true, Served: r.eps[f.server].HostPort,
		Usage: usage, UsageKnown: natural, EndOfStream: natural, Cancelled: !natural, Termination: cause,
	}
	r.sched.ResponseComplete(r.ctx, f.state, f.req, resp)
	f.state, f.req = nil, nil // let the per-request state go
}

// baseRouter is the no-op lifecycle of routers that keep no request state.
type baseRouter struct{}

func (baseRouter) firstToken(*flight)                                          {}
func (baseRouter) complete(*flight, request.Usage, scheduler.TerminationCause) {}

// roundRobin is the Kubernetes Service baseline: servers in turn.
type roundRobin struct {
	baseRouter
	n, next int
}

func (r *roundRobin) route(*flight) (int, error) {
	i := r.next
	r.next = (r.next + 1) % r.n
	return i, nil
}

// randomRouter picks a server uniformly at random.
type randomRouter struct {
	baseRouter
	n   int
	rng *rand.Rand
}

func (r *randomRouter) route(*flight) (int, error) { return r.rng.IntN(r.n), nil }

// leastQueue picks the server with the fewest waiting requests in its last
// scraped metrics, ties broken at random: the load-only baseline, with the
// scrape lag a real router has.
type leastQueue struct {
	baseRouter
	eps []*endpoint.Endpoint
	rng *rand.Rand
}

func (r *leastQueue) route(*flight) (int, error) {
	best, ties, bestQ := 0, 0, 0
	for i, e := range r.eps {
		q := e.Metrics().WaitingQueueSize
		switch {
		case i == 0 || q < bestQ:
			best, ties, bestQ = i, 1, q
		case q == bestQ:
			ties++
			if r.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best, nil
}

// newRand returns a deterministic generator for seed.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)) }
