package filters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// llm-d's deprecated label filters, kept so configs that use them (KAITO's
// P/D configs, older llm-d guides) load. Both are label-selector-filter
// underneath; they are one file because they are one deprecation.
const (
	// ByLabelType is the type name of the filter ByLabelFactory builds.
	ByLabelType = "by-label"
	// ByLabelSelectorType is the older name of label-selector-filter.
	ByLabelSelectorType = "by-label-selector"
)

// ByLabelParams is llm-d's single-label form: the label, the values that
// pass, and whether an endpoint without the label passes.
type ByLabelParams struct {
	Label         string   `json:"label" doc:"label key (required)" default:""`
	ValidValues   []string `json:"validValues" doc:"values of label that pass; may be empty only with allowsNoLabel" default:"[]"`
	AllowsNoLabel bool     `json:"allowsNoLabel" doc:"endpoints without the label pass too" default:"false"`
}

// selectors turns p into label selectors of which an endpoint must match
// at least one: label In validValues, and label DoesNotExist with
// allowsNoLabel. The selectors validate the key and values as
// label-selector-filter does.
func (p *ByLabelParams) selectors() ([]labels.Selector, error) {
	if p.Label == "" {
		return nil, errors.New("label: required")
	}
	if len(p.ValidValues) == 0 && !p.AllowsNoLabel {
		return nil, errors.New("validValues: must not be empty unless allowsNoLabel is true (no endpoint could pass)")
	}
	var reqs []LabelRequirement
	if len(p.ValidValues) > 0 {
		reqs = append(reqs, LabelRequirement{Key: p.Label, Operator: "In", Values: p.ValidValues})
	}
	if p.AllowsNoLabel {
		reqs = append(reqs, LabelRequirement{Key: p.Label, Operator: "DoesNotExist"})
	}
	out := make([]labels.Selector, 0, len(reqs))
	for _, r := range reqs {
		req, err := r.requirement()
		if err != nil {
			return nil, fmt.Errorf("label %q, validValues %q: %w", p.Label, p.ValidValues, err)
		}
		out = append(out, labels.NewSelector().Add(*req))
	}
	return out, nil
}

// ByLabel is llm-d's deprecated by-label filter.
//
// Inputs: endpoint labels only. Parameters: label (required), validValues
// (default none), allowsNoLabel (false); validValues may be empty only with
// allowsNoLabel. Rule: keep e iff e carries label with a value in
// validValues, or (allowsNoLabel) e does not carry label at all. A label
// present with an empty value is "carried". Equivalent to
// label-selector-filter with matchExpressions [{key: label, operator: In,
// values: validValues}], or-ed with DoesNotExist when allowsNoLabel.
type ByLabel struct {
	name  scheduler.TypedName
	anyOf []labels.Selector
}

var _ scheduler.Filter = (*ByLabel)(nil)

// NewByLabel validates p and returns the filter called name.
func NewByLabel(name string, p ByLabelParams) (*ByLabel, error) {
	sels, err := p.selectors()
	if err != nil {
		return nil, err
	}
	return &ByLabel{name: scheduler.TypedName{Type: ByLabelType, Name: name}, anyOf: sels}, nil
}

// ByLabelFactory builds a by-label filter from config.
func ByLabelFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p ByLabelParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	f, err := NewByLabel(name, p)
	if err != nil {
		return nil, err
	}
	deprecated(h, ByLabelType, name)
	return f, nil
}

// ByLabelRegistration describes by-label for the registry.
func ByLabelRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: ByLabelType, Factory: ByLabelFactory, Params: ByLabelParams{},
		Summary: "Deprecated (llm-d): keeps endpoints whose label has one of validValues (or, with allowsNoLabel, lack it); " +
			"use label-selector-filter.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *ByLabel) TypedName() scheduler.TypedName { return f.name }

// Filter implements scheduler.Filter.
func (f *ByLabel) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	return keep(eps, func(e *endpoint.Endpoint) bool {
		set := labels.Set(e.Labels)
		for _, s := range f.anyOf {
			if s.Matches(set) {
				return true
			}
		}
		return false
	})
}

// ByLabelSelectorFactory builds by-label-selector: a label-selector-filter
// (same parameters, matchLabels and matchExpressions, same rule) that
// reports its own type.
func ByLabelSelectorFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p, err := LabelSelectorFactory(name, raw, h)
	if err != nil {
		return nil, err
	}
	f := p.(*LabelSelector)
	f.name.Type = ByLabelSelectorType
	deprecated(h, ByLabelSelectorType, name)
	return f, nil
}

// ByLabelSelectorRegistration describes by-label-selector for the registry.
func ByLabelSelectorRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: ByLabelSelectorType, Factory: ByLabelSelectorFactory, Params: LabelSelectorParams{},
		Summary: "Deprecated (llm-d): the older name of label-selector-filter (matchLabels, matchExpressions).",
	}
}

// deprecated logs, once per build of the plugin, that typ is deprecated
// in favour of label-selector-filter.
func deprecated(h *scheduler.Handle, typ, name string) {
	if h != nil {
		h.Log.Info("warning: "+typ+" is deprecated (llm-d); use "+LabelSelectorType, "plugin", name)
	}
}
