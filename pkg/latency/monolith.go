package latency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// MonolithType is the type name of Monolith: GIE v1.5.0's one-plugin form
// of latency-based routing, which llm-d split into the producer, the tier
// filter and latency-scorer.
const MonolithType = "predicted-latency-scorer"

// The monolith's extra strategies, which decide on the composite of free
// KV cache, queue and prefix match instead of the headroom.
const (
	StrategyCompositeLeast = "composite-least"
	StrategyCompositeMost  = "composite-most"
	StrategyCompositeOnly  = "composite-only"
)

// The monolith's selection modes among the weighted candidates.
const (
	SelectionLinear = "linear" // weighted random
	SelectionMax    = "max"    // the heaviest
)

// MonolithParams are GIE v1.5.0's parameters of predicted-latency-scorer.
type MonolithParams struct {
	SamplingMean              float64            `json:"samplingMean" doc:"accepted for upstream configs (the sidecar's decode-token sampling); the in-process model learns from every request" default:"1000"`
	MaxSampledTokens          int                `json:"maxSampledTokens" doc:"accepted for upstream configs (TPOT samples per request for the sidecar); > 0" default:"5"`
	SLOBufferFactor           float64            `json:"sloBufferFactor" doc:"headroom = sloBufferFactor × SLO − predicted; > 0" default:"1"`
	NegHeadroomTTFTWeight     float64            `json:"negHeadroomTTFTWeight" doc:"weight of the TTFT deficit when every candidate misses an objective; >= 0" default:"0.8"`
	NegHeadroomTPOTWeight     float64            `json:"negHeadroomTPOTWeight" doc:"weight of the TPOT deficit then; >= 0" default:"0.2"`
	HeadroomTTFTWeight        float64            `json:"headroomTTFTWeight" doc:"weight of TTFT headroom among candidates that meet both objectives; >= 0" default:"0.8"`
	HeadroomTPOTWeight        float64            `json:"headroomTPOTWeight" doc:"weight of TPOT headroom there; >= 0" default:"0.2"`
	HeadroomSelectionStrategy string             `json:"headroomSelectionStrategy" doc:"least (closest to the SLO), most (widest margin), composite-least / composite-most (the composite score, inverted or not, among those meeting the SLO) or composite-only (the composite decides, no tiers)" default:"least"`
	CompositeKVWeight         float64            `json:"compositeKVWeight" doc:"weight of free KV cache in the composite score; >= 0" default:"1"`
	CompositeQueueWeight      float64            `json:"compositeQueueWeight" doc:"weight of the relative waiting queue in it; >= 0" default:"1"`
	CompositePrefixWeight     float64            `json:"compositePrefixWeight" doc:"weight of the prefix match in it; >= 0" default:"1"`
	EpsilonExploreSticky      float64            `json:"epsilonExploreSticky" doc:"probability of ignoring the prefix-affinity gates for a request; in [0, 1]" default:"0.01"`
	EpsilonExploreNeg         float64            `json:"epsilonExploreNeg" doc:"probability of choosing among the candidates that miss an objective when some meet both; in [0, 1]" default:"0.01"`
	AffinityGateTau           float64            `json:"affinityGateTau" doc:"prefix match (fraction of the prompt) that keeps a candidate meeting the SLO sticky; 0 disables; in [0, 1]" default:"0.8"`
	AffinityGateTauGlobal     float64            `json:"affinityGateTauGlobal" doc:"prefix match that keeps a candidate sticky before the tiers split; 0 disables; in [0, 1]" default:"0.99"`
	ContextTTL                scheduler.Duration `json:"contextTTL" doc:"requests unfinished after this long are dropped from the books (nanoseconds, as upstream, or a Go duration)" default:"5m"`
	SelectionMode             string             `json:"selectionMode" doc:"linear (weighted random) or max (the heaviest candidate)" default:"linear"`
	StreamingMode             bool               `json:"streamingMode" doc:"learn TTFT from the first response chunk; false learns it from the whole response" default:"true"`
	EndpointRoleLabel         string             `json:"endpointRoleLabel" doc:"accepted for upstream configs; the model needs no roles" default:""`
	// PrefixMatchInfoProducerName is OpenEPP's: upstream reads the default
	// prefix plugin's state.
	PrefixMatchInfoProducerName string `json:"prefixMatchInfoProducerName" doc:"the plugin whose prefix matches the gates, the composite and the TTFT model read (OpenEPP extension)" default:"approx-prefix-cache-producer"`
}

