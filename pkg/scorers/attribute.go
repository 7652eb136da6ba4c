package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// EndpointAttributeType is the type name of EndpointAttribute.
const EndpointAttributeType = "endpoint-attribute-scorer"

// Algorithm types of EndpointAttributeAlgorithm.Type.
const (
	linearLowerIsBetter  = "linear_lower_is_better"
	linearHigherIsBetter = "linear_higher_is_better"
)

// Values of EndpointAttributeParams.Source.
const (
	sourceEndpoint = "endpoint"
	sourceMetadata = "metadata"
)

// EndpointAttributeParams configures EndpointAttribute, in llm-d's shape.
type EndpointAttributeParams struct {
	AttributeKey string `json:"attributeKey" doc:"name of the endpoint attribute to read (required); may contain / only when producer is given" default:""`
	// Producer is a pointer because absent and "" differ: absent reads the
	// core metrics extractor's attribute, "" the name alone.
	Producer  *string                    `json:"producer" doc:"what publishes the attribute: a plugin type, e.g. dcgm-extractor, or a label-producer's name; absent: the model server's custom metrics; \"\": the producer-agnostic key (the name alone)" default:"core-metrics-extractor"`
	Algorithm EndpointAttributeAlgorithm `json:"algorithm"`
	Source    string                     `json:"source" doc:"where the value is read: endpoint, the endpoint's attributes (llm-d's metadata, the request's dynamic metadata, is refused)" default:"endpoint"`
}

// EndpointAttributeAlgorithm is the scoring direction and how values are
// mapped to [0, 1].
type EndpointAttributeAlgorithm struct {
	Type          string                 `json:"type" doc:"linear_lower_is_better or linear_higher_is_better (required)" default:""`
	Normalization AttributeNormalization `json:"normalization"`
}

// AttributeNormalization gives at most one of its ranges; none means
// AdaptiveRange.
type AttributeNormalization struct {
	AdaptiveRange *AdaptiveRange `json:"adaptiveRange" doc:"{}: min and max are those of the candidates that have the attribute (the default)" default:""`
	FixedRange    *FixedRange    `json:"fixedRange" doc:"{min, max}, both required, min < max: values are clamped to [min, max] and scaled over it" default:""`
}

// AdaptiveRange scales values over the candidates' own range; it has no
// settings.
type AdaptiveRange struct{}

// FixedRange scales values over [Min, Max], clamping them to it.
type FixedRange struct {
	Min *float64 `json:"min"`
	Max *float64 `json:"max"`
}

// validate reports every invalid field at once.
func (p *EndpointAttributeParams) validate() error {
	var errs []error
	if _, err := scheduler.NewNumberAttr(p.AttributeKey, p.Producer); err != nil {
		errs = append(errs, fmt.Errorf("attributeKey: %w", err))
	}
	switch p.Algorithm.Type {
	case linearLowerIsBetter, linearHigherIsBetter:
	case "":
		errs = append(errs, fmt.Errorf("algorithm.type: required: %s or %s", linearLowerIsBetter, linearHigherIsBetter))
	default:
		errs = append(errs, fmt.Errorf("algorithm.type: must be %s or %s, got %q", linearLowerIsBetter, linearHigherIsBetter, p.Algorithm.Type))
	}
	errs = append(errs, p.Algorithm.Normalization.validate("algorithm.normalization")...)
	switch p.Source {
	case "", sourceEndpoint:
	case sourceMetadata:
		errs = append(errs, errors.New("source: metadata (the request's dynamic metadata) is not supported: OpenEPP reads only endpoint attributes; use endpoint"))
	default:
		errs = append(errs, fmt.Errorf("source: must be %q, got %q", sourceEndpoint, p.Source))
	}
	return errors.Join(errs...)
}

// validate checks n, whose fields' paths start with path.
func (n *AttributeNormalization) validate(path string) []error {
	if n.FixedRange == nil {
		return nil
	}
	var errs []error
	if n.AdaptiveRange != nil {
		errs = append(errs, fmt.Errorf("%s: give at most one of adaptiveRange and fixedRange", path))
	}
	r := n.FixedRange
	for _, f := range []struct {
		name string
		v    *float64
	}{{"min", r.Min}, {"max", r.Max}} {
		switch {
		case f.v == nil:
			errs = append(errs, fmt.Errorf("%s.fixedRange.%s: required", path, f.name))
		case *f.v-*f.v != 0: // NaN or ±Inf, which only Go callers can give
			errs = append(errs, fmt.Errorf("%s.fixedRange.%s: must be a finite number, got %v", path, f.name, *f.v))
		}
	}
	if r.Min != nil && r.Max != nil && !(*r.Min < *r.Max) {
		errs = append(errs, fmt.Errorf("%s.fixedRange: min %v must be < max %v", path, *r.Min, *r.Max))
	}
	return errs
}

