package filters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ConcurrencyDetectorType is the type name of ConcurrencyDetector.
const ConcurrencyDetectorType = "concurrency-detector"

// The values of ConcurrencyParams.ConcurrencyMode: which in-flight load is
// compared against which capacity.
const (
	ConcurrencyModeRequests = "requests" // requests against maxConcurrency
	ConcurrencyModeTokens   = "tokens"   // estimated tokens against maxTokenConcurrency
	ConcurrencyModeHybrid   = "hybrid"   // the higher of the two ratios (llm-d)
)

// ConcurrencyParams are the per-endpoint capacities. The filter role
// compares against capacities raised by headroom; Saturation uses them as
// given.
type ConcurrencyParams struct {
	ConcurrencyMode     string  `json:"concurrencyMode" doc:"what is counted: requests, tokens (estimated prompt tokens) or hybrid (the higher ratio of the two)" default:"requests"`
	MaxConcurrency      int     `json:"maxConcurrency" doc:"in-flight requests one endpoint can serve; >= 1" default:"100"`
	MaxTokenConcurrency int     `json:"maxTokenConcurrency" doc:"in-flight estimated prompt tokens one endpoint can serve; >= 1" default:"1000000"`
	Headroom            float64 `json:"headroom" doc:"fraction by which the filter raises both capacities; >= 0" default:"0"`
	// KVCacheTarget is an OpenEPP extension (0 keeps upstream's formula).
	KVCacheTarget float64 `json:"kvCacheTarget" doc:"OpenEPP extension: also rate an endpoint by the KV-cache usage its in-flight requests project (in flight × scraped KV usage per running or waiting request), saturated at this fraction; 0 turns it off; in [0, 1]" default:"0"`
	// RequestTimeout releases requests whose completion was never seen.
	RequestTimeout string `json:"requestTimeout" doc:"in-flight requests older than this (Go duration) are assumed finished: a longer stream stops counting; > 0" default:"1h"`
}

// DefaultConcurrencyParams returns the upstream defaults.
func DefaultConcurrencyParams() ConcurrencyParams {
	return ConcurrencyParams{ConcurrencyMode: ConcurrencyModeRequests, MaxConcurrency: 100, MaxTokenConcurrency: 1000000, RequestTimeout: "1h"}
}