// Monolith is GIE v1.5.0's predicted-latency-scorer: a producer (the
// in-process models of Producer, under this plugin's name) and a scorer
// that picks one candidate and scores it 1, the others 0. The pick: keep
// the candidates holding ≥ affinityGateTauGlobal of the prompt, if any
// (all of them with probability epsilonExploreSticky); split them into those
// predicted to meet both objectives and the rest, taking the rest with
// probability epsilonExploreNeg when both exist; among those meeting them,
// keep the ones holding ≥ affinityGateTau (same exploration) and weigh by
// headroom (least or most, headroom weights) or by the composite; among
// the rest, weigh the idle ones, else those missing the fewest objectives,
// by the smallest deficit (negative-headroom weights); then draw by weight
// (linear) or take the heaviest (max). Without predictions (the models are
// learning) the composite alone decides.
type Monolith struct {
	*Producer
	name   scheduler.TypedName
	params MonolithParams
	// scorer holds the composite weights and the prefix source.
	scorer Scorer
}

var (
	_ scheduler.Scorer   = (*Monolith)(nil)
	_ scheduler.Producer = (*Monolith)(nil)
	_ scheduler.Resolver = (*Monolith)(nil)
)

// MonolithFactory builds a Monolith from config.
func MonolithFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := MonolithParams{SamplingMean: 1000, MaxSampledTokens: 5, SLOBufferFactor: 1,
		NegHeadroomTTFTWeight: 0.8, NegHeadroomTPOTWeight: 0.2, HeadroomTTFTWeight: 0.8, HeadroomTPOTWeight: 0.2,
		HeadroomSelectionStrategy: StrategyLeast, CompositeKVWeight: 1, CompositeQueueWeight: 1, CompositePrefixWeight: 1,
		EpsilonExploreSticky: 0.01, EpsilonExploreNeg: 0.01, AffinityGateTau: 0.8, AffinityGateTauGlobal: 0.99,
		ContextTTL: scheduler.Duration(5 * time.Minute), SelectionMode: SelectionLinear, StreamingMode: true,
		PrefixMatchInfoProducerName: "approx-prefix-cache-producer"}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	producerParams, err := json.Marshal(ProducerParams{SamplingMean: p.SamplingMean, SLOBufferFactor: p.SLOBufferFactor,
		ContextTTL: time.Duration(p.ContextTTL).String(), StreamingMode: p.StreamingMode, EndpointRoleLabel: p.EndpointRoleLabel,
		PredictInProduce: true, PrefixMatchInfoProducerName: p.PrefixMatchInfoProducerName})
	if err != nil {
		return nil, err
	}
	pl, err := ProducerFactory(name, producerParams, h)
	if err != nil {
		return nil, err
	}
	typed := scheduler.TypedName{Type: MonolithType, Name: name}
	producer := pl.(*Producer)
	producer.name = typed
	return &Monolith{Producer: producer, name: typed, params: p, scorer: Scorer{name: typed, params: ScorerParams{
		CompositeKVWeight: p.CompositeKVWeight, CompositeQueueWeight: p.CompositeQueueWeight, CompositePrefixWeight: p.CompositePrefixWeight}}}, nil
}

func (p *MonolithParams) validate() error {
	errs := nonNegative(param{"negHeadroomTTFTWeight", p.NegHeadroomTTFTWeight}, param{"negHeadroomTPOTWeight", p.NegHeadroomTPOTWeight},
		param{"headroomTTFTWeight", p.HeadroomTTFTWeight}, param{"headroomTPOTWeight", p.HeadroomTPOTWeight},
		param{"compositeKVWeight", p.CompositeKVWeight}, param{"compositeQueueWeight", p.CompositeQueueWeight},
		param{"compositePrefixWeight", p.CompositePrefixWeight})
	errs = append(errs, fractions(param{"epsilonExploreSticky", p.EpsilonExploreSticky}, param{"epsilonExploreNeg", p.EpsilonExploreNeg},
		param{"affinityGateTau", p.AffinityGateTau}, param{"affinityGateTauGlobal", p.AffinityGateTauGlobal})...)
	if p.MaxSampledTokens <= 0 {
		errs = append(errs, fmt.Errorf("maxSampledTokens: must be > 0, got %d", p.MaxSampledTokens))
	}
	switch p.HeadroomSelectionStrategy {
	case StrategyLeast, StrategyMost, StrategyCompositeLeast, StrategyCompositeMost, StrategyCompositeOnly:
	default:
		errs = append(errs, fmt.Errorf("headroomSelectionStrategy: must be one of least, most, composite-least, composite-most, composite-only, got %q", p.HeadroomSelectionStrategy))
	}
	if p.SelectionMode != SelectionLinear && p.SelectionMode != SelectionMax {
		errs = append(errs, fmt.Errorf("selectionMode: must be %q or %q, got %q", SelectionLinear, SelectionMax, p.SelectionMode))
	}
	if p.ContextTTL <= 0 {
		errs = append(errs, fmt.Errorf("contextTTL: must be > 0, got %v", time.Duration(p.ContextTTL)))
	}
	return errors.Join(errs...)
}

