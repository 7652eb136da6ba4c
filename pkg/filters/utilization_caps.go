package filters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Type names of UtilizationCaps: llm-d's utilization-filter and its older
// name, active-request-filter (whose only cap was maxRequests).
const (
	UtilizationCapsType  = "utilization-filter"
	ActiveRequestCapType = "active-request-filter"
)

// The metrics a UtilizationCondition can cap.
const (
	MetricActiveRequests  = "active-requests"      // requests this EPP has in flight to the endpoint
	MetricRunningRequests = "running-requests"     // scraped running requests
	MetricWaitingQueue    = "waiting-queue"        // scraped waiting queue
	MetricKVCache         = "kv-cache-utilization" // scraped KV-cache usage fraction
)

// capRequestTimeout is how long a request may stay in flight before the
// active-requests books assume its completion was lost.
const capRequestTimeout = time.Hour

// UtilizationCondition caps one metric: an endpoint passes it while the
// metric is at most MaxValue.
type UtilizationCondition struct {
	Metric   string   `json:"metric"`
	MaxValue *float64 `json:"maxValue"`
}

// UtilizationCapsParams are llm-d's utilization-filter parameters.
type UtilizationCapsParams struct {
	Conditions []UtilizationCondition `json:"conditions" doc:"caps an endpoint must all meet: {metric: active-requests | running-requests | waiting-queue | kv-cache-utilization, maxValue: >= 0 (<= 1 for kv-cache-utilization)}; at least one" default:"[]"`
	// FallbackOnEmpty keeps the request routable when every endpoint is
	// over a cap.
	FallbackOnEmpty bool `json:"fallbackOnEmpty" doc:"when every endpoint fails a cap, keep them all instead of failing the profile" default:"false"`
	// InFlightLoadProducerName names llm-d's separate in-flight producer;
	// this filter keeps its own books.
	InFlightLoadProducerName string `json:"inFlightLoadProducerName" doc:"accepted and ignored: this filter counts its own in-flight requests" default:""`
}

// ActiveRequestCapParams are active-request-filter's: utilization-filter's
// parameters plus its original single cap.
type ActiveRequestCapParams struct {
	MaxRequests int `json:"maxRequests" doc:"shorthand for the condition {metric: active-requests, maxValue: maxRequests}; > 0 when given" default:"0"`
	UtilizationCapsParams
}

func (p *UtilizationCapsParams) validate() error {
	if len(p.Conditions) == 0 {
		return errors.New("conditions: at least one condition is required")
	}
	var errs []error
	for i, c := range p.Conditions {
		at := fmt.Sprintf("conditions[%d]", i)
		switch c.Metric {
		case MetricActiveRequests, MetricRunningRequests, MetricWaitingQueue, MetricKVCache:
		default:
			errs = append(errs, fmt.Errorf("%s.metric: must be one of %s, %s, %s, %s, got %q", at,
				MetricActiveRequests, MetricRunningRequests, MetricWaitingQueue, MetricKVCache, c.Metric))
		}
		switch {
		case c.MaxValue == nil:
			errs = append(errs, fmt.Errorf("%s.maxValue: required", at))
		case !(*c.MaxValue >= 0) || math.IsInf(*c.MaxValue, 0):
			errs = append(errs, fmt.Errorf("%s.maxValue: must be a finite number >= 0, got %v", at, *c.MaxValue))
		case c.Metric == MetricKVCache && *c.MaxValue > 1:
			errs = append(errs, fmt.Errorf("%s.maxValue: %s is a fraction and must be <= 1, got %v", at, MetricKVCache, *c.MaxValue))
		}
	}
	return errors.Join(errs...)
}

// UtilizationCaps keeps the endpoints under every configured cap (llm-d's
// utilization-filter; active-request-filter is its older name).
//
// Inputs, per condition metric: active-requests, the requests this EPP has
// sent the endpoint and not seen finish (its own in-flight books, kept
// through the request hooks as active-request-scorer keeps them; released
// at ResponseComplete or after 1h); running-requests, waiting-queue and
// kv-cache-utilization, the endpoint's scraped RunningRequestsSize,
// WaitingQueueSize and KVCacheUsagePercent as last scraped (an endpoint
// never scraped reads 0, as in llm-d). Parameters: conditions (at least
// one), fallbackOnEmpty (false); active-request-filter also takes
// maxRequests, the condition {active-requests, maxRequests}.
//
// Rule: keep e iff value(e, metric) ≤ maxValue for every condition. When
// that keeps nothing, return every endpoint if fallbackOnEmpty, else none
// (the profile then fails, naming this filter).
type UtilizationCaps struct {
	inflight.Counter // active-requests: the lifecycle hooks and the sweep
	name             scheduler.TypedName
	conds            []UtilizationCondition
	fallback         bool
	active           bool // a condition reads the in-flight books
}

