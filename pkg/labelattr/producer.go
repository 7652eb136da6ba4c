// Package labelattr publishes Pod labels as endpoint attributes (llm-d's
// label-producer), for the plugins that read attributes by name.
package labelattr

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ProducerType is the type name of Producer.
const ProducerType = "label-producer"

// Values of Mapping.ValueType.
const (
	ValueString = "string"
	ValueNumber = "number"
)

// Mapping publishes one Pod label as one attribute.
type Mapping struct {
	Label        string `json:"label"`
	AttributeKey string `json:"attributeKey"`
	ValueType    string `json:"valueType"`
}

// ProducerParams configures Producer: labels (llm-d's newer form), or one
// mapping given inline (its older form), not both.
type ProducerParams struct {
	Labels       []Mapping `json:"labels" doc:"list of {label, attributeKey, valueType}: publish the Pod label label as the attribute attributeKey (both required, each attributeKey once); valueType string (the default) or number" default:""`
	Label        string    `json:"label" doc:"llm-d's older single-label form: the Pod label to publish (instead of labels)" default:""`
	AttributeKey string    `json:"attributeKey" doc:"older form: the attribute it is published as (required with label)" default:""`
	ValueType    string    `json:"valueType" doc:"older form: string, or number (the label parsed as a decimal number)" default:"string"`
}

// mappings returns p's mappings, whichever form gave them.
func (p *ProducerParams) mappings() []Mapping {
	if len(p.Labels) > 0 {
		return p.Labels
	}
	return []Mapping{{Label: p.Label, AttributeKey: p.AttributeKey, ValueType: p.ValueType}}
}

// validate reports every invalid field at once.
func (p *ProducerParams) validate() error {
	older := p.Label != "" || p.AttributeKey != "" || p.ValueType != ""
	switch {
	case len(p.Labels) > 0 && older:
		return errors.New("labels: give labels or the older label, attributeKey and valueType, not both")
	case len(p.Labels) == 0 && !older:
		return errors.New("labels: required: at least one {label, attributeKey}")
	}
	var errs []error
	prefix := func(i int) string {
		if len(p.Labels) == 0 {
			return ""
		}
		return fmt.Sprintf("labels[%d].", i)
	}
	seen := map[string]int{}
	for i, m := range p.mappings() {
		if strings.TrimSpace(m.Label) == "" {
			errs = append(errs, fmt.Errorf("%slabel: required", prefix(i)))
		}
		switch j, dup := seen[m.AttributeKey]; {
		case strings.TrimSpace(m.AttributeKey) == "":
			errs = append(errs, fmt.Errorf("%sattributeKey: required", prefix(i)))
		case dup:
			errs = append(errs, fmt.Errorf("%sattributeKey: %q is labels[%d]'s already; each label needs its own", prefix(i), m.AttributeKey, j))
		default:
			seen[m.AttributeKey] = i
		}
		if t := m.ValueType; t != "" && t != ValueString && t != ValueNumber {
			errs = append(errs, fmt.Errorf("%svalueType: must be %q or %q, got %q", prefix(i), ValueString, ValueNumber, t))
		}
	}
	return errors.Join(errs...)
}

// Producer is llm-d's label-producer: it publishes Pod labels as endpoint
// attributes under its instance name, which consumers give as producer
// (endpoint-attribute-weight-scorer for strings, endpoint-attribute-filter
// and -scorer for numbers).
//
// It stores nothing: an endpoint's labels are part of its spec, which the
// datastore replaces (with a new *endpoint.Endpoint) whenever the pod's
// labels change, so consumers read each attribute from the endpoint's
// current labels through the reader the producer gives them at build time
// (scheduler.AttributeDeriver); a relabelled pod is seen on its next
// request, and no copy can go stale.
//
// Parameters: labels, a list of {label, attributeKey, valueType}, or
// llm-d's older single label, attributeKey and valueType. valueType string
// (the default) publishes the label value as is, the empty value included;
// number publishes it parsed as a decimal number (strconv.ParseFloat),
// read only by numeric consumers. An endpoint without the label, or whose
// value is not a finite number for valueType number, has no attribute.
// One label-producer per config: list every label in its labels.
type Producer struct {
	name  scheduler.TypedName
	attrs map[string]Mapping // by attributeKey
}

