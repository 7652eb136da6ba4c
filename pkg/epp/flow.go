package epp

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

// sloTTFTHeaders carry a request's time-to-first-token objective in
// milliseconds (llm-d's name first, GIE's as the alias).
var sloTTFTHeaders = []string{"x-llm-d-slo-ttft-ms", "x-slo-ttft-ms"}

// flowControl owns the flow controllers: the current one, which new
// requests enter, and after a reload the old ones, which stop admitting
// and release what they hold as the pool allows, then exit.
type flowControl struct {
	store   *datastore.Store
	metrics *flowMetrics
	log     logr.Logger

	mu      sync.Mutex
	ctx     context.Context // nil until Start
	current *flowcontrol.Controller
}

// configure builds the admission for b's flow-control plan, or returns nil
// when flow control is off; the saturation gauge then shows the legacy
// detector's rating. The controller starts with Start (or, after a
// reload, at once: see use).
func (f *flowControl) configure(b *config.Built) (*flowGate, error) {
	plan := b.FlowControl()
	if plan == nil {
		if d := b.Scheduler.SaturationDetector(); d != nil {
			f.metrics.watchSaturation(func(now time.Time) float64 { return d.Saturation(f.store.Snapshot(), now) })
		}
		return nil, nil
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
			return detector.Saturation(f.store.Snapshot(), now)
		},
		PoolSize: func() int { return len(f.store.Snapshot()) },
	}
	if plan.NegativeBand != nil {
		nb := band(*plan.NegativeBand)
		cfg.NegativeBand = &nb
	}
	for p, b := range plan.Bands {
		cfg.Bands[p] = band(b)
	}
	ctl, err := flowcontrol.New(cfg)
	if err != nil {
		return nil, err
	}
	f.metrics.watchSaturation(cfg.Saturation)
	return &flowGate{ctl: ctl, metrics: f.metrics, direct: directPass{ctl}}, nil
}

func band(b config.BandPlan) flowcontrol.Band {
	return flowcontrol.Band{MaxRequests: b.MaxRequests, MaxBytes: b.MaxBytes, Fairness: b.Fairness, Ordering: b.Ordering}
}

// use makes g the controller new requests enter (nil: none) and drains the
// one it replaces.
func (f *flowControl) use(g *flowGate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.current
	f.current = nil
	if g != nil {
		f.current = g.ctl
		if f.ctx != nil {
			go g.ctl.Start(f.ctx)
		}
	}
	if old != nil {
		old.Drain()
	}
}

// Start runs the controllers until ctx ends; then whatever still waits is
// refused as the EPP shuts down.
func (f *flowControl) Start(ctx context.Context) error {
	f.mu.Lock()
	f.ctx = ctx
	if f.current != nil {
		go f.current.Start(ctx)
	}
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current != nil {
		f.current.Stop()
	}
	return nil
}

// flowGate is one controller as the server's admission: it turns the
// controller's refusals into answers and keeps the flow-control metrics.
type flowGate struct {
	ctl     *flowcontrol.Controller
	metrics *flowMetrics
	// direct is the pass of every request that did not wait.
	direct directPass
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
		return queuedPass{g.direct}, nil
	}
	return g.direct, nil
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
	case fe.Outcome == flowcontrol.EvictedNoEndpoints, fe.Outcome == flowcontrol.EvictedTTL && fe.NoEndpoints:
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
