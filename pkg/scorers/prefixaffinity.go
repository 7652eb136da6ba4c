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

// PrefixAffinityType is the type name of PrefixAffinity.
const PrefixAffinityType = "prefix-cache-affinity-filter"

// The load gate's TTFT sources, as llm-d names them.
const (
	TTFTFromPrefillThroughput = "prefillThroughput"
	TTFTFromLatencyPredictor  = "latencyPredictor"
)

// defaultLatencyProducer is the predicted-latency-producer's type, the
// name its default instance has.
const defaultLatencyProducer = "predicted-latency-producer"

// ttftPredictor is what the latencyPredictor TTFT source reads: a
// predicted-latency-producer (pkg/latency).
type ttftPredictor interface {
	PredictedTTFT(state *scheduler.State, hostPort string) (float64, bool)
}

// PrefixAffinityParams configures PrefixAffinity, in llm-d's shape; tau and
// epsilonExplore are the names GIE's version of the filter uses.
type PrefixAffinityParams struct {
	AffinityThreshold        float64  `json:"affinityThreshold" doc:"share of the prompt's blocks an endpoint must hold to be sticky; 0 turns the filter off" default:"0.8"`
	Tau                      *float64 `json:"tau" doc:"GIE's name of affinityThreshold (give one of them)" default:""`
	ExplorationProbability   float64  `json:"explorationProbability" doc:"probability of passing every candidate anyway, so other endpoints get to cache the prompt too" default:"0"`
	EpsilonExplore           *float64 `json:"epsilonExplore" doc:"GIE's name of explorationProbability (give one of them)" default:""`
	MaxTTFTPenaltyMs         float64  `json:"maxTTFTPenaltyMs" doc:"the sticky endpoints are given up when the best of them expects a first token this many ms later than the best other endpoint; 0 = always stick" default:"18000"`
	MaxTokensInFlightPenalty int64    `json:"maxTokensInFlightPenalty" doc:"the sticky endpoints are also given up when the best of them has this many more in-flight tokens than the best other endpoint; 0 = no such limit (llm-d's guide sets 286720 with maxTTFTPenaltyMs 0)" default:"0"`
	TTFTSource               string   `json:"ttftSource" doc:"how an endpoint's TTFT is estimated: prefillThroughput (its in-flight tokens / peakPrefillThroughput); latencyPredictor is llm-d's and not available in OpenEPP" default:"prefillThroughput"`
	PeakPrefillThroughput    float64  `json:"peakPrefillThroughput" doc:"tokens per second one endpoint prefills (llm-d's default is Qwen3-32B on two H100s); used with prefillThroughput" default:"15928"`

	PrefixMatchInfoProducerName       string `json:"prefixMatchInfoProducerName" doc:"the plugin whose prefix matches say how much of the prompt each endpoint holds" default:"approx-prefix-cache-producer"`
	InFlightLoadProducerName          string `json:"inFlightLoadProducerName" doc:"the plugin whose in-flight tokens the load gate reads (an inflight-load-producer; one is added when none is listed)" default:"inflight-load-producer"`
	LatencyPredictionInfoProducerName string `json:"latencyPredictionInfoProducerName" doc:"with ttftSource latencyPredictor, the predicted-latency-producer whose TTFT predictions the gate compares; empty: predicted-latency-producer" default:""`
}

func defaultPrefixAffinityParams() PrefixAffinityParams {
	return PrefixAffinityParams{
		AffinityThreshold: 0.8, MaxTTFTPenaltyMs: 18000, TTFTSource: TTFTFromPrefillThroughput, PeakPrefillThroughput: 15928,
		PrefixMatchInfoProducerName: defaultPrefixSource, InFlightLoadProducerName: InFlightLoadType,
	}
}

