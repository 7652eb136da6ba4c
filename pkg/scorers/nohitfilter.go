package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// NoHitLRUFilterType is the type name of NoHitLRUFilter.
const NoHitLRUFilterType = "no-hit-lru-filter"

// NoHitLRUFilterParams are llm-d's parameters, plus the producers OpenEPP
// reads them from.
type NoHitLRUFilterParams struct {
	LRUSize                  int     `json:"lruSize" doc:"endpoints remembered in the cold-request LRU" default:"1024"`
	MaxTTFTPenaltyMs         float64 `json:"maxTTFTPenaltyMs" doc:"every candidate passes when the kept endpoints' best predicted TTFT is this many ms behind the best candidate's (needs a predicted-latency-producer in the config; without one this gate is off); 0 = no such gate" default:"5000"`
	MaxTokensInFlightPenalty int64   `json:"maxTokensInFlightPenalty" doc:"every candidate passes when the kept endpoints' fewest in-flight tokens are this many more than the fewest of any candidate; 0 = no such gate" default:"0"`

	PrefixMatchInfoProducerName       string `json:"prefixMatchInfoProducerName" doc:"the plugin whose prefix matches tell cold requests from warm ones; empty: the config's only prefix producer (an approximate one is added when there is none)" default:""`
	InFlightLoadProducerName          string `json:"inFlightLoadProducerName" doc:"the inflight-load-producer the tokens gate reads (one is added when none is listed)" default:"inflight-load-producer"`
	LatencyPredictionInfoProducerName string `json:"latencyPredictionInfoProducerName" doc:"the predicted-latency-producer the TTFT gate reads, when the config has it" default:"predicted-latency-producer"`
}

func defaultNoHitLRUFilterParams() NoHitLRUFilterParams {
	return NoHitLRUFilterParams{LRUSize: 1024, MaxTTFTPenaltyMs: 5000,
		InFlightLoadProducerName: InFlightLoadType, LatencyPredictionInfoProducerName: defaultLatencyProducer}
}

func (p *NoHitLRUFilterParams) validate() error {
	var errs []error
	if p.LRUSize < 1 {
		errs = append(errs, fmt.Errorf("lruSize: must be >= 1, got %d", p.LRUSize))
	}
	errs = append(errs, penaltyErrors(p.MaxTTFTPenaltyMs, p.MaxTokensInFlightPenalty)...)
	if p.InFlightLoadProducerName == "" {
		errs = append(errs, errors.New("inFlightLoadProducerName: must name a plugin"))
	}
	return errors.Join(errs...)
}

// penaltyErrors checks the load gates' parameters llm-d's affinity and
// no-hit filters share.
func penaltyErrors(ttftMs float64, tokens int64) []error {
	var errs []error
	if !(ttftMs >= 0) || math.IsInf(ttftMs, 0) {
		errs = append(errs, fmt.Errorf("maxTTFTPenaltyMs: must be a finite number >= 0, got %v", ttftMs))
	}
	if tokens < 0 {
		errs = append(errs, fmt.Errorf("maxTokensInFlightPenalty: must be >= 0, got %d", tokens))
	}
	return errs
}

// NoHitLRUFilter is llm-d's no-hit-lru-filter, the filter form of
// no-hit-lru-scorer: a cold request (no candidate holds any of its prefix)
// is narrowed to the candidates that never took a cold request, else to
// the one that took one longest ago, so new prompts spread over the pool's
// caches instead of piling onto one. Warm requests pass untouched (the
// affinity filter and scorers place them). Two load gates give the
// narrowing up: the kept endpoints' best predicted TTFT more than
// maxTTFTPenaltyMs behind the best candidate's (read from a
// predicted-latency-producer when the config has one), or their fewest
// in-flight tokens more than maxTokensInFlightPenalty above the fewest
// (an inflight-load-producer's books). A cold request's primary target,
// and its prefill target under P/D, become the most recently used in
// PreRequest. Its LRU is its own, not no-hit-lru-scorer's.
type NoHitLRUFilter struct {
	name      scheduler.TypedName
	params    NoHitLRUFilterParams
	source    prefix.Source
	inFlight  *inflight.Tracker
	predictor ttftPredictor
	book      *noHitBook
}

var (
	_ scheduler.Filter     = (*NoHitLRUFilter)(nil)
	_ scheduler.PreRequest = (*NoHitLRUFilter)(nil)
	_ scheduler.Resolver   = (*NoHitLRUFilter)(nil)
	_ scheduler.Inheritor  = (*NoHitLRUFilter)(nil)
)

// coldKey records, per request, that the filter found it cold.
var coldKey = scheduler.NewKey[bool]("no-hit-lru-filter-cold")

// NewNoHitLRUFilter validates p and returns the filter; Resolve finds its
// producers.
func NewNoHitLRUFilter(name string, p NoHitLRUFilterParams) (*NoHitLRUFilter, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &NoHitLRUFilter{name: scheduler.TypedName{Type: NoHitLRUFilterType, Name: name}, params: p,
		book: &noHitBook{lru: recency{capacity: p.LRUSize, index: map[string]*recent{}}}}, nil
}

