package scorers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// MetricType is the type name of the scorer NewMetric returns.
const MetricType = "metric-scorer"

// Directions of MetricNormalization.Direction.
const (
	lowerIsBetter  = "lower_is_better"
	higherIsBetter = "higher_is_better"
)

// MetricParams configures metric-scorer, in llm-d's shape.
type MetricParams struct {
	AttributeKey  string              `json:"attributeKey" doc:"custom metric of the model server to score by: an attributeKey of the core-metrics-extractor's customMetrics (required)" default:""`
	Normalization MetricNormalization `json:"normalization"`
}

// MetricNormalization is how metric-scorer maps values to [0, 1].
type MetricNormalization struct {
	Type      string `json:"type" doc:"linear, the only one: min-max over the candidates that report the metric" default:"linear"`
	Direction string `json:"direction" doc:"lower_is_better or higher_is_better (required)" default:""`
}

// validate reports every invalid field at once.
func (p *MetricParams) validate() error {
	var errs []error
	if strings.TrimSpace(p.AttributeKey) == "" {
		errs = append(errs, errors.New("attributeKey: required"))
	}
	if t := p.Normalization.Type; t != "" && t != "linear" {
		errs = append(errs, fmt.Errorf("normalization.type: must be \"linear\", got %q", t))
	}
	switch d := p.Normalization.Direction; d {
	case lowerIsBetter, higherIsBetter:
	case "":
		errs = append(errs, fmt.Errorf("normalization.direction: required: %s or %s", lowerIsBetter, higherIsBetter))
	default:
		errs = append(errs, fmt.Errorf("normalization.direction: must be %s or %s, got %q", lowerIsBetter, higherIsBetter, d))
	}
	return errors.Join(errs...)
}

// NewMetric validates p and returns llm-d's metric-scorer called name, the
// older, generic form of endpoint-attribute-scorer: an EndpointAttribute
// reading the model server's custom metric attributeKey (producer
// core-metrics-extractor) with the adaptive range, so that s = (v − min)/
// (max − min) over the candidates reporting it (1 − s for
// lower_is_better), all 1 when they report one value, and 0 for a
// candidate that does not report it.
func NewMetric(name string, p MetricParams) (*EndpointAttribute, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	producer := endpoint.CustomMetricsProducer
	typ := linearLowerIsBetter
	if p.Normalization.Direction == higherIsBetter {
		typ = linearHigherIsBetter
	}
	s, err := NewEndpointAttribute(name, EndpointAttributeParams{
		AttributeKey: p.AttributeKey, Producer: &producer, Algorithm: EndpointAttributeAlgorithm{Type: typ},
	})
	if err != nil {
		return nil, err
	}
	s.name.Type = MetricType
	return s, nil
}

// MetricFactory builds a metric-scorer from config.
func MetricFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p MetricParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewMetric(name, p)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// MetricRegistration describes metric-scorer for the registry.
func MetricRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: MetricType, Factory: MetricFactory, Params: MetricParams{},
		Summary: "Scores endpoints linearly by a custom metric of the model server (llm-d's older generic scorer; " +
			"endpoint-attribute-scorer with the adaptive range); an endpoint not reporting it scores 0.",
	}
}
