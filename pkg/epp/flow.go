package epp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

// sloTTFTHeaders carry a request's time-to-first-token objective in
// milliseconds (llm-d's name first, GIE's as the alias).
var sloTTFTHeaders = []string{"x-llm-d-slo-ttft-ms", "x-slo-ttft-ms"}

// flowControl is the EPP's flow control, for its whole life: one
// controller, or one per pool for an EPP serving several (each pool queues
// its own requests and is rated on its own endpoints). A config reload
// reconfigures them in place, so requests waiting when the config changes
// stay in the same queue, in order, under the new limits and detector.
type flowControl struct {
	store    *datastore.Store
	metrics  *flowMetrics
	several  bool
	members  func(all []*endpoint.Endpoint, pool string) []*endpoint.Endpoint
	capacity *flowCapacity // nil until registerCapacity

	// What a pool's controller is made and configured with, kept for
	// pools that appear later (found at run time, or named by a reloaded
	// endpoints file).
	evictions          *evictionSeries
	refresh, staleness time.Duration

	mu     sync.RWMutex
	pools  []*flowPool // one, named by the pool label, unless several
	byName map[string]*flowPool
	built  *config.Built   // the config the controllers run with; nil before configure
	ctx    context.Context // Start's, while it runs
	// running counts the controllers' goroutines.
	running sync.WaitGroup
}

// flowPool is one pool's controller and in-flight eviction.
type flowPool struct {
	name  string
	gate  *flowGate
	evict *flowEviction
}

