package filters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// EndpointAttributeType is the type name of EndpointAttribute.
const EndpointAttributeType = "endpoint-attribute-filter"

// Values of EndpointAttributeParams.OnMissing.
const (
	OnMissingPass = "Pass"
	OnMissingFail = "Fail"
)

// Algorithm types of EndpointAttributeAlgorithm.Type.
const (
	algoThreshold  = "threshold"
	algoRange      = "range"
	algoTopK       = "topK"
	algoPercentile = "percentile"
)

// EndpointAttributeParams configures EndpointAttribute, in llm-d's shape.
type EndpointAttributeParams struct {
	Attribute string `json:"attribute" doc:"name of the endpoint attribute to read (required); may contain / only when producer is given" default:""`
	// Producer is a pointer because absent and "" differ: absent reads the
	// core metrics extractor's attribute, "" the name alone.
	Producer        *string                    `json:"producer" doc:"what publishes the attribute: a plugin type, e.g. dcgm-extractor, or a label-producer's name; absent: the model server's custom metrics; \"\": the producer-agnostic key (the name alone)" default:"core-metrics-extractor"`
	OnMissing       string                     `json:"onMissing" doc:"Pass keeps endpoints without the attribute (or with NaN), Fail drops them" default:"Pass"`
	FallbackOnEmpty bool                       `json:"fallbackOnEmpty" doc:"when every endpoint would be dropped, keep all the candidates instead" default:"false"`
	Algorithm       EndpointAttributeAlgorithm `json:"algorithm"`
}

// EndpointAttributeAlgorithm chooses the rule: Type, and the settings of
// that type; settings of another type are refused.
type EndpointAttributeAlgorithm struct {
	Type       string               `json:"type" doc:"threshold, range, topK or percentile (required)" default:""`
	Threshold  *AttributeThreshold  `json:"threshold" doc:"{operator, value}, both required: keep endpoints whose value <operator> value; operator LessThan, LessThanOrEqual, GreaterThan, GreaterThanOrEqual, Equal or NotEqual" default:""`
	Range      *AttributeRange      `json:"range" doc:"{min, max}, both required, min <= max: keep endpoints with min <= value <= max" default:""`
	TopK       *AttributeTopK       `json:"topK" doc:"{k, higherIsBetter}: keep the k (required, >= 1) highest values, or lowest when higherIsBetter (default true) is false; ties go to the earlier candidate" default:""`
	Percentile *AttributePercentile `json:"percentile" doc:"{percentile, higherIsBetter}: with the values sorted ascending, the cutoff is the one at position ceil(percentile/100 × N), at least 1 (nearest rank); keep values >= cutoff, or <= cutoff when higherIsBetter (default true) is false; percentile in [0, 100] required" default:""`
}

// AttributeThreshold keeps endpoints whose value compares with Value by
// Operator.
type AttributeThreshold struct {
	Operator string   `json:"operator"`
	Value    *float64 `json:"value"`
}

// AttributeRange keeps endpoints whose value is in [Min, Max].
type AttributeRange struct {
	Min *float64 `json:"min"`
	Max *float64 `json:"max"`
}

// AttributeTopK keeps the K best values (highest unless HigherIsBetter is
// false).
type AttributeTopK struct {
	K              *int  `json:"k"`
	HigherIsBetter *bool `json:"higherIsBetter"`
}

// AttributePercentile keeps the values at or beyond a nearest-rank
// percentile (above it unless HigherIsBetter is false).
type AttributePercentile struct {
	Percentile     *float64 `json:"percentile"`
	HigherIsBetter *bool    `json:"higherIsBetter"`
}

// comparison is a parsed AttributeThreshold.Operator.
type comparison uint8

const (
	opLess comparison = iota
	opLessEqual
	opGreater
	opGreaterEqual
	opEqual
	opNotEqual
)

var comparisons = map[string]comparison{
	"LessThan": opLess, "LessThanOrEqual": opLessEqual, "GreaterThan": opGreater,
	"GreaterThanOrEqual": opGreaterEqual, "Equal": opEqual, "NotEqual": opNotEqual,
}