var (
	_ scheduler.AttributeDeriver  = (*Producer)(nil)
	_ scheduler.EndpointExtractor = (*Producer)(nil)
	_ scheduler.Resolver          = (*Producer)(nil)
)

// NewProducer validates p and returns the producer called name.
func NewProducer(name string, p ProducerParams) (*Producer, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	x := &Producer{name: scheduler.TypedName{Type: ProducerType, Name: name}, attrs: map[string]Mapping{}}
	for _, m := range p.mappings() {
		if m.ValueType == "" {
			m.ValueType = ValueString
		}
		x.attrs[m.AttributeKey] = m
	}
	return x, nil
}

// ProducerFactory builds a Producer from config.
func ProducerFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p ProducerParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	x, err := NewProducer(name, p)
	if err != nil {
		return nil, err
	}
	return x, nil
}

// ProducerRegistration describes label-producer for the registry.
func ProducerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: ProducerType, Factory: ProducerFactory, Params: ProducerParams{},
		Summary: "Publishes Pod labels as endpoint attributes (llm-d), strings or numbers, that consumers read by naming it as " +
			"their producer; they follow label changes. One per config.",
	}
}

// TypedName implements scheduler.Plugin.
func (x *Producer) TypedName() scheduler.TypedName { return x.name }

// FollowsEndpoints implements scheduler.EndpointExtractor, so that llm-d
// configs may pair it with endpoint-notification-source: it reads each
// endpoint's labels as scheduled.
func (x *Producer) FollowsEndpoints() {}

// Resolve implements scheduler.Resolver: it refuses a second label-producer,
// as llm-d does (the first one listed keeps its attributes).
func (x *Producer) Resolve(h *scheduler.Handle) error {
	for _, p := range h.Plugins() {
		if p.TypedName().Type != ProducerType {
			continue
		}
		if p != scheduler.Plugin(x) {
			return fmt.Errorf("only one %s per config, and %q is one: list every label in its labels", ProducerType, p.TypedName().Name)
		}
		return nil
	}
	return nil
}

// StringAttribute implements scheduler.AttributeDeriver.
func (x *Producer) StringAttribute(name string) (func(*endpoint.Endpoint) (string, bool), error) {
	m, err := x.mapping(name, ValueString)
	if err != nil {
		return nil, err
	}
	return func(e *endpoint.Endpoint) (string, bool) {
		v, ok := e.Labels[m.Label]
		return v, ok
	}, nil
}

// NumberAttribute implements scheduler.AttributeDeriver.
func (x *Producer) NumberAttribute(name string) (func(*endpoint.Endpoint) (float64, bool), error) {
	m, err := x.mapping(name, ValueNumber)
	if err != nil {
		return nil, err
	}
	return func(e *endpoint.Endpoint) (float64, bool) {
		v, ok := e.Labels[m.Label]
		if !ok {
			return 0, false
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false
		}
		return f, true
	}, nil
}

// mapping returns the mapping publishing name as valueType, or why there is
// none.
func (x *Producer) mapping(name, valueType string) (Mapping, error) {
	m, ok := x.attrs[name]
	switch {
	case !ok:
		keys := make([]string, 0, len(x.attrs))
		for k := range x.attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return Mapping{}, fmt.Errorf("no attribute %q; it publishes %s", name, strings.Join(keys, ", "))
	case m.ValueType != valueType:
		return Mapping{}, fmt.Errorf("attribute %q (label %q) has valueType %s, not %s", name, m.Label, m.ValueType, valueType)
	}
	return m, nil
}