// validate reports every invalid field at once.
func (p *ConcurrencyParams) validate() error {
	var errs []error
	switch p.ConcurrencyMode {
	case ConcurrencyModeRequests, ConcurrencyModeTokens, ConcurrencyModeHybrid:
	default:
		errs = append(errs, fmt.Errorf("concurrencyMode: must be one of %q, %q or %q, got %q",
			ConcurrencyModeRequests, ConcurrencyModeTokens, ConcurrencyModeHybrid, p.ConcurrencyMode))
	}
	if p.MaxConcurrency < 1 {
		errs = append(errs, fmt.Errorf("maxConcurrency: must be >= 1, got %d", p.MaxConcurrency))
	}
	if p.MaxTokenConcurrency < 1 {
		errs = append(errs, fmt.Errorf("maxTokenConcurrency: must be >= 1, got %d", p.MaxTokenConcurrency))
	}
	if !(p.Headroom >= 0) {
		errs = append(errs, fmt.Errorf("headroom: must be >= 0, got %v", p.Headroom))
	}
	if !(p.KVCacheTarget >= 0 && p.KVCacheTarget <= 1) {
		errs = append(errs, fmt.Errorf("kvCacheTarget: must be in [0, 1], got %v", p.KVCacheTarget))
	}
	if _, err := p.timeout(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// timeout parses RequestTimeout, which must be positive.
func (p *ConcurrencyParams) timeout() (time.Duration, error) {
	d, err := time.ParseDuration(p.RequestTimeout)
	switch {
	case err != nil:
		return 0, fmt.Errorf("requestTimeout: %w", err)
	case d <= 0:
		return 0, fmt.Errorf("requestTimeout: must be > 0, got %s", d)
	}
	return d, nil
}

// ConcurrencyDetector judges saturation from the load this EPP itself has
// put on each endpoint, so it needs no scraped metrics and reacts to its own
// routing at once. As a filter it drops endpoints at capacity; Saturation
// rates the pool for admission control and flow control.
//
// Inputs: its own in-flight books (an inflight.Tracker), kept through the
// request hooks. A request counts 1 request and its estimated prompt tokens
// (prompt bytes/4, rounded up; 0 without a body) against its primary target
// from PreRequest, moves to the endpoint the proxy reports as served in
// ResponseHeaders, and releases exactly what it added in ResponseComplete
// (success, failure or cancel). As a safety net for lost completions, Start
// releases requests older than requestTimeout and forgets endpoints that
// left the pool. Parameters: concurrencyMode (requests | tokens | hybrid;
// requests), maxConcurrency R (100), maxTokenConcurrency T (1000000),
// headroom h (0), requestTimeout (1h).
//
// Formula, with r and t an endpoint's in-flight requests and tokens and n
// the number of endpoints given: Saturation = Σr/(n×R) in requests mode,
// Σt/(n×T) in tokens mode, the larger of the two in hybrid mode. Values
// >= 1 mean saturated; above 1 they measure overload depth. Headroom does
// not apply. No endpoints reads as 1.0 (fail closed).
//
// kvCacheTarget k > 0 (an OpenEPP extension, requests and hybrid modes)
// rates each endpoint instead by max(r/R, r×u/(q×k)), where u is its
// scraped KV-cache usage and q its scraped running plus waiting requests
// (the first term alone when q or u is 0, or the metrics are stale), and
// the pool by the mean: what the EPP has in flight, at the KV footprint per
// request the server last showed. A server's KV cache, not its sequence
// limit, is what usually caps how much it runs at once, and this tracks it
// without tuning maxConcurrency to each workload.
//
// Filter rule: an endpoint is dropped when r >= R×(1+h) (requests, hybrid)
// or t >= T×(1+h) (tokens, hybrid), except that when every endpoint would
// be dropped the input is returned unchanged (fail-open).
type ConcurrencyDetector struct {
	name   scheduler.TypedName
	params ConcurrencyParams
	// countRequests and countTokens say which dimensions the mode uses;
	// maxRequests and maxTokens are the filter limits, headroom applied.
	countRequests, countTokens bool
	maxRequests, maxTokens     float64
	inflight.Counter           // the lifecycle hooks and the sweep, over the pool from the handle
}

var (
	_ scheduler.Filter             = (*ConcurrencyDetector)(nil)
	_ scheduler.SaturationDetector = (*ConcurrencyDetector)(nil)
	_ scheduler.PreRequest         = (*ConcurrencyDetector)(nil)
	_ scheduler.ResponseHeaders    = (*ConcurrencyDetector)(nil)
	_ scheduler.ResponseComplete   = (*ConcurrencyDetector)(nil)
	_ scheduler.Runnable           = (*ConcurrencyDetector)(nil)
	_ scheduler.StateDumper        = (*ConcurrencyDetector)(nil)
	_ scheduler.Inheritor          = (*ConcurrencyDetector)(nil) // the Counter: in-flight books survive a reload
)

// NewConcurrencyDetector validates p and returns the detector. Without the
// factory's handle it uses the wall clock and its sweep, knowing no pool,
// applies only requestTimeout.
func NewConcurrencyDetector(name string, p ConcurrencyParams) (*ConcurrencyDetector, error) {
	return newConcurrencyDetector(name, p, nil)
}

// newConcurrencyDetector is NewConcurrencyDetector with h supplying the
// clock, logger and pool (h and any of them may be unset).
func newConcurrencyDetector(name string, p ConcurrencyParams, h *scheduler.Handle) (*ConcurrencyDetector, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	timeout, _ := p.timeout()
	return &ConcurrencyDetector{
		name:          scheduler.TypedName{Type: ConcurrencyDetectorType, Name: name},
		params:        p,
		countRequests: p.ConcurrencyMode != ConcurrencyModeTokens,
		countTokens:   p.ConcurrencyMode != ConcurrencyModeRequests,
		maxRequests:   float64(p.MaxConcurrency) * (1 + p.Headroom),
		maxTokens:     float64(p.MaxTokenConcurrency) * (1 + p.Headroom),
		Counter:       inflight.NewCounter(h, name, timeout, inflight.PromptTokens),
	}, nil
}

// ConcurrencyDetectorFactory builds a ConcurrencyDetector from config.
func ConcurrencyDetectorFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultConcurrencyParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	d, err := newConcurrencyDetector(name, p, h)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// ConcurrencyDetectorRegistration describes the plugin type for the registry.
func ConcurrencyDetectorRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ConcurrencyDetectorType,
		Factory: ConcurrencyDetectorFactory,
		Params:  ConcurrencyParams{},
		Summary: "Counts the requests (or estimated prompt tokens) this EPP has in flight per endpoint; saturation is in-flight load over " +
			"maxConcurrency (or maxTokenConcurrency) × endpoints (with kvCacheTarget, also the KV cache those requests project), " +
			"and the filter drops endpoints at capacity×(1+headroom), keeping all if all are.",
	}
}