// normalize folds GIE's names into llm-d's and validates; given reports
// whether the configuration set a parameter (nil: none was).
func (p *PrefixAffinityParams) normalize(given func(key string) bool) error {
	var errs []error
	alias := func(value **float64, into *float64, name, llmd string) {
		if *value == nil {
			return
		}
		if given != nil && given(llmd) {
			errs = append(errs, fmt.Errorf("%s and %s: give one of them", name, llmd))
		}
		*into, *value = **value, nil
	}
	alias(&p.Tau, &p.AffinityThreshold, "tau", "affinityThreshold")
	alias(&p.EpsilonExplore, &p.ExplorationProbability, "epsilonExplore", "explorationProbability")
	if !(p.AffinityThreshold >= 0 && p.AffinityThreshold <= 1) {
		errs = append(errs, fmt.Errorf("affinityThreshold: must be in [0, 1], got %v", p.AffinityThreshold))
	}
	if !(p.ExplorationProbability >= 0 && p.ExplorationProbability <= 1) {
		errs = append(errs, fmt.Errorf("explorationProbability: must be in [0, 1], got %v", p.ExplorationProbability))
	}
	errs = append(errs, penaltyErrors(p.MaxTTFTPenaltyMs, p.MaxTokensInFlightPenalty)...)
	switch p.TTFTSource {
	case TTFTFromPrefillThroughput:
		bad := !(p.PeakPrefillThroughput >= 0) || math.IsInf(p.PeakPrefillThroughput, 0) ||
			p.MaxTTFTPenaltyMs > 0 && p.PeakPrefillThroughput == 0
		if bad {
			errs = append(errs, fmt.Errorf("peakPrefillThroughput: must be a finite number > 0 with ttftSource %s, got %v", TTFTFromPrefillThroughput, p.PeakPrefillThroughput))
		}
	case TTFTFromLatencyPredictor:
		if p.LatencyPredictionInfoProducerName == "" {
			p.LatencyPredictionInfoProducerName = defaultLatencyProducer
		}
	default:
		errs = append(errs, fmt.Errorf("ttftSource: must be %q or %q, got %q", TTFTFromPrefillThroughput, TTFTFromLatencyPredictor, p.TTFTSource))
	}
	if p.PrefixMatchInfoProducerName == "" {
		errs = append(errs, errors.New("prefixMatchInfoProducerName: must name a plugin"))
	}
	if p.InFlightLoadProducerName == "" {
		errs = append(errs, errors.New("inFlightLoadProducerName: must name a plugin"))
	}
	return errors.Join(errs...)
}

// PrefixAffinity is the prefix-cache-affinity-filter of GIE and llm-d (the
// filter of llm-d's optimized-baseline config): it narrows the candidates
// to the "sticky" endpoints, those holding at least affinityThreshold of
// the prompt's blocks, unless keeping to them would cost too much waiting.
//
// Every candidate passes when there is one candidate or none is sticky,
// when affinityThreshold is 0, with probability explorationProbability, or
// when the load gate opens: the best sticky endpoint's estimated TTFT
// exceeds the best other endpoint's by more than maxTTFTPenaltyMs, an
// endpoint's TTFT being its in-flight tokens (from inFlightLoadProducerName:
// prompt tokens routed there and not yet prefilled) / peakPrefillThroughput.
// The books are found when the config is built (a config listing the filter
// without an inflight-load-producer gets one), so the gate always has its
// signal. The books hold only this EPP's requests; others' show in the
// scraped queues the scorers after the filter read.
type PrefixAffinity struct {
	name      scheduler.TypedName
	params    PrefixAffinityParams
	source    prefix.Source
	inFlight  *inflight.Tracker // tokens gate, and the ms gate by prefill throughput
	predictor ttftPredictor     // the ms gate by predicted TTFT
}

var (
	_ scheduler.Filter   = (*PrefixAffinity)(nil)
	_ scheduler.Resolver = (*PrefixAffinity)(nil)
)

// NewPrefixAffinity validates p and returns the filter; Resolve finds its
// prefix source and in-flight books.
func NewPrefixAffinity(name string, p PrefixAffinityParams) (*PrefixAffinity, error) {
	return newPrefixAffinity(name, p, nil)
}

func newPrefixAffinity(name string, p PrefixAffinityParams, given func(string) bool) (*PrefixAffinity, error) {
	if err := p.normalize(given); err != nil {
		return nil, err
	}
	return &PrefixAffinity{name: scheduler.TypedName{Type: PrefixAffinityType, Name: name}, params: p}, nil
}

// PrefixAffinityFactory builds a PrefixAffinity from config.
func PrefixAffinityFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := defaultPrefixAffinityParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(raw, &keys) // DecodeParams has checked it is an object
	f, err := newPrefixAffinity(name, p, func(k string) bool { _, ok := keys[k]; return ok })
	if err != nil {
		return nil, err
	}
	return f, nil
}

// PrefixAffinityRegistration describes the plugin type for the registry.
func PrefixAffinityRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    PrefixAffinityType,
		Factory: PrefixAffinityFactory,
		Params:  PrefixAffinityParams{},
		Summary: "Keeps the endpoints holding most of the prompt (prefix match >= affinityThreshold) unless the best of them expects its first token maxTTFTPenaltyMs later than another endpoint.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *PrefixAffinity) TypedName() scheduler.TypedName { return f.name }

