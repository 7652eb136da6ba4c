package epp

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/eviction"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/server"
)

// flowEviction is in-flight eviction for one flow controller (one per
// pool): the tracker of dispatched requests and the reclaimer that revokes
// them. It exists for the EPP's life; a reload turns it on or off (on:
// passes track their requests and the dispatcher reports blocking to it).
type flowEviction struct {
	tracker   *eviction.Tracker
	reclaimer *eviction.Reclaimer
	metrics   *evictionMetrics
	on        atomic.Bool
	// refresh and staleness size the grace of a scraped detector.
	refresh, staleness time.Duration
}

// newFlowEviction is one pool's eviction, reporting to series.
func newFlowEviction(series *evictionSeries, pool string, refresh, staleness time.Duration) (*flowEviction, error) {
	m, err := series.forPool(pool)
	if err != nil {
		return nil, err
	}
	t := eviction.NewTracker(nil, nil)
	return &flowEviction{tracker: t, reclaimer: eviction.NewReclaimer(t, eviction.Settings{Observer: m}), metrics: m,
		refresh: refresh, staleness: staleness}, nil
}

// configure applies plan (nil: flow control off) and returns the hook the
// dispatcher calls when blocked, nil when eviction is off.
func (e *flowEviction) configure(plan *config.FlowPlan) func(*flowcontrol.Blocked) {
	if e == nil || plan == nil || !plan.Eviction {
		if e != nil {
			e.on.Store(false)
		}
		return nil
	}
	countsInFlight := plan.Detector != nil && plan.Detector.TypedName().Type == filters.ConcurrencyDetectorType
	e.reclaimer.Configure(eviction.Settings{Grace: eviction.GraceFor(countsInFlight, e.refresh, e.staleness), Observer: e.metrics})
	e.on.Store(true)
	return func(b *flowcontrol.Blocked) { e.reclaimer.Blocked(b) }
}

// pass wraps a flow-control pass so that its request can be revoked, when
// eviction is on.
func (e *flowEviction) pass(p server.Admitted, id string, priority int) server.Admitted {
	if e == nil || !e.on.Load() {
		return p
	}
	return &revocablePass{Admitted: p, tracker: e.tracker, id: id, priority: priority}
}

// state is the debug page's view, nil while eviction is off.
// sweepEvery sweeps the reclaimer until ctx ends, so a revocation whose
// stream never ends is counted timed out on time, and the pending reclaim
// drops, even when no request waits to trigger a sweep.
func (e *flowEviction) sweepEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.reclaimer.Sweep(now)
		}
	}
}

func (e *flowEviction) state() *eviction.State {
	if e == nil || !e.on.Load() {
		return nil
	}
	s := e.reclaimer.State(time.Now())
	return &s
}

// revocablePass tracks its request as a lease from dispatch to its end.
type revocablePass struct {
	server.Admitted
	tracker  *eviction.Tracker
	id       string
	priority int
	lease    *eviction.Lease
}

var _ server.Revocable = (*revocablePass)(nil)

// Dispatched implements server.Revocable.
func (p *revocablePass) Dispatched(revoke func()) {
	p.lease = p.tracker.Track(p.id, p.priority, time.Now(), revoke)
}

// Released ends the lease before the controller is woken, so the
// dispatcher's next pass already counts a revocation as confirmed.
func (p *revocablePass) Released() {
	if p.lease != nil {
		p.tracker.End(p.lease, time.Now())
	}
	p.Admitted.Released()
}

// evictionSeries are llm-d's revocation counters, shared by every pool's
// eviction (label inference_pool), and the registry the pools' own gauges
// go to.
type evictionSeries struct {
	reg      prometheus.Registerer
	issued   *prometheus.CounterVec
	outcomes *prometheus.CounterVec
}

func newEvictionSeries(reg prometheus.Registerer) (*evictionSeries, error) {
	s := &evictionSeries{reg: reg,
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_d_epp_flow_control_revocations_issued_total",
			Help: "In-flight evictions issued, by the priority of the demand they free capacity for."}, []string{"priority", "inference_pool"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_d_epp_flow_control_revocations_total",
			Help: "In-flight evictions by outcome: confirmed (the request's stream ended) or timed_out (it did not within 10s); each issued one ends in exactly one."},
			[]string{"outcome", "inference_pool"}),
	}
	for _, c := range []prometheus.Collector{s.issued, s.outcomes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// evictionMetrics are one pool's revocation series.
type evictionMetrics struct {
	*evictionSeries
	pool      string
	target    prometheus.Gauge
	pending   prometheus.Gauge
	confirmed prometheus.Observer
}

// forPool registers pool's gauges (a series per pool: their label is
// constant) and returns its view of the series.
func (s *evictionSeries) forPool(pool string) (*evictionMetrics, error) {
	poolLabel := prometheus.Labels{"inference_pool": pool}
	m := &evictionMetrics{evictionSeries: s, pool: pool,
		target: prometheus.NewGauge(prometheus.GaugeOpts{Name: "llm_d_epp_flow_control_reclaim_target", ConstLabels: poolLabel,
			Help: "Last reclamation deficit computed (saturation minus the blocked band's ceiling)."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "llm_d_epp_flow_control_pending_reclaim", ConstLabels: poolLabel,
			Help: "Saturation credited to evictions whose freed capacity the detector may not show yet (outstanding and cooling)."}),
	}
	confirm := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "llm_d_epp_flow_control_revocation_confirmation_seconds",
		ConstLabels: poolLabel, Help: "Time from an in-flight eviction to the end of the request's stream.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	m.confirmed = confirm
	for _, c := range []prometheus.Collector{m.target, m.pending, confirm} {
		if err := s.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *evictionMetrics) Issued(priority int) {
	m.issued.WithLabelValues(strconv.Itoa(priority), m.pool).Inc()
}

func (m *evictionMetrics) Retired(outcome string, took time.Duration) {
	m.outcomes.WithLabelValues(outcome, m.pool).Inc()
	if outcome == eviction.Confirmed {
		m.confirmed.Observe(took.Seconds())
	}
}

func (m *evictionMetrics) Target(deficit float64) { m.target.Set(deficit) }
func (m *evictionMetrics) Pending(sum float64)    { m.pending.Set(sum) }
