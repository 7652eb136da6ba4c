package filters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// UtilizationDetectorType is the type name of UtilizationDetector.
const UtilizationDetectorType = "utilization-detector"

// UtilizationParams are the saturation thresholds. The filter role compares
// against thresholds raised by headroom; Saturation uses them as given.
type UtilizationParams struct {
	QueueDepthThreshold       int     `json:"queueDepthThreshold" doc:"waiting requests at which an endpoint is saturated; >= 1" default:"5"`
	KVCacheUtilThreshold      float64 `json:"kvCacheUtilThreshold" doc:"KV-cache usage fraction at which an endpoint is saturated; in (0, 1]" default:"0.8"`
	MetricsStalenessThreshold string  `json:"metricsStalenessThreshold" doc:"metrics older than this (Go duration; at least two scrape intervals) count as saturated; > 0" default:"200ms"`
	Headroom                  float64 `json:"headroom" doc:"fraction by which the filter raises both thresholds; >= 0" default:"0"`
	StalenessPolicy           string  `json:"stalenessPolicy" doc:"how Saturation counts an endpoint with stale or missing metrics (llm-d): saturated (it counts 1.0, so a pool whose scrapes all fail holds every request) or ignore (left out of the mean; a pool with no fresh endpoint reads 0 and dispatches); the filter role drops stale endpoints either way" default:"saturated"`
	// CountUnscrapedDispatches is an OpenEPP extension (nil: on, unless
	// upstream-compatible scoring).
	CountUnscrapedDispatches *bool `json:"countUnscrapedDispatches" doc:"Saturation adds to each endpoint's scraped queue the requests this EPP sent it after that scrape, so flow control releasing requests between two scrapes sees them (false: the scraped queue alone, as upstream)" default:"true"`
}

// Staleness policies of UtilizationParams.StalenessPolicy.
const (
	StalenessSaturated = "saturated"
	StalenessIgnore    = "ignore"
)

// DefaultUtilizationParams returns the upstream defaults.
func DefaultUtilizationParams() UtilizationParams {
	return UtilizationParams{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8, MetricsStalenessThreshold: "200ms",
		StalenessPolicy: StalenessSaturated}
}

// validate reports every invalid field at once.
func (p *UtilizationParams) validate() error {
	var errs []error
	if p.QueueDepthThreshold < 1 {
		errs = append(errs, fmt.Errorf("queueDepthThreshold: must be >= 1, got %d", p.QueueDepthThreshold))
	}
	if !(p.KVCacheUtilThreshold > 0 && p.KVCacheUtilThreshold <= 1) {
		errs = append(errs, fmt.Errorf("kvCacheUtilThreshold: must be in (0, 1], got %v", p.KVCacheUtilThreshold))
	}
	if _, err := p.staleness(); err != nil {
		errs = append(errs, err)
	}
	if !(p.Headroom >= 0) {
		errs = append(errs, fmt.Errorf("headroom: must be >= 0, got %v", p.Headroom))
	}
	if p.StalenessPolicy != "" && p.StalenessPolicy != StalenessSaturated && p.StalenessPolicy != StalenessIgnore {
		errs = append(errs, fmt.Errorf("stalenessPolicy: must be %q or %q, got %q", StalenessSaturated, StalenessIgnore, p.StalenessPolicy))
	}
	return errors.Join(errs...)
}

func (p *UtilizationParams) staleness() (time.Duration, error) {
	d, err := time.ParseDuration(p.MetricsStalenessThreshold)
	if err != nil {
		return 0, fmt.Errorf("metricsStalenessThreshold: %w", err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("metricsStalenessThreshold: must be > 0, got %q", p.MetricsStalenessThreshold)
	}
	return d, nil
}

// UtilizationDetector judges endpoint saturation from scraped metrics. As a
// filter it drops saturated endpoints; Saturation rates the pool for
// admission control (shedding sheddable requests at >= 1).
//
// Inputs: WaitingQueueSize, KVCacheUsagePercent, the metrics' UpdateTime
// against state.Now, and the endpoint's Stale flag. Parameters:
// queueDepthThreshold q (5), kvCacheUtilThreshold k (0.8, in (0,1]),
// metricsStalenessThreshold (200ms), headroom h (0).
//
// Filter rule: an endpoint is saturated when its metrics are stale (older
// than the staleness threshold, or two scrape intervals if longer, at
// state.Now; never scraped; flagged Stale by the scraper; or NaN), or
// queue > q×(1+h), or kv > min(1, k×(1+h)). Saturated endpoints are
// dropped, except that when every endpoint is saturated the input is
// returned unchanged (fail-open: routing somewhere beats failing the request).
type UtilizationDetector struct {
	name      scheduler.TypedName
	params    UtilizationParams
	staleness time.Duration
	// maxQueue and maxKV are the filter limits, headroom applied.
	maxQueue float64
	maxKV    float64
	// dispatches are the requests sent since each endpoint's last scrape;
	// nil: not counted.
	dispatches *inflight.DispatchLog
}

var (
	_ scheduler.Filter             = (*UtilizationDetector)(nil)
	_ scheduler.SaturationDetector = (*UtilizationDetector)(nil)
)

// NewUtilizationDetector validates p and returns the detector.
func NewUtilizationDetector(name string, p UtilizationParams) (*UtilizationDetector, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	staleness, _ := p.staleness()
	return &UtilizationDetector{
		name:       scheduler.TypedName{Type: UtilizationDetectorType, Name: name},
		params:     p,
		staleness:  staleness,
		maxQueue:   float64(p.QueueDepthThreshold) * (1 + p.Headroom),
		maxKV:      min(1, p.KVCacheUtilThreshold*(1+p.Headroom)),
		dispatches: dispatchLogIf(p.CountUnscrapedDispatches),
	}, nil
}

// sentPool recycles Saturation's per-endpoint dispatch counts: flow control
// rates the pool on every request's fast path.
var sentPool = sync.Pool{New: func() any { return new([]float64) }}

// dispatchLogIf is a dispatch log unless count is false.
func dispatchLogIf(count *bool) *inflight.DispatchLog {
	if count != nil && !*count {
		return nil
	}
	return inflight.NewDispatchLog()
}

// UtilizationDetectorFactory builds a UtilizationDetector from config.
func UtilizationDetectorFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultUtilizationParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if h != nil && h.UpstreamScoring && p.CountUnscrapedDispatches == nil {
		off := false
		p.CountUnscrapedDispatches = &off
	}
	d, err := NewUtilizationDetector(name, p)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// UtilizationDetectorRegistration describes the plugin type for the registry.
func UtilizationDetectorRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    UtilizationDetectorType,
		Factory: UtilizationDetectorFactory,
		Params:  UtilizationParams{},
		Summary: "Drops endpoints whose queue or KV cache is over threshold or whose metrics are stale; keeps all if all are saturated. " +
			"As the saturationDetector (the default) it also sheds requests of negative priority with 429 while the mean of " +
			"max(queue/queueDepthThreshold, kv/kvCacheUtilThreshold) over the candidates, stale endpoints counting 1, is >= 1.",
	}
}

