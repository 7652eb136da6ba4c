package latency

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TierFilterType is the type name of TierFilter.
const TierFilterType = "slo-headroom-tier-filter"

// TierFilterParams configures TierFilter.
type TierFilterParams struct {
	EpsilonExploreNeg                 float64 `json:"epsilonExploreNeg" doc:"probability of keeping the endpoints that miss an objective instead of those that meet both, when there are both, so overloaded endpoints get a little traffic to recover on; in [0, 1]" default:"0.01"`
	LatencyPredictionInfoProducerName string  `json:"latencyPredictionInfoProducerName" doc:"the predicted-latency-producer whose headroom splits the tiers (one is added when none is listed; OpenEPP extension)" default:"predicted-latency-producer"`
}

// TierFilter is the slo-headroom-tier-filter of GIE and llm-d: it keeps
// the endpoints predicted to meet both objectives (TTFT and TPOT headroom
// >= 0) or, with probability epsilonExploreNeg, those that miss one; when
// only one tier has endpoints it is kept, and without predictions every
// endpoint is kept.
type TierFilter struct {
	name     scheduler.TypedName
	params   TierFilterParams
	producer *Producer
}

var (
	_ scheduler.Filter   = (*TierFilter)(nil)
	_ scheduler.Resolver = (*TierFilter)(nil)
)

// TierFilterFactory builds a TierFilter from config.
func TierFilterFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := TierFilterParams{EpsilonExploreNeg: 0.01, LatencyPredictionInfoProducerName: ProducerType}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := errors.Join(fractions(param{"epsilonExploreNeg", p.EpsilonExploreNeg})...); err != nil {
		return nil, err
	}
	return &TierFilter{name: scheduler.TypedName{Type: TierFilterType, Name: name}, params: p}, nil
}

// TierFilterRegistration describes the plugin type for the registry.
func TierFilterRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    TierFilterType,
		Factory: TierFilterFactory,
		Params:  TierFilterParams{},
		Summary: "Keeps the endpoints predicted to meet the request's latency objectives (or, with probability epsilonExploreNeg, those that miss them); all without predictions.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *TierFilter) TypedName() scheduler.TypedName { return f.name }

// Resolve implements scheduler.Resolver.
func (f *TierFilter) Resolve(h *scheduler.Handle) error {
	p, err := lookupProducer(h, f.params.LatencyPredictionInfoProducerName)
	f.producer = p
	return err
}

// Filter implements scheduler.Filter.
func (f *TierFilter) Filter(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if len(eps) <= 1 {
		return eps
	}
	preds, ok := f.producer.Predictions(state)
	if !ok {
		return eps
	}
	meets := 0
	for _, e := range eps {
		if p, ok := preds[e.HostPort]; ok && p.TTFTHeadroom >= 0 && p.TPOTHeadroom >= 0 {
			meets++
		}
	}
	if meets == 0 || meets == len(eps) {
		return eps
	}
	keepMeeting := !(f.params.EpsilonExploreNeg > 0 && state.Rand.Float64() < f.params.EpsilonExploreNeg)
	out := make([]*endpoint.Endpoint, 0, len(eps))
	for _, e := range eps {
		p, ok := preds[e.HostPort]
		if (ok && p.TTFTHeadroom >= 0 && p.TPOTHeadroom >= 0) == keepMeeting {
			out = append(out, e)
		}
	}
	return out
}

// DeficitFilterType is the type name of DeficitFilter.
const DeficitFilterType = "slo-deficit-bucket-filter"

// DeficitFilterParams configures DeficitFilter.
type DeficitFilterParams struct {
	LatencyPredictionInfoProducerName string `json:"latencyPredictionInfoProducerName" doc:"the predicted-latency-producer whose headroom is read (one is added when none is listed; OpenEPP extension)" default:"predicted-latency-producer"`
}

// DeficitFilter is llm-d's slo-deficit-bucket-filter: among endpoints that
// miss an objective it keeps the least severe group, those missing only
// TPOT, else only TTFT, else both. When any endpoint meets both (the tier
// filter before it normally leaves only one kind), or there are no
// predictions, all pass.
type DeficitFilter struct {
	name     scheduler.TypedName
	params   DeficitFilterParams
	producer *Producer
}

var (
	_ scheduler.Filter   = (*DeficitFilter)(nil)
	_ scheduler.Resolver = (*DeficitFilter)(nil)
)

// DeficitFilterFactory builds a DeficitFilter from config.
func DeficitFilterFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := DeficitFilterParams{LatencyPredictionInfoProducerName: ProducerType}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return &DeficitFilter{name: scheduler.TypedName{Type: DeficitFilterType, Name: name}, params: p}, nil
}

// DeficitFilterRegistration describes the plugin type for the registry.
func DeficitFilterRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    DeficitFilterType,
		Factory: DeficitFilterFactory,
		Params:  DeficitFilterParams{},
		Summary: "Among endpoints predicted to miss an objective, keeps those missing only TPOT, else only TTFT, else both.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *DeficitFilter) TypedName() scheduler.TypedName { return f.name }

// Resolve implements scheduler.Resolver.
func (f *DeficitFilter) Resolve(h *scheduler.Handle) error {
	p, err := lookupProducer(h, f.params.LatencyPredictionInfoProducerName)
	f.producer = p
	return err
}

// Filter implements scheduler.Filter.
func (f *DeficitFilter) Filter(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if len(eps) <= 1 {
		return eps
	}
	preds, ok := f.producer.Predictions(state)
	if !ok {
		return eps
	}
	// Prediction.deficit; an endpoint without a prediction counts as
	// missing both.
	severity := func(e *endpoint.Endpoint) int {
		if p, ok := preds[e.HostPort]; ok {
			return p.deficit()
		}
		return 3
	}
	best := 4
	for _, e := range eps {
		s := severity(e)
		if s == 0 {
			return eps // someone meets both: nothing to choose among deficits
		}
		best = min(best, s)
	}
	out := make([]*endpoint.Endpoint, 0, len(eps))
	for _, e := range eps {
		if severity(e) == best {
			out = append(out, e)
		}
	}
	return out
}
