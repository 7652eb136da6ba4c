package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// AttributeWeightType is the type name of AttributeWeight.
const AttributeWeightType = "endpoint-attribute-weight-scorer"

// AttributeWeightParams configures AttributeWeight, in llm-d's shape.
type AttributeWeightParams struct {
	AttributeKey string `json:"attributeKey" doc:"string endpoint attribute to read, e.g. gpu.product (required)" default:""`
	// Producer is a pointer because absent and "" differ: llm-d's older
	// configs name no producer, and "" is the empty namespace.
	Producer *string            `json:"producer" doc:"name of the plugin instance publishing the attribute, e.g. a label-producer's; \"\": the empty producer namespace; absent (llm-d's older form): the config's only label-producer" default:""`
	Weights  map[string]float64 `json:"weights" doc:"attribute value → weight, each finite and > 0 (required, non-empty)" default:""`
}

// validate reports every invalid field at once.
func (p *AttributeWeightParams) validate() error {
	var errs []error
	if _, err := scheduler.NewStringAttr(p.AttributeKey, p.Producer); err != nil {
		errs = append(errs, fmt.Errorf("attributeKey: %w", err))
	}
	if len(p.Weights) == 0 {
		errs = append(errs, errors.New("weights: required: a map of attribute value to a weight > 0"))
	}
	top := 0.0
	for _, v := range p.Weights {
		top = max(top, v)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Weights)) {
		switch w := p.Weights[k]; {
		case !(w > 0) || math.IsInf(w, 0): // NaN and ±Inf come only from Go callers
			errs = append(errs, fmt.Errorf("weights[%q]: must be a finite number > 0, got %v", k, w))
		case !math.IsInf(top, 0) && w/top == 0:
			errs = append(errs, fmt.Errorf("weights[%q]: %v normalises to 0 beside the largest weight %v", k, w, top))
		}
	}
	return errors.Join(errs...)
}

// AttributeWeight is llm-d's endpoint-attribute-weight-scorer: a static
// preference for endpoints by a string attribute, such as the GPU model
// or the region a label-producer publishes.
//
// Inputs: one string endpoint attribute, attributeKey as published by
// producer (scheduler.StringAttr; without producer, the config's only
// label-producer). Parameters: attributeKey, weights (both required),
// producer. Formula: weight(value) / max(weights); an endpoint without the
// attribute, or with a value weights does not list, scores the lowest
// normalised weight, so it stays eligible without beating a known weaker
// tier. When nothing publishes the attribute, a warning is logged at build
// time and every endpoint scores that lowest weight.
//
// An affinity scorer: it knows nothing of load, so give it a load scorer
// beside it (and weighted-random-picker to spread traffic by score), or
// max-score-picker sends everything to the preferred tier.
type AttributeWeight struct {
	name     scheduler.TypedName
	attr     scheduler.StringAttr
	scores   map[string]float64 // weight / max weight
	fallback float64            // the lowest score
}

var (
	_ scheduler.ScoreWriter = (*AttributeWeight)(nil)
	_ scheduler.Resolver    = (*AttributeWeight)(nil)
)

// NewAttributeWeight validates p and returns the scorer called name;
// until Resolve finds the producer, every endpoint scores the fallback.
func NewAttributeWeight(name string, p AttributeWeightParams) (*AttributeWeight, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	attr, _ := scheduler.NewStringAttr(p.AttributeKey, p.Producer) // validated
	top := slices.Max(slices.Collect(maps.Values(p.Weights)))
	s := &AttributeWeight{
		name:     scheduler.TypedName{Type: AttributeWeightType, Name: name},
		attr:     attr,
		scores:   make(map[string]float64, len(p.Weights)),
		fallback: 1,
	}
	for k, w := range p.Weights {
		s.scores[k] = w / top
		s.fallback = min(s.fallback, w/top)
	}
	return s, nil
}

// AttributeWeightFactory builds an AttributeWeight from config.
func AttributeWeightFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p AttributeWeightParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewAttributeWeight(name, p)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// AttributeWeightRegistration describes endpoint-attribute-weight-scorer
// for the registry.
func AttributeWeightRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: AttributeWeightType, Factory: AttributeWeightFactory, Params: AttributeWeightParams{},
		Summary: "Scores endpoints by a string endpoint attribute (llm-d), e.g. a GPU model or region from label-producer: " +
			"weight / max weight, the lowest for a missing or unlisted value; a static preference, no load.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *AttributeWeight) TypedName() scheduler.TypedName { return s.name }

// Resolve implements scheduler.Resolver: it finds the producer; one that
// does not publish the attribute is a warning, as in llm-d.
func (s *AttributeWeight) Resolve(h *scheduler.Handle) error {
	err := s.attr.Resolve(h)
	if errors.Is(err, scheduler.ErrNotPublished) {
		if h != nil {
			h.Log.Info("warning: every endpoint gets the lowest weight", "plugin", s.name.Name, "err", err)
		}
		return nil
	}
	return err
}

// Score implements scheduler.Scorer.
func (s *AttributeWeight) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *AttributeWeight) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	for i, e := range eps {
		out[i] = s.fallback
		if v, ok := s.attr.Read(e); ok {
			if w, listed := s.scores[v]; listed {
				out[i] = w
			}
		}
	}
}