// TypedName implements scheduler.Plugin.
func (d *ConcurrencyDetector) TypedName() scheduler.TypedName { return d.name }

// InFlight returns the requests and estimated tokens e has in flight.
func (d *ConcurrencyDetector) InFlight(e *endpoint.Endpoint) (requests int64, tokens int64) {
	r, t := d.Tracker().Of(e.HostPort)
	return int64(r), int64(t)
}

// Filter implements scheduler.Filter.
func (d *ConcurrencyDetector) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if _, busy := d.Tracker().Size(); busy == 0 {
		return eps
	}
	out := keep(eps, func(e *endpoint.Endpoint) bool { return !d.atCapacity(e) })
	if len(out) == 0 {
		return eps
	}
	return out
}

// atCapacity applies the filter rule to one endpoint.
func (d *ConcurrencyDetector) atCapacity(e *endpoint.Endpoint) bool {
	requests, tokens := d.Tracker().Of(e.HostPort)
	return (d.countRequests && float64(requests) >= d.maxRequests) ||
		(d.countTokens && float64(tokens) >= d.maxTokens)
}

// Saturation implements scheduler.SaturationDetector; see the type's
// formula. now is unused: the books are always current.
func (d *ConcurrencyDetector) Saturation(eps []*endpoint.Endpoint, now time.Time) float64 {
	if len(eps) == 0 {
		return 1
	}
	requests, tokens := d.Tracker().Sum(eps)
	n := float64(len(eps))
	var ratio float64
	switch {
	case d.countRequests && d.params.KVCacheTarget > 0:
		ratio = d.kvSaturation(eps, now)
	case d.countRequests:
		ratio = float64(requests) / (n * float64(d.params.MaxConcurrency))
	}
	if d.countTokens {
		ratio = max(ratio, float64(tokens)/(n*float64(d.params.MaxTokenConcurrency)))
	}
	return ratio
}

// kvStaleness bounds the age of the metrics kvSaturation trusts.
const kvStaleness = 2 * time.Second

// kvSaturation is the requests-mode rating with kvCacheTarget (see the type
// comment); eps is not empty.
func (d *ConcurrencyDetector) kvSaturation(eps []*endpoint.Endpoint, now time.Time) float64 {
	var sum float64
	d.Tracker().Each(eps, func(e *endpoint.Endpoint, in, _ int) {
		r := float64(in) / float64(d.params.MaxConcurrency)
		m := e.Metrics()
		if q := m.RunningRequestsSize + m.WaitingQueueSize; q > 0 && m.KVCacheUsagePercent > 0 && !e.Stale() && m.Age(now) <= kvStaleness {
			r = max(r, float64(in)*m.KVCacheUsagePercent/(float64(q)*d.params.KVCacheTarget))
		}
		sum += r
	})
	return sum / float64(len(eps))
}

// ConcurrencyState is what ConcurrencyDetector shows at
// /debug/plugins/state: its in-flight books (the fields of inflight.State:
// requests, tokens, tokensTracked, requestTimeoutSeconds, endpoints,
// moreEndpoints) and the capacities they are judged against, as configured:
// concurrencyMode, maxConcurrency, maxTokenConcurrency, headroom (the
// filter drops an endpoint at capacity × (1 + headroom)) and kvCacheTarget.
type ConcurrencyState struct {
	inflight.State
	ConcurrencyMode     string  `json:"concurrencyMode"`
	MaxConcurrency      int     `json:"maxConcurrency"`
	MaxTokenConcurrency int     `json:"maxTokenConcurrency"`
	Headroom            float64 `json:"headroom"`
	KVCacheTarget       float64 `json:"kvCacheTarget"`
}

// DumpState implements scheduler.StateDumper; it returns a ConcurrencyState.
func (d *ConcurrencyDetector) DumpState() any {
	return ConcurrencyState{
		State:           d.Dump(),
		ConcurrencyMode: d.params.ConcurrencyMode, MaxConcurrency: d.params.MaxConcurrency,
		MaxTokenConcurrency: d.params.MaxTokenConcurrency, Headroom: d.params.Headroom, KVCacheTarget: d.params.KVCacheTarget,
	}
}