// EndpointAttribute is llm-d's endpoint-attribute-scorer: it scores
// endpoints linearly by a numeric attribute. metric-scorer is the same
// scorer reading a custom metric of the model server.
//
// Inputs: one endpoint attribute, read by key attributeKey/producer
// (endpoint.AttributeKey; the producer defaults to the core metrics
// extractor, which publishes the model server's custom metrics; "" reads
// the name alone), or derived from the endpoint's labels when producer
// names a label-producer (scheduler.NumberAttr). Parameters:
// attributeKey (required), producer, algorithm.type (required),
// algorithm.normalization (adaptiveRange), source (endpoint; metadata is
// refused).
//
// Formula: s = (v − min)/(max − min), and 1 − s for linear_lower_is_better.
// adaptiveRange takes min and max over the candidates that have the
// attribute, and when they are equal every such candidate scores 1;
// fixedRange clamps v to [min, max] first. A candidate without the
// attribute, or whose value is NaN or ±Inf, scores 0 and is left out of
// the adaptive range.
type EndpointAttribute struct {
	name  scheduler.TypedName
	attr  scheduler.NumberAttr
	lower bool
	// fixed selects fixedRange over [lo, hi].
	fixed  bool
	lo, hi float64
}

var (
	_ scheduler.ScoreWriter = (*EndpointAttribute)(nil)
	_ scheduler.Resolver    = (*EndpointAttribute)(nil)
)

// NewEndpointAttribute validates p and returns the scorer called name.
func NewEndpointAttribute(name string, p EndpointAttributeParams) (*EndpointAttribute, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	attr, _ := scheduler.NewNumberAttr(p.AttributeKey, p.Producer) // validated
	s := &EndpointAttribute{
		name:  scheduler.TypedName{Type: EndpointAttributeType, Name: name},
		attr:  attr,
		lower: p.Algorithm.Type == linearLowerIsBetter,
	}
	if r := p.Algorithm.Normalization.FixedRange; r != nil {
		s.fixed, s.lo, s.hi = true, *r.Min, *r.Max
	}
	return s, nil
}

// EndpointAttributeFactory builds an EndpointAttribute from config.
func EndpointAttributeFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p EndpointAttributeParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewEndpointAttribute(name, p)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// EndpointAttributeRegistration describes endpoint-attribute-scorer for the
// registry.
func EndpointAttributeRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: EndpointAttributeType, Factory: EndpointAttributeFactory, Params: EndpointAttributeParams{},
		Summary: "Scores endpoints linearly by a numeric endpoint attribute (llm-d), lower or higher being better, over the " +
			"candidates' range or a fixed one; an endpoint without the attribute scores 0.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *EndpointAttribute) TypedName() scheduler.TypedName { return s.name }

// Resolve implements scheduler.Resolver: a producer naming a label-producer
// reads through it.
func (s *EndpointAttribute) Resolve(h *scheduler.Handle) error { return s.attr.Resolve(h) }

// Score implements scheduler.Scorer.
func (s *EndpointAttribute) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *EndpointAttribute) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	if s.fixed {
		for i, e := range eps {
			if v, ok := s.value(e); ok {
				out[i] = s.scale(min(max(v, s.lo), s.hi), s.lo, s.hi)
			} else {
				out[i] = 0
			}
		}
		return
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, e := range eps {
		v, ok := s.value(e)
		if !ok {
			out[i] = math.NaN() // missing, until the second pass
			continue
		}
		out[i] = v
		lo, hi = min(lo, v), max(hi, v)
	}
	for i, v := range out {
		switch {
		case v != v:
			out[i] = 0
		case lo == hi:
			out[i] = 1
		default:
			out[i] = s.scale(v, lo, hi)
		}
	}
}

// value reads e's attribute; NaN and ±Inf count as missing.
func (s *EndpointAttribute) value(e *endpoint.Endpoint) (float64, bool) {
	v, ok := s.attr.Read(e)
	return v, ok && v-v == 0
}

// scale maps v in [lo, hi], lo < hi, to its score.
func (s *EndpointAttribute) scale(v, lo, hi float64) float64 {
	x := unitClamp((v - lo) / (hi - lo)) // clamped: hi − lo may overflow
	if s.lower {
		return 1 - x
	}
	return x
}