// newFlowControl makes one controller per pool when several pools may be
// served (pools names them, or they are found at run time: several is
// set; members then gives a pool's endpoints of a snapshot), else one
// under the name label.
func newFlowControl(store *datastore.Store, metrics *flowMetrics, evictions *evictionSeries, refresh, staleness time.Duration,
	label string, pools []string, several bool, members func([]*endpoint.Endpoint, string) []*endpoint.Endpoint) (*flowControl, error) {
	f := &flowControl{store: store, metrics: metrics, byName: map[string]*flowPool{}, members: members, several: several || len(pools) > 1,
		evictions: evictions, refresh: refresh, staleness: staleness}
	names := []string{label}
	if f.several {
		names = pools
	}
	for _, name := range names {
		if _, err := f.addPool(name); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// addPool makes name's controller; f.mu is held or f not yet shared.
func (f *flowControl) addPool(name string) (*flowPool, error) {
	fp := &flowPool{name: name}
	// Configured for real by configure; until then nothing enters it.
	ctl, err := flowcontrol.New(flowcontrol.Config{Saturation: func(time.Time) float64 { return 0 }, PoolSize: func() int { return len(f.endpoints(fp)) }})
	if err != nil {
		return nil, err
	}
	if fp.evict, err = newFlowEviction(f.evictions, name, f.refresh, f.staleness); err != nil {
		return nil, fmt.Errorf("eviction metrics: %w", err)
	}
	fp.gate = &flowGate{ctl: ctl, metrics: f.metrics, direct: directPass{ctl}, evict: fp.evict}
	f.pools = append(f.pools, fp)
	f.byName[name] = fp
	return fp, nil
}

// pool returns name's controller, making, configuring and starting it
// when the pool is new (several pools only).
func (f *flowControl) pool(name string) (*flowPool, error) {
	f.mu.RLock()
	fp := f.byName[name]
	f.mu.RUnlock()
	if fp != nil {
		return fp, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fp := f.byName[name]; fp != nil {
		return fp, nil
	}
	fp, err := f.addPool(name)
	if err != nil {
		return nil, err
	}
	if f.built != nil {
		if err := f.configurePool(fp, f.built); err != nil {
			return nil, err
		}
	}
	if f.ctx != nil {
		f.startPool(f.ctx, fp)
	}
	return fp, nil
}

// each calls fn on every pool's controller, in creation order.
func (f *flowControl) each(fn func(*flowPool)) {
	f.mu.RLock()
	pools := slices.Clone(f.pools)
	f.mu.RUnlock()
	for _, fp := range pools {
		fn(fp)
	}
}

// endpoints are fp's pool's endpoints now.
func (f *flowControl) endpoints(fp *flowPool) []*endpoint.Endpoint {
	all := f.store.Snapshot()
	if !f.several {
		return all
	}
	return f.members(all, fp.name)
}

// registerCapacity serves llm-d's utilization gauges of the controllers.
func (f *flowControl) registerCapacity(reg prometheus.Registerer) error {
	f.capacity = newFlowCapacity(f)
	return reg.Register(f.capacity)
}

// debugState is /debug/flowcontrol's body.
func (f *flowControl) debugState(enabled bool) flowControlState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := flowControlState{Enabled: enabled}
	if len(f.pools) > 0 {
		st.State, st.Eviction = f.pools[0].gate.ctl.State(), f.pools[0].evict.state()
	}
	if f.several {
		st.Pools = map[string]poolFlowState{}
		for _, fp := range f.pools {
			st.Pools[fp.name] = poolFlowState{State: fp.gate.ctl.State(), Eviction: fp.evict.state()}
		}
	}
	return st
}

// configure applies b's flow-control plan and returns the admission new
// requests pass through, or nil when flow control is off: requests then go
// straight to scheduling, while any still waiting are released as before,
// and the saturation gauge shows the legacy detector's rating.
func (f *flowControl) configure(b *config.Built) (server.Admission, error) {
	plan := b.FlowControl()
	if f.capacity != nil {
		f.capacity.enabled.Store(plan != nil)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fp := range f.pools {
		if err := f.configurePool(fp, b); err != nil {
			return nil, err
		}
	}
	f.built = b
	switch {
	case plan == nil:
		return nil, nil
	case !f.several:
		return f.pools[0].gate, nil
	}
	return poolGates{f}, nil
}

// configurePool applies b's plan to one pool's controller (nil plan:
// eviction off, and the saturation gauge shows the legacy detector's
// rating of the pool).
func (f *flowControl) configurePool(fp *flowPool, b *config.Built) error {
	plan := b.FlowControl()
	if plan == nil {
		fp.evict.configure(nil)
		if d := b.Scheduler.SaturationDetector(); d != nil {
			f.metrics.watchSaturation(fp.name, func(now time.Time) float64 { return d.Saturation(f.endpoints(fp), now) }, d,
				f.store.Snapshot)
		}
		return nil
	}
	detector := plan.Detector
	cfg := flowcontrol.Config{
		MaxRequests: plan.MaxRequests, MaxBytes: plan.MaxBytes,
		DefaultTTL: plan.DefaultTTL, NoEndpointTTL: plan.NoEndpointTTL,
		DefaultBand: band(plan.DefaultBand), Bands: map[int]flowcontrol.Band{},
		UsageLimit: plan.UsageLimit,
		Saturation: func(now time.Time) float64 {
			if detector == nil {
				return 0
			}
			return detector.Saturation(f.endpoints(fp), now)
		},
		PoolSize:        func() int { return len(f.endpoints(fp)) },
		OnEnqueue:       f.metrics.enqueued,
		OnDispatchCycle: f.metrics.cycle,
		OnBlocked:       fp.evict.configure(plan),
	}
	if plan.NegativeBand != nil {
		nb := band(*plan.NegativeBand)
		cfg.NegativeBand = &nb
	}
	for p, b := range plan.Bands {
		cfg.Bands[p] = band(b)
	}
	if err := fp.gate.ctl.Reconfigure(cfg); err != nil {
		return err
	}
	f.metrics.watchSaturation(fp.name, cfg.Saturation, detector, f.store.Snapshot)
	return nil
}

// poolGates is the admission of an EPP serving several pools: each request
// passes its own pool's gate, made when the pool's first request comes.
type poolGates struct{ f *flowControl }

func (g poolGates) Admit(ctx context.Context, req *scheduler.Request, bodyBytes int) (server.Admitted, error) {
	if req.Pool == "" { // a bodyless request, or no pool known yet: nothing to rate
		return ungated{}, nil
	}
	fp, err := g.f.pool(req.Pool)
	if err != nil {
		return nil, err
	}
	return fp.gate.Admit(ctx, req, bodyBytes)
}

// ungated is the pass of a request no gate holds.
type ungated struct{}

func (ungated) Scheduled() {}
func (ungated) Released()  {}

func band(b config.BandPlan) flowcontrol.Band {
	return flowcontrol.Band{MaxRequests: b.MaxRequests, MaxBytes: b.MaxBytes, Fairness: b.Fairness, Ordering: b.Ordering}
}

// Start runs the dispatcher until ctx ends; then whatever still waits is
// refused as the EPP shuts down.
func (f *flowControl) Start(ctx context.Context) error {
	f.mu.Lock()
	f.ctx = ctx
	for _, fp := range f.pools {
		f.startPool(ctx, fp)
	}
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	f.ctx = nil // no pool starts after this
	f.mu.Unlock()
	f.running.Wait()
	return nil
}

// startPool runs fp's dispatcher and eviction sweeps until ctx ends; f.mu
// is held.
func (f *flowControl) startPool(ctx context.Context, fp *flowPool) {
	f.running.Add(2)
	go func() {
		defer f.running.Done()
		fp.evict.sweepEvery(ctx, time.Second)
	}()
	go func() {
		defer f.running.Done()
		fp.gate.ctl.Start(ctx)
	}()
}

// flowGate is one controller as the server's admission: it turns the
// controller's refusals into answers and keeps the flow-control metrics.
type flowGate struct {
	ctl     *flowcontrol.Controller
	metrics *flowMetrics
	// direct is the pass of every request that did not wait.
	direct directPass
	// evict, when on, makes every pass revocable (in-flight eviction).
	evict *flowEviction
}

// directPass is the pass of a request that went straight through: nobody
// waits for it to be scheduled, but its end may let the next one go.
type directPass struct{ ctl *flowcontrol.Controller }

func (p directPass) Scheduled() {}
func (p directPass) Released()  { p.ctl.Wake() }

// queuedPass is the pass of a request released from a queue: the
// dispatcher waits for it to be scheduled before judging the next one.
type queuedPass struct{ directPass }

func (p queuedPass) Scheduled() { p.ctl.Settled() }

var _ server.Admission = (*flowGate)(nil)

// Admit implements server.Admission.
func (g *flowGate) Admit(ctx context.Context, req *scheduler.Request, bodyBytes int) (server.Admitted, error) {
	r := flowcontrol.Request{FlowID: req.FairnessID, Priority: req.Priority, Bytes: int64(bodyBytes)}
	start := time.Now()
	if v := firstValue(req.Headers, sloTTFTHeaders); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			r.SLODeadline = start.Add(time.Duration(ms * float64(time.Millisecond)))
		}
	}
	series := g.metrics.of(req)
	series.queued(1, r.Bytes)
	queued, err := g.ctl.AdmitQueued(ctx, r)
	series.queued(-1, -r.Bytes)
	if err != nil {
		var fe *flowcontrol.Error
		outcome := flowcontrol.Outcome(-1)
		if errors.As(err, &fe) {
			outcome = fe.Outcome
		}
		g.metrics.finished(series, outcome, time.Since(start))
		return nil, refusal(err, fe)
	}
	g.metrics.finished(series, flowcontrol.Dispatched, time.Since(start))
	if queued {
		return g.evict.pass(queuedPass{g.direct}, req.ID, req.Priority), nil
	}
	return g.evict.pass(g.direct, req.ID, req.Priority), nil
}

// refusal maps a controller refusal to the answer: a full queue or an
// expired wait while endpoints exist is "try later" (429, as llm-d
// answers); a client gone, shutdown and no endpoints are 503.
func refusal(err error, fe *flowcontrol.Error) error {
	if fe == nil {
		return err
	}
	r := &server.Refusal{Code: http.StatusServiceUnavailable, Err: err}
	switch {
	case fe.Outcome == flowcontrol.RejectedCapacity:
		r.Code, r.Reason = http.StatusTooManyRequests, "rejected-saturated"
	case fe.Outcome == flowcontrol.EvictedContextCancelled:
		r.Reason = "rejected-context-cancelled"
	case fe.Outcome == flowcontrol.RejectedShuttingDown:
		r.Reason = "rejected-shutting-down"
	case fe.Outcome == flowcontrol.EvictedNoEndpoints, fe.Outcome == flowcontrol.RejectedNoEndpoints,
		fe.Outcome == flowcontrol.EvictedTTL && fe.NoEndpoints:
		r.Reason = "rejected-no-endpoints"
	case fe.Outcome == flowcontrol.EvictedTTL:
		r.Code, r.Reason = http.StatusTooManyRequests, "rejected-ttl-expired"
	default:
		r.Code, r.Reason = http.StatusInternalServerError, "internal-error"
	}
	return r
}

func firstValue(h map[string]string, names []string) string {
	for _, n := range names {
		if v := h[n]; v != "" {
			return v
		}
	}
	return ""
}
