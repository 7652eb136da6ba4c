package filters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// LabelSelectorType is the type name of LabelSelector.
const LabelSelectorType = "label-selector-filter"

// LabelSelectorParams is a Kubernetes label selector: an endpoint passes when
// it satisfies every matchLabels entry and every matchExpressions entry.
type LabelSelectorParams struct {
	MatchLabels      map[string]string  `json:"matchLabels" doc:"labels an endpoint must carry, with exactly these values" default:"{}"`
	MatchExpressions []LabelRequirement `json:"matchExpressions" doc:"label requirements an endpoint must meet (In, NotIn, Exists, DoesNotExist)" default:"[]"`
}

// LabelRequirement is one matchExpressions entry, as in a Kubernetes
// metav1.LabelSelectorRequirement.
type LabelRequirement struct {
	Key      string   `json:"key" doc:"label key (required)" default:""`
	Operator string   `json:"operator" doc:"In, NotIn, Exists or DoesNotExist (required)" default:""`
	Values   []string `json:"values" doc:"values for In and NotIn (non-empty); must be empty for Exists and DoesNotExist" default:"[]"`
}

// operators maps the Kubernetes API operator names (the form config files
// use) to the labels package's operators.
var operators = map[string]selection.Operator{
	"In":           selection.In,
	"NotIn":        selection.NotIn,
	"Exists":       selection.Exists,
	"DoesNotExist": selection.DoesNotExist,
}

func (p *LabelSelectorParams) validate() error {
	_, err := p.selector()
	return err
}

// selector validates p and builds the selector, reporting every problem at
// once. An empty selector is rejected: it would keep every endpoint, which is
// almost certainly a configuration mistake.
func (p *LabelSelectorParams) selector() (labels.Selector, error) {
	if len(p.MatchLabels) == 0 && len(p.MatchExpressions) == 0 {
		return nil, errors.New("matchLabels, matchExpressions: at least one requirement is required")
	}
	var errs []error
	var reqs []labels.Requirement
	for _, k := range slices.Sorted(maps.Keys(p.MatchLabels)) {
		r, err := labels.NewRequirement(k, selection.Equals, []string{p.MatchLabels[k]})
		if err != nil {
			errs = append(errs, fmt.Errorf("matchLabels[%q]: %w", k, err))
			continue
		}
		reqs = append(reqs, *r)
	}
	for i, e := range p.MatchExpressions {
		r, err := e.requirement()
		if err != nil {
			errs = append(errs, fmt.Errorf("matchExpressions[%d]: %w", i, err))
			continue
		}
		reqs = append(reqs, *r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return labels.NewSelector().Add(reqs...), nil
}

// requirement checks the operator and the value count itself, so that the
// message names the config's field, then lets the labels package validate
// the key and value syntax.
func (e LabelRequirement) requirement() (*labels.Requirement, error) {
	op, ok := operators[e.Operator]
	if !ok {
		return nil, fmt.Errorf("operator: must be one of In, NotIn, Exists, DoesNotExist, got %q", e.Operator)
	}
	switch {
	case (op == selection.In || op == selection.NotIn) && len(e.Values) == 0:
		return nil, fmt.Errorf("values: must not be empty for operator %s", e.Operator)
	case (op == selection.Exists || op == selection.DoesNotExist) && len(e.Values) > 0:
		return nil, fmt.Errorf("values: must be empty for operator %s, got %q", e.Operator, e.Values)
	}
	r, err := labels.NewRequirement(e.Key, op, e.Values)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", e.Key, err)
	}
	return r, nil
}

// LabelSelector keeps the endpoints whose labels match a Kubernetes label
// selector.
//
// Inputs: endpoint labels only. Parameters: matchLabels (map, default none)
// and matchExpressions (list of {key, operator, values}, default none); at
// least one requirement must be given. Rule: keep e iff every requirement
// holds for e.Labels, where In means the label exists with one of values,
// NotIn means it is absent or has none of values, Exists means it is present
// (any value) and DoesNotExist means it is absent.
type LabelSelector struct {
	name scheduler.TypedName
	sel  labels.Selector
}

var _ scheduler.Filter = (*LabelSelector)(nil)

// NewLabelSelector validates p and returns the filter.
func NewLabelSelector(name string, p LabelSelectorParams) (*LabelSelector, error) {
	sel, err := p.selector()
	if err != nil {
		return nil, err
	}
	return &LabelSelector{name: scheduler.TypedName{Type: LabelSelectorType, Name: name}, sel: sel}, nil
}

// LabelSelectorFactory builds a LabelSelector from config.
func LabelSelectorFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p LabelSelectorParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	f, err := NewLabelSelector(name, p)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// LabelSelectorRegistration describes the plugin type for the registry.
func LabelSelectorRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    LabelSelectorType,
		Factory: LabelSelectorFactory,
		Params:  LabelSelectorParams{},
		Summary: "Keeps endpoints whose labels match a Kubernetes label selector (matchLabels, matchExpressions).",
	}
}

// TypedName implements scheduler.Plugin.
func (f *LabelSelector) TypedName() scheduler.TypedName { return f.name }

// Filter implements scheduler.Filter.
func (f *LabelSelector) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	return keep(eps, func(e *endpoint.Endpoint) bool { return f.sel.Matches(labels.Set(e.Labels)) })
}