// MonolithRegistration describes the plugin type for the registry.
func MonolithRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    MonolithType,
		Factory: MonolithFactory,
		Params:  MonolithParams{},
		Summary: "GIE v1.5.0's latency-based routing in one plugin: predicts each endpoint's TTFT/TPOT in process, then picks one (prefix-affinity gates, the tier meeting the SLO headers, weighted by headroom) and scores it 1, the others 0.",
	}
}

// TypedName implements scheduler.Plugin.
func (m *Monolith) TypedName() scheduler.TypedName { return m.name }

// Resolve implements scheduler.Resolver: the producer's prefix source is
// the composite's too.
func (m *Monolith) Resolve(h *scheduler.Handle) error {
	if err := m.Producer.Resolve(h); err != nil {
		return err
	}
	m.scorer.source = m.Producer.source
	return nil
}

// Score implements scheduler.Scorer: the picked candidate 1, the others 0.
func (m *Monolith) Score(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	if len(eps) == 0 {
		return out
	}
	var rng *rand.Rand
	if state != nil {
		rng = state.Rand
	}
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	weights := make([]float64, len(eps))
	all := make([]int, len(eps))
	for i := range all {
		all[i] = i
	}
	preds, _ := m.Producer.Predictions(state)
	if preds == nil || m.params.HeadroomSelectionStrategy == StrategyCompositeOnly {
		cands := all
		if preds != nil {
			cands, _ = m.gate(rng, state, eps, all, m.params.AffinityGateTauGlobal)
		}
		m.scorer.composite(state, eps, weights)
		out[m.pick(rng, cands, weights)] = 1
		return out
	}
	cands, _ := m.gate(rng, state, eps, all, m.params.AffinityGateTauGlobal)
	var meet, miss []int
	for _, i := range cands {
		if p := preds[eps[i].HostPort]; p.TTFTHeadroom >= 0 && p.TPOTHeadroom >= 0 {
			meet = append(meet, i)
		} else {
			miss = append(miss, i)
		}
	}
	if len(meet) > 0 && (len(miss) == 0 || rng.Float64() >= m.params.EpsilonExploreNeg) {
		tier, sticky := m.gate(rng, state, eps, meet, m.params.AffinityGateTau)
		if sticky && len(tier) == 1 {
			out[tier[0]] = 1
			return out
		}
		switch m.params.HeadroomSelectionStrategy {
		case StrategyCompositeLeast, StrategyCompositeMost:
			m.scorer.composite(state, eps, weights)
			if m.params.HeadroomSelectionStrategy == StrategyCompositeLeast {
				for _, i := range tier {
					weights[i] = 1.01 - weights[i]
				}
			}
		default:
			scoreBucket(eps, preds, tier, m.params.HeadroomSelectionStrategy, m.params.HeadroomTTFTWeight, m.params.HeadroomTPOTWeight, weights)
		}
		out[m.pick(rng, tier, weights)] = 1
		return out
	}
	tier := leastMissed(eps, preds, miss)
	scoreBucket(eps, preds, tier, StrategyLeast, m.params.NegHeadroomTTFTWeight, m.params.NegHeadroomTPOTWeight, weights)
	out[m.pick(rng, tier, weights)] = 1
	return out
}

// gate keeps the candidates holding at least tau of the prompt, unless none
// does, tau is 0, or the request explores (epsilonExploreSticky); sticky
// reports whether it narrowed.
func (m *Monolith) gate(rng *rand.Rand, state *scheduler.State, eps []*endpoint.Endpoint, cands []int, tau float64) (kept []int, sticky bool) {
	match := prefix.MatchOf(m.scorer.source, state)
	if tau <= 0 || match == nil || match.TotalBlocks == 0 {
		return cands, false
	}
	for _, i := range cands {
		if match.Ratio(eps[i]) >= tau {
			kept = append(kept, i)
		}
	}
	if len(kept) == 0 || rng.Float64() < m.params.EpsilonExploreSticky {
		return cands, false
	}
	return kept, true
}

// pick draws one of cands by weight (linear), or takes the heaviest (max,
// ties drawn); candidates all of weight 0 are drawn evenly.
func (m *Monolith) pick(rng *rand.Rand, cands []int, weights []float64) int {
	if m.params.SelectionMode == SelectionMax {
		best, ties := cands[0], 1
		for _, i := range cands[1:] {
			switch {
			case weights[i] > weights[best]:
				best, ties = i, 1
			case weights[i] == weights[best]:
				ties++
				if rng.IntN(ties) == 0 {
					best = i
				}
			}
		}
		return best
	}
	total := 0.0
	for _, i := range cands {
		total += weights[i]
	}
	if !(total > 0) {
		return cands[rng.IntN(len(cands))]
	}
	r := rng.Float64() * total
	for _, i := range cands {
		if r -= weights[i]; r < 0 {
			return i
		}
	}
	return cands[len(cands)-1]
}