var (
	_ scheduler.Filter           = (*UtilizationCaps)(nil)
	_ scheduler.PreRequest       = (*UtilizationCaps)(nil)
	_ scheduler.ResponseHeaders  = (*UtilizationCaps)(nil)
	_ scheduler.ResponseComplete = (*UtilizationCaps)(nil)
	_ scheduler.Runnable         = (*UtilizationCaps)(nil)
	_ scheduler.StateDumper      = (*UtilizationCaps)(nil) // the Counter's inflight.State
	_ scheduler.Inheritor        = (*UtilizationCaps)(nil) // the Counter: in-flight books survive a reload
)

// NewUtilizationCaps validates p and returns utilization-filter called
// name. h supplies the clock, logger and pool (h and any of them may be
// unset).
func NewUtilizationCaps(name string, p UtilizationCapsParams, h *scheduler.Handle) (*UtilizationCaps, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	f := &UtilizationCaps{
		Counter:  inflight.NewCounter(h, name, capRequestTimeout, nil),
		name:     scheduler.TypedName{Type: UtilizationCapsType, Name: name},
		conds:    p.Conditions,
		fallback: p.FallbackOnEmpty,
	}
	for _, c := range p.Conditions {
		f.active = f.active || c.Metric == MetricActiveRequests
	}
	return f, nil
}

// UtilizationCapsFactory builds utilization-filter from config.
func UtilizationCapsFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p UtilizationCapsParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	f, err := NewUtilizationCaps(name, p, h)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// ActiveRequestCapFactory builds active-request-filter from config:
// maxRequests becomes the first condition.
func ActiveRequestCapFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p ActiveRequestCapParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	switch {
	case p.MaxRequests < 0:
		return nil, fmt.Errorf("maxRequests: must be > 0, got %d", p.MaxRequests)
	case p.MaxRequests == 0 && len(p.Conditions) == 0:
		return nil, errors.New("maxRequests or conditions: one is required")
	case len(p.Conditions) > 0:
		if err := p.validate(); err != nil { // before maxRequests shifts the indices
			return nil, err
		}
	}
	if p.MaxRequests > 0 {
		limit := float64(p.MaxRequests)
		p.Conditions = append([]UtilizationCondition{{Metric: MetricActiveRequests, MaxValue: &limit}}, p.Conditions...)
	}
	f, err := NewUtilizationCaps(name, p.UtilizationCapsParams, h)
	if err != nil {
		return nil, err
	}
	f.name.Type = ActiveRequestCapType
	return f, nil
}

// UtilizationCapsRegistration describes utilization-filter for the registry.
func UtilizationCapsRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: UtilizationCapsType, Factory: UtilizationCapsFactory, Params: UtilizationCapsParams{},
		Summary: "Keeps endpoints whose in-flight requests, running requests, waiting queue and KV-cache usage are all at most " +
			"the configured caps; with fallbackOnEmpty, all when none is.",
	}
}

// ActiveRequestCapRegistration describes active-request-filter for the
// registry.
func ActiveRequestCapRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: ActiveRequestCapType, Factory: ActiveRequestCapFactory, Params: ActiveRequestCapParams{},
		Summary: "The older name of utilization-filter (llm-d): maxRequests caps the requests this EPP has in flight per endpoint.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *UtilizationCaps) TypedName() scheduler.TypedName { return f.name }

// Filter implements scheduler.Filter.
func (f *UtilizationCaps) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	out := keep(eps, f.under)
	if len(out) == 0 && f.fallback {
		return eps
	}
	return out
}

// PreRequest implements scheduler.PreRequest: count the request in flight
// when a condition reads the count.
func (f *UtilizationCaps) PreRequest(ctx context.Context, state *scheduler.State, req *scheduler.Request, result *scheduler.Result) {
	if f.active {
		f.Counter.PreRequest(ctx, state, req, result)
	}
}

// under reports whether e meets every cap.
func (f *UtilizationCaps) under(e *endpoint.Endpoint) bool {
	m := e.Metrics()
	for _, c := range f.conds {
		var v float64
		switch c.Metric {
		case MetricActiveRequests:
			r, _ := f.Tracker().Of(e.HostPort)
			v = float64(r)
		case MetricRunningRequests:
			v = float64(m.RunningRequestsSize)
		case MetricWaitingQueue:
			v = float64(m.WaitingQueueSize)
		case MetricKVCache:
			v = m.KVCacheUsagePercent
		}
		if v > *c.MaxValue {
			return false
		}
	}
	return true
}