// validate reports every invalid field at once.
func (p *EndpointAttributeParams) validate() error {
	var errs []error
	if _, err := scheduler.NewNumberAttr(p.Attribute, p.Producer); err != nil {
		errs = append(errs, fmt.Errorf("attribute: %w", err))
	}
	if p.OnMissing != "" && p.OnMissing != OnMissingPass && p.OnMissing != OnMissingFail {
		errs = append(errs, fmt.Errorf("onMissing: must be %q or %q, got %q", OnMissingPass, OnMissingFail, p.OnMissing))
	}
	return errors.Join(append(errs, p.Algorithm.validate()...)...)
}

// validate checks the type, refuses the settings of another type, and
// checks the type's own settings.
func (a *EndpointAttributeAlgorithm) validate() []error {
	given := map[string]bool{algoThreshold: a.Threshold != nil, algoRange: a.Range != nil,
		algoTopK: a.TopK != nil, algoPercentile: a.Percentile != nil}
	if _, ok := given[a.Type]; !ok {
		if a.Type == "" {
			return []error{errors.New("algorithm.type: required: threshold, range, topK or percentile")}
		}
		return []error{fmt.Errorf("algorithm.type: must be threshold, range, topK or percentile, got %q", a.Type)}
	}
	var errs []error
	for _, name := range []string{algoThreshold, algoRange, algoTopK, algoPercentile} {
		if given[name] && name != a.Type {
			errs = append(errs, fmt.Errorf("algorithm.%s: set, but algorithm.type is %q", name, a.Type))
		}
	}
	switch a.Type {
	case algoThreshold:
		t := a.Threshold
		if t == nil {
			t = &AttributeThreshold{}
		}
		if _, ok := comparisons[t.Operator]; !ok {
			errs = append(errs, fmt.Errorf("algorithm.threshold.operator: must be LessThan, LessThanOrEqual, GreaterThan, GreaterThanOrEqual, Equal or NotEqual, got %q", t.Operator))
		}
		errs = appendRequired(errs, "algorithm.threshold.value", t.Value)
	case algoRange:
		r := a.Range
		if r == nil {
			r = &AttributeRange{}
		}
		errs = appendRequired(errs, "algorithm.range.min", r.Min)
		errs = appendRequired(errs, "algorithm.range.max", r.Max)
		if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
			errs = append(errs, fmt.Errorf("algorithm.range: min %v must be <= max %v", *r.Min, *r.Max))
		}
	case algoTopK:
		if a.TopK == nil || a.TopK.K == nil {
			errs = append(errs, errors.New("algorithm.topK.k: required, an integer >= 1"))
		} else if *a.TopK.K < 1 {
			errs = append(errs, fmt.Errorf("algorithm.topK.k: must be >= 1, got %d", *a.TopK.K))
		}
	case algoPercentile:
		if a.Percentile == nil || a.Percentile.Percentile == nil {
			errs = append(errs, errors.New("algorithm.percentile.percentile: required, a number in [0, 100]"))
		} else if v := *a.Percentile.Percentile; !(v >= 0 && v <= 100) {
			errs = append(errs, fmt.Errorf("algorithm.percentile.percentile: must be in [0, 100], got %v", v))
		}
	}
	return errs
}

// appendRequired adds an error to errs when v is absent or not finite.
func appendRequired(errs []error, path string, v *float64) []error {
	switch {
	case v == nil:
		return append(errs, fmt.Errorf("%s: required", path))
	case *v-*v != 0: // NaN or ±Inf, which only Go callers can give
		return append(errs, fmt.Errorf("%s: must be a finite number, got %v", path, *v))
	}
	return errs
}

// EndpointAttribute is llm-d's endpoint-attribute-filter: it keeps the
// endpoints whose numeric attribute passes a rule.
//
// Inputs: one endpoint attribute, read by key attribute/producer
// (endpoint.AttributeKey; the producer defaults to the core metrics
// extractor, which publishes the model server's custom metrics; "" reads
// the name alone), or derived from the endpoint's labels when producer
// names a label-producer (scheduler.NumberAttr). A NaN value counts as
// missing. Parameters: attribute (required), producer, onMissing (Pass),
// fallbackOnEmpty (false), algorithm.type (required) with its settings.
//
// Rules: threshold keeps value <operator> threshold.value; range keeps
// min <= value <= max. topK and percentile rank the endpoints that have the
// attribute: topK keeps the k highest (lowest when higherIsBetter is false;
// all of them when fewer than k have it; of equal values at the cut, the
// earlier candidates); percentile sorts the N values ascending, takes the
// cutoff at 1-based position ceil(percentile/100 × N) (1 when that is 0),
// and keeps values >= cutoff (<= when higherIsBetter is false), so P=0
// keeps all and P=100 the maximum. Endpoints without the attribute are kept
// with onMissing Pass and dropped with Fail, whatever the rule. When
// nothing is kept and fallbackOnEmpty is set, the input is returned as it
// is; otherwise the empty result fails the profile.
type EndpointAttribute struct {
	name        scheduler.TypedName
	attr        scheduler.NumberAttr
	failMissing bool
	fallback    bool
	algo        algorithm
	op          comparison
	// threshold is the threshold rule's value; lo, hi the range.
	threshold, lo, hi float64
	k                 int
	percentile        float64
	higher            bool
}