// TypedName implements scheduler.Plugin.
func (d *UtilizationDetector) TypedName() scheduler.TypedName { return d.name }

// Filter implements scheduler.Filter.
func (d *UtilizationDetector) Filter(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	now := state.Now
	out := keep(eps, func(e *endpoint.Endpoint) bool { return !d.saturated(e, now) })
	if len(out) == 0 {
		return eps
	}
	return out
}

// saturated applies the filter rule to one endpoint.
func (d *UtilizationDetector) saturated(e *endpoint.Endpoint, now time.Time) bool {
	m := e.Metrics()
	if d.stale(e, m, now) {
		return true
	}
	return float64(m.WaitingQueueSize) > d.maxQueue || m.KVCacheUsagePercent > d.maxKV
}

// stale reports metrics that cannot be trusted: flagged by the scraper, older
// than the threshold at now (never-scraped metrics are infinitely old), or
// carrying a NaN KV usage, which no comparison would catch. The threshold
// is at least two scrape intervals: the scraper lengthens its interval for
// large pools (250 ms at 1,000 endpoints), and a 200 ms threshold would
// then mark a fifth of the pool stale between two on-time scrapes.
func (d *UtilizationDetector) stale(e *endpoint.Endpoint, m *endpoint.Metrics, now time.Time) bool {
	return e.Stale() || m.Age(now) > max(d.staleness, 2*m.ScrapeInterval) || math.IsNaN(m.KVCacheUsagePercent)
}

// Saturation rates the pool at now: the mean over endpoints of
// max(queue/q, kv/k). An endpoint with stale or missing metrics counts as
// 1.0 (stalenessPolicy saturated) or is left out (ignore: a pool with no
// fresh endpoint then reads 0). Values >= 1 mean saturated; values above 1
// measure overload depth. Headroom does not apply. An empty pool reads as
// 1.0, so admission control fails closed when nothing can serve.
func (d *UtilizationDetector) Saturation(eps []*endpoint.Endpoint, now time.Time) float64 {
	if len(eps) == 0 {
		return 1
	}
	var sum float64
	stale := 0
	var sent []float64 // requests sent after each endpoint's scrape
	if d.dispatches != nil {
		buf := sentPool.Get().(*[]float64)
		sent = append((*buf)[:0], make([]float64, len(eps))...)
		d.dispatches.AddUnscraped(eps, sent)
		defer func() { *buf = sent[:0]; sentPool.Put(buf) }()
	}
	for i, e := range eps {
		m := e.Metrics()
		if d.stale(e, m, now) {
			stale++
			continue
		}
		queue := float64(m.WaitingQueueSize)
		if sent != nil {
			queue += sent[i]
		}
		q := queue / float64(d.params.QueueDepthThreshold)
		kv := m.KVCacheUsagePercent / d.params.KVCacheUtilThreshold
		sum += max(q, kv)
	}
	if d.params.StalenessPolicy == StalenessIgnore {
		if stale == len(eps) {
			return 0
		}
		return sum / float64(len(eps)-stale)
	}
	return (sum + float64(stale)) / float64(len(eps))
}

// PreRequest implements scheduler.PreRequest: it notes where the request
// was sent (and its prefill endpoint), for Saturation to count until the
// endpoint's next scrape.
func (d *UtilizationDetector) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	if d.dispatches == nil || state == nil {
		return
	}
	e := inflight.PrimaryTarget(result)
	if e != nil {
		d.dispatches.Add(e, state.Now)
	}
	if pf := result.PrefillTarget(); pf != nil && (e == nil || pf.HostPort != e.HostPort) {
		d.dispatches.Add(pf, state.Now)
	}
}

// StaleAmong is how many of eps Saturation would find with stale or
// missing metrics at now (llm-d's flow_control_stale_endpoints): a pool
// held at 1.0 by failing scrapes shows there, not as load.
func (d *UtilizationDetector) StaleAmong(eps []*endpoint.Endpoint, now time.Time) int {
	n := 0
	for _, e := range eps {
		if d.stale(e, e.Metrics(), now) {
			n++
		}
	}
	return n
}