// NoHitLRUFilterFactory builds a NoHitLRUFilter from config.
func NoHitLRUFilterFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := defaultNoHitLRUFilterParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewNoHitLRUFilter(name, p)
}

// NoHitLRUFilterRegistration describes the plugin type for the registry.
func NoHitLRUFilterRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: NoHitLRUFilterType, Factory: NoHitLRUFilterFactory, Params: NoHitLRUFilterParams{},
		Summary: "Narrows cold (no prefix hit) requests to the endpoints never or least recently given one, unless they are too loaded (llm-d).",
	}
}

// TypedName implements scheduler.Plugin.
func (f *NoHitLRUFilter) TypedName() scheduler.TypedName { return f.name }

// Resolve implements scheduler.Resolver.
func (f *NoHitLRUFilter) Resolve(h *scheduler.Handle) error {
	if h == nil {
		return errors.New("prefixMatchInfoProducerName: no plugin handle to resolve it with")
	}
	if f.params.PrefixMatchInfoProducerName == "" {
		return errors.New("prefixMatchInfoProducerName: the config has several prefix producers; name the one to read")
	}
	src, err := prefix.Lookup(h, f.params.PrefixMatchInfoProducerName)
	if err != nil {
		return err
	}
	f.source = src
	if f.params.MaxTokensInFlightPenalty > 0 {
		if f.inFlight, err = inflight.Lookup(h, f.params.InFlightLoadProducerName, InFlightLoadType); err != nil {
			return err
		}
	}
	if f.params.MaxTTFTPenaltyMs > 0 {
		if p, ok := h.Plugin(f.params.LatencyPredictionInfoProducerName); ok {
			if f.predictor, ok = p.(ttftPredictor); !ok {
				return fmt.Errorf("latencyPredictionInfoProducerName: plugin %q (type %q) predicts no TTFT",
					f.params.LatencyPredictionInfoProducerName, p.TypedName().Type)
			}
		}
	}
	return nil
}

// Inherit implements scheduler.Inheritor: a reload keeps the LRU.
func (f *NoHitLRUFilter) Inherit(prev scheduler.Plugin) {
	if old, ok := prev.(*NoHitLRUFilter); ok && old.book != f.book {
		old.book.mu.Lock()
		old.book.lru.capacity = f.params.LRUSize
		old.book.mu.Unlock()
		f.book = old.book
	}
}

// Filter implements scheduler.Filter.
func (f *NoHitLRUFilter) Filter(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if len(eps) <= 1 || f.source == nil || state == nil {
		return eps
	}
	if m, ok := f.source.Match(state); ok && m != nil {
		for _, e := range eps {
			if m.Blocks(e) > 0 {
				return eps // warm
			}
		}
	}
	coldKey.Set(state, true)
	kept := f.leastRecent(eps)
	if f.tooLoaded(state, kept, eps) {
		return eps
	}
	return kept
}

// leastRecent returns the candidates that never took a cold request, else
// the one that took one longest ago.
func (f *NoHitLRUFilter) leastRecent(eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	b := f.book
	b.mu.RLock()
	defer b.mu.RUnlock()
	var never []*endpoint.Endpoint
	var oldest *endpoint.Endpoint
	oldestPos := math.MaxInt
	for _, e := range eps {
		n, ok := b.lru.index[e.HostPort]
		switch {
		case !ok:
			never = append(never, e)
		case n.pos < oldestPos:
			oldest, oldestPos = e, n.pos
		}
	}
	if len(never) > 0 {
		return never
	}
	return []*endpoint.Endpoint{oldest}
}

// tooLoaded reports whether a load gate opens for the kept endpoints.
func (f *NoHitLRUFilter) tooLoaded(state *scheduler.State, kept, eps []*endpoint.Endpoint) bool {
	if len(kept) == len(eps) {
		return false
	}
	if f.inFlight != nil {
		best := func(set []*endpoint.Endpoint) (b float64) {
			b = math.Inf(1)
			f.inFlight.Each(set, func(_ *endpoint.Endpoint, _, tokens int) { b = min(b, float64(tokens)) })
			return b
		}
		if best(kept)-best(eps) > float64(f.params.MaxTokensInFlightPenalty) {
			return true
		}
	}
	if f.predictor != nil {
		best := func(set []*endpoint.Endpoint) float64 {
			b := math.Inf(1)
			for _, e := range set {
				if ttft, ok := f.predictor.PredictedTTFT(state, e.HostPort); ok {
					b = min(b, ttft)
				}
			}
			return b
		}
		keptTTFT, allTTFT := best(kept), best(eps)
		if !math.IsInf(keptTTFT, 1) && keptTTFT-allTTFT > f.params.MaxTTFTPenaltyMs {
			return true
		}
	}
	return false
}

// PreRequest records a cold request's targets as most recently used.
func (f *NoHitLRUFilter) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	if cold, _ := coldKey.Get(state); !cold || result == nil {
		return
	}
	primary, prefill := result.Servers()
	b := f.book
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range []*endpoint.Endpoint{prefill, primary} {
		if e != nil {
			b.lru.touch(e.HostPort)
		}
	}
}