// algorithm is a parsed EndpointAttributeAlgorithm.Type.
type algorithm uint8

const (
	byThreshold algorithm = iota
	byRange
	byTopK
	byPercentile
)

var (
	_ scheduler.Filter   = (*EndpointAttribute)(nil)
	_ scheduler.Resolver = (*EndpointAttribute)(nil)
)

// NewEndpointAttribute validates p and returns the filter called name.
func NewEndpointAttribute(name string, p EndpointAttributeParams) (*EndpointAttribute, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	attr, _ := scheduler.NewNumberAttr(p.Attribute, p.Producer) // validated
	f := &EndpointAttribute{
		name:        scheduler.TypedName{Type: EndpointAttributeType, Name: name},
		attr:        attr,
		failMissing: p.OnMissing == OnMissingFail,
		fallback:    p.FallbackOnEmpty,
		higher:      true,
	}
	a := &p.Algorithm
	switch a.Type {
	case algoThreshold:
		f.algo, f.op, f.threshold = byThreshold, comparisons[a.Threshold.Operator], *a.Threshold.Value
	case algoRange:
		f.algo, f.lo, f.hi = byRange, *a.Range.Min, *a.Range.Max
	case algoTopK:
		f.algo, f.k = byTopK, *a.TopK.K
		if a.TopK.HigherIsBetter != nil {
			f.higher = *a.TopK.HigherIsBetter
		}
	case algoPercentile:
		f.algo, f.percentile = byPercentile, *a.Percentile.Percentile
		if a.Percentile.HigherIsBetter != nil {
			f.higher = *a.Percentile.HigherIsBetter
		}
	}
	return f, nil
}

// EndpointAttributeFactory builds an EndpointAttribute from config.
func EndpointAttributeFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p EndpointAttributeParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	f, err := NewEndpointAttribute(name, p)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// EndpointAttributeRegistration describes endpoint-attribute-filter for the
// registry.
func EndpointAttributeRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: EndpointAttributeType, Factory: EndpointAttributeFactory, Params: EndpointAttributeParams{},
		Summary: "Keeps endpoints by a numeric endpoint attribute (llm-d): a threshold, a range, the top k, or a nearest-rank " +
			"percentile; endpoints without it pass or fail per onMissing, and fallbackOnEmpty keeps all when none would remain.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *EndpointAttribute) TypedName() scheduler.TypedName { return f.name }

// Resolve implements scheduler.Resolver: a producer naming a label-producer
// reads through it.
func (f *EndpointAttribute) Resolve(h *scheduler.Handle) error { return f.attr.Resolve(h) }

// Filter implements scheduler.Filter.
func (f *EndpointAttribute) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	var out []*endpoint.Endpoint
	switch f.algo {
	case byTopK, byPercentile:
		out = f.rank(eps)
	default:
		out = keep(eps, f.passes)
	}
	if len(out) == 0 && f.fallback {
		return eps
	}
	return out
}

// value reads e's attribute; NaN counts as missing.
func (f *EndpointAttribute) value(e *endpoint.Endpoint) (float64, bool) {
	v, ok := f.attr.Read(e)
	return v, ok && v == v
}

// passes applies the threshold or range rule to e.
func (f *EndpointAttribute) passes(e *endpoint.Endpoint) bool {
	v, ok := f.value(e)
	switch {
	case !ok:
		return !f.failMissing
	case f.algo == byRange:
		return v >= f.lo && v <= f.hi
	}
	switch f.op {
	case opLess:
		return v < f.threshold
	case opLessEqual:
		return v <= f.threshold
	case opGreater:
		return v > f.threshold
	case opGreaterEqual:
		return v >= f.threshold
	case opEqual:
		return v == f.threshold
	default:
		return v != f.threshold
	}
}
