package latency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ScorerType is the type name of Scorer.
const ScorerType = "latency-scorer"

// The headroom selection strategies.
const (
	StrategyLeast = "least" // closest to the SLO: packs, keeping idle endpoints free
	StrategyMost  = "most"  // the most headroom: the widest safety margin
)

// ScorerParams configures Scorer, as GIE and llm-d name them.
type ScorerParams struct {
	TTFTWeight                        float64 `json:"ttftWeight" doc:"weight of TTFT headroom in the blend; >= 0" default:"0.8"`
	TPOTWeight                        float64 `json:"tpotWeight" doc:"weight of TPOT headroom in the blend; >= 0 (0 for non-streamed traffic)" default:"0.2"`
	HeadroomSelectionStrategy         string  `json:"headroomSelectionStrategy" doc:"least (closest to the SLO, packing) or most (the widest margin); deficits always prefer the least" default:"least"`
	CompositeKVWeight                 float64 `json:"compositeKVWeight" doc:"weight of free KV cache in the score used while there are no predictions" default:"1"`
	CompositeQueueWeight              float64 `json:"compositeQueueWeight" doc:"weight of the relative waiting queue in that score" default:"1"`
	CompositePrefixWeight             float64 `json:"compositePrefixWeight" doc:"weight of the prefix match in that score" default:"1"`
	LatencyPredictionInfoProducerName string  `json:"latencyPredictionInfoProducerName" doc:"the predicted-latency-producer whose predictions are scored (one is added when none is listed)" default:"predicted-latency-producer"`
	PrefixMatchInfoProducerName       string  `json:"prefixMatchInfoProducerName" doc:"the plugin whose prefix matches the fallback score reads; when the default is not configured, none" default:"approx-prefix-cache-producer"`
}

// Scorer is the latency-scorer of GIE and llm-d: it scores the candidates
// by the headroom a predicted-latency-producer predicts for them.
//
// With predictions: the candidates whose TTFT and TPOT headroom are both
// >= 0 are scored alone (the others get 0), blending the two headrooms,
// each min-max normalised over the candidates, by ttftWeight and
// tpotWeight (a dimension with no spread gives its weight to the other),
// and mapping the blend to 1..100 by headroomSelectionStrategy. When every
// candidate misses an objective, idle ones (none of this EPP's requests in
// flight) are scored alone if any, else those missing only TPOT, else
// only TTFT, else both, each by the smallest deficit. Without SLO headers
// every headroom is −prediction, so the lowest predicted latency scores
// highest. Without predictions (the models are still learning): free KV
// cache, the waiting queue relative to the longest, and the prefix match,
// weighted by the composite weights.
type Scorer struct {
	name     scheduler.TypedName
	params   ScorerParams
	producer *Producer
	source   prefix.Source
}

var (
	_ scheduler.Scorer   = (*Scorer)(nil)
	_ scheduler.Resolver = (*Scorer)(nil)
)

// ScorerFactory builds a Scorer from config.
func ScorerFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := ScorerParams{TTFTWeight: 0.8, TPOTWeight: 0.2, HeadroomSelectionStrategy: StrategyLeast,
		CompositeKVWeight: 1, CompositeQueueWeight: 1, CompositePrefixWeight: 1,
		LatencyPredictionInfoProducerName: ProducerType, PrefixMatchInfoProducerName: "approx-prefix-cache-producer"}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	errs := nonNegative(param{"ttftWeight", p.TTFTWeight}, param{"tpotWeight", p.TPOTWeight},
		param{"compositeKVWeight", p.CompositeKVWeight}, param{"compositeQueueWeight", p.CompositeQueueWeight},
		param{"compositePrefixWeight", p.CompositePrefixWeight})
	if p.HeadroomSelectionStrategy != StrategyLeast && p.HeadroomSelectionStrategy != StrategyMost {
		errs = append(errs, fmt.Errorf("headroomSelectionStrategy: must be %q or %q, got %q", StrategyLeast, StrategyMost, p.HeadroomSelectionStrategy))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Scorer{name: scheduler.TypedName{Type: ScorerType, Name: name}, params: p}, nil
}

// ScorerRegistration describes the plugin type for the registry.
func ScorerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ScorerType,
		Factory: ScorerFactory,
		Params:  ScorerParams{},
		Summary: "Scores endpoints by the TTFT/TPOT headroom predicted-latency-producer predicts (lowest predicted latency without SLO headers); a composite of free KV, queue and prefix match until the models are ready.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *Scorer) TypedName() scheduler.TypedName { return s.name }