// Resolve implements scheduler.Resolver.
func (f *PrefixAffinity) Resolve(h *scheduler.Handle) error {
	if h == nil {
		return errors.New("prefixMatchInfoProducerName: no plugin handle to resolve it with")
	}
	src, err := prefix.Lookup(h, f.params.PrefixMatchInfoProducerName)
	if err != nil {
		return err
	}
	f.source = src
	byPredictor := f.params.TTFTSource == TTFTFromLatencyPredictor
	if f.params.MaxTTFTPenaltyMs > 0 && byPredictor {
		name := f.params.LatencyPredictionInfoProducerName
		p, ok := h.Plugin(name)
		if !ok {
			return fmt.Errorf("latencyPredictionInfoProducerName: no plugin named %q in the config (list `- type: %s`)", name, defaultLatencyProducer)
		}
		if f.predictor, ok = p.(ttftPredictor); !ok {
			return fmt.Errorf("latencyPredictionInfoProducerName: plugin %q (type %q) predicts no TTFT", name, p.TypedName().Type)
		}
	}
	if f.params.MaxTokensInFlightPenalty > 0 || f.params.MaxTTFTPenaltyMs > 0 && !byPredictor {
		f.inFlight, err = inflight.Lookup(h, f.params.InFlightLoadProducerName, InFlightLoadType)
	}
	return err
}

// Filter implements scheduler.Filter.
func (f *PrefixAffinity) Filter(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if len(eps) <= 1 || f.params.AffinityThreshold <= 0 || f.source == nil || state == nil {
		return eps
	}
	if p := f.params.ExplorationProbability; p > 0 && state.Rand.Float64() < p {
		return eps
	}
	m, ok := f.source.Match(state)
	if !ok || m == nil || m.TotalBlocks <= 0 || !m.Any() {
		return eps
	}
	need := f.params.AffinityThreshold * float64(m.TotalBlocks)
	sticky := 0
	for _, e := range eps {
		if float64(m.Blocks(e)) >= need {
			sticky++
		}
	}
	if sticky == 0 || sticky == len(eps) {
		return eps
	}
	if f.gateOpen(state, m, need, eps) {
		return eps
	}
	out := make([]*endpoint.Endpoint, 0, sticky)
	for _, e := range eps {
		if float64(m.Blocks(e)) >= need {
			out = append(out, e)
		}
	}
	return out
}

// gated reports whether a load gate is configured.
func (f *PrefixAffinity) gated() bool {
	return f.params.MaxTTFTPenaltyMs > 0 || f.params.MaxTokensInFlightPenalty > 0
}

// gateOpen reports whether the best sticky endpoint is more than
// maxTokensInFlightPenalty in-flight tokens, or maxTTFTPenaltyMs of
// estimated TTFT, behind the best other one. Predicted TTFTs that are
// missing open the gate, as upstream's does.
func (f *PrefixAffinity) gateOpen(state *scheduler.State, m *prefix.Match, need float64, eps []*endpoint.Endpoint) bool {
	if f.inFlight != nil {
		bestSticky, bestOther := math.Inf(1), math.Inf(1)
		f.inFlight.Each(eps, func(e *endpoint.Endpoint, _, tokens int) {
			if t := float64(tokens); float64(m.Blocks(e)) >= need {
				bestSticky = min(bestSticky, t)
			} else {
				bestOther = min(bestOther, t)
			}
		})
		gap := bestSticky - bestOther
		if limit := f.params.MaxTokensInFlightPenalty; limit > 0 && gap > float64(limit) {
			return true
		}
		if f.predictor == nil && f.params.MaxTTFTPenaltyMs > 0 && gap/f.params.PeakPrefillThroughput*1000 > f.params.MaxTTFTPenaltyMs {
			return true
		}
	}
	if f.predictor == nil {
		return false
	}
	bestSticky, bestOther := math.Inf(1), math.Inf(1)
	for _, e := range eps {
		ttft, ok := f.predictor.PredictedTTFT(state, e.HostPort)
		if !ok {
			continue
		}
		if float64(m.Blocks(e)) >= need {
			bestSticky = min(bestSticky, ttft)
		} else {
			bestOther = min(bestOther, ttft)
		}
	}
	if math.IsInf(bestSticky, 1) || math.IsInf(bestOther, 1) {
		return true // missing signal
	}
	return bestSticky-bestOther > f.params.MaxTTFTPenaltyMs
}