// Resolve implements scheduler.Resolver.
func (s *Scorer) Resolve(h *scheduler.Handle) error {
	producer, err := lookupProducer(h, s.params.LatencyPredictionInfoProducerName)
	if err != nil {
		return err
	}
	s.producer = producer
	src, err := prefix.LookupOptional(h, s.params.PrefixMatchInfoProducerName)
	s.source = src
	return err
}

// Score implements scheduler.Scorer.
func (s *Scorer) Score(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	if len(eps) == 0 {
		return out
	}
	preds, _ := s.producer.Predictions(state)
	if preds == nil {
		s.composite(state, eps, out)
		return out
	}
	var positive, rest []int
	for i, e := range eps {
		if p := preds[e.HostPort]; p.TTFTHeadroom >= 0 && p.TPOTHeadroom >= 0 {
			positive = append(positive, i)
		} else {
			rest = append(rest, i)
		}
	}
	if len(positive) > 0 {
		scoreBucket(eps, preds, positive, s.params.HeadroomSelectionStrategy, s.params.TTFTWeight, s.params.TPOTWeight, out)
		return out
	}
	scoreBucket(eps, preds, leastMissed(eps, preds, rest), StrategyLeast, s.params.TTFTWeight, s.params.TPOTWeight, out)
	return out
}

// leastMissed narrows candidates that all miss an objective to those worth
// scoring: the idle ones (none of this EPP's requests in flight) if any,
// else those missing only TPOT, else only TTFT, else both.
func leastMissed(eps []*endpoint.Endpoint, preds map[string]Prediction, missed []int) []int {
	var idle []int
	var byDeficit [4][]int
	for _, i := range missed {
		p := preds[eps[i].HostPort]
		if p.Dispatched == 0 {
			idle = append(idle, i)
		}
		d := p.deficit()
		byDeficit[d] = append(byDeficit[d], i)
	}
	for _, bucket := range [][]int{idle, byDeficit[1], byDeficit[2], byDeficit[3]} {
		if len(bucket) > 0 {
			return bucket
		}
	}
	return nil
}

// scoreBucket blends the bucket's normalised |headroom|, TTFT's by alpha
// and TPOT's by beta, and maps it to 0.01..1 by strategy; other candidates
// keep 0.
func scoreBucket(eps []*endpoint.Endpoint, preds map[string]Prediction, bucket []int, strategy string, alpha, beta float64, out []float64) {
	if sum := alpha + beta; sum > 0 {
		alpha, beta = alpha/sum, beta/sum
	} else {
		alpha, beta = 1, 0
	}
	loT, hiT, loP, hiP := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, i := range bucket {
		p := preds[eps[i].HostPort]
		t, q := math.Abs(p.TTFTHeadroom), math.Abs(p.TPOTHeadroom)
		loT, hiT, loP, hiP = min(loT, t), max(hiT, t), min(loP, q), max(hiP, q)
	}
	const flat = 1e-9
	switch rangeT, rangeP := hiT-loT, hiP-loP; {
	case rangeT <= flat && rangeP > flat:
		alpha, beta = 0, 1
	case rangeP <= flat && rangeT > flat:
		alpha, beta = 1, 0
	}
	norm := func(v, lo, hi float64) float64 {
		if hi-lo <= flat {
			return 0.5
		}
		return (v - lo) / (hi - lo)
	}
	for _, i := range bucket {
		p := preds[eps[i].HostPort]
		blend := alpha*norm(math.Abs(p.TTFTHeadroom), loT, hiT) + beta*norm(math.Abs(p.TPOTHeadroom), loP, hiP)
		if strategy != StrategyMost {
			blend = 1 - blend // least: the smallest |headroom| scores highest
		}
		out[i] = float64(int(blend*99)+1) / 100
	}
}

// composite scores without predictions: free KV, the queue relative to the
// longest, and the prefix match, by the composite weights.
func (s *Scorer) composite(state *scheduler.State, eps []*endpoint.Endpoint, out []float64) {
	wkv, wq, wp := s.params.CompositeKVWeight, s.params.CompositeQueueWeight, s.params.CompositePrefixWeight
	sum := wkv + wq + wp
	if sum <= 0 {
		wkv, wq, wp, sum = 1, 0, 0, 1
	}
	longest := 0
	for _, e := range eps {
		longest = max(longest, e.Metrics().WaitingQueueSize)
	}
	m := prefix.MatchOf(s.source, state)
	for i, e := range eps {
		mt := e.Metrics()
		queue := 1.0
		if longest > 0 {
			queue = float64(longest-mt.WaitingQueueSize) / float64(longest)
		}
		match := 0.0
		if m != nil && m.TotalBlocks > 0 {
			match = float64(m.Blocks(e)) / float64(m.TotalBlocks)
		}
		out[i] = math.Round(100*(wkv*(1-mt.KVCacheUsagePercent)+wq*queue+wp*match)/sum) / 100
	}
}
