package metrics

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/endpoint"
)

// CustomMetric maps one scalar series of the model server's page to an
// endpoint attribute (llm-d's engineConfigs[].customMetrics), for the
// generic attribute filters and scorers: attribute AttributeKey of producer
// core-metrics-extractor holds the selected series' value.
type CustomMetric struct {
	AttributeKey string `json:"attributeKey"`
	MetricSpec   string `json:"metricSpec"`
	// Optional makes a missing series no error: the attribute is dropped
	// until the endpoint reports it again (vLLM's NIXL counters, say,
	// exist only with that connector).
	Optional bool `json:"optional,omitempty"`
}

// customMetric is a compiled CustomMetric.
type customMetric struct {
	key      string // endpoint.AttributeKey(AttributeKey, ExtractorType)
	sel      *Selector
	optional bool
}

// compileCustom parses an engine config's custom metrics; errors name their
// place under path.
func compileCustom(path string, cms []CustomMetric) ([]customMetric, error) {
	var errs []error
	var out []customMetric
	seen := map[string]bool{}
	for i, cm := range cms {
		at := fmt.Sprintf("%s.customMetrics[%d]", path, i)
		switch {
		case strings.TrimSpace(cm.AttributeKey) == "":
			errs = append(errs, fmt.Errorf("%s.attributeKey: must not be empty", at))
			continue
		case seen[cm.AttributeKey]:
			errs = append(errs, fmt.Errorf("%s.attributeKey: %q is already mapped", at, cm.AttributeKey))
			continue
		}
		seen[cm.AttributeKey] = true
		sel, err := ParseSelector(cm.MetricSpec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.metricSpec: %w", at, err))
			continue
		}
		out = append(out, customMetric{key: endpoint.AttributeKey(cm.AttributeKey, endpoint.CustomMetricsProducer), sel: sel, optional: cm.Optional})
	}
	return out, errors.Join(errs...)
}

// addFamilies adds the custom metrics' families to what the scraper keeps
// of a page.
func (e *engine) addFamilies(cms []customMetric) {
	for _, cm := range cms {
		if !slices.Contains(e.families, cm.sel.Name) {
			e.families = append(e.families, cm.sel.Name)
		}
	}
}

// extractCustom reads the custom metrics from fams: the values read, the
// keys of optional ones the page lacks (to drop), and the others that
// could not be read (keeping their last value), with their error.
func (e *engine) extractCustom(fams map[string]*dto.MetricFamily) (values endpoint.Attributes, drop []string, failed string, err error) {
	values = make(endpoint.Attributes, len(e.custom))
	var errs []error
	var names []string
	for _, cm := range e.custom {
		v, verr := scalar(fams, cm.sel)
		switch {
		case verr == nil:
			values[cm.key] = v
		case cm.optional && (errors.Is(verr, errFamilyNotFound) || errors.Is(verr, errNoSeries)):
			drop = append(drop, cm.key)
		default:
			names = append(names, cm.key)
			errs = append(errs, fmt.Errorf("custom metric %s %s: %w", cm.key, cm.sel.String(), verr))
		}
	}
	return values, drop, strings.Join(names, ","), errors.Join(errs...)
}

// applyCustom publishes the page's custom metrics on the endpoint and
// counts and logs (on change only) those that could not be read.
func (t *target) applyCustom(fams map[string]*dto.MetricFamily) {
	if len(t.eng.custom) == 0 {
		return
	}
	values, drop, failed, err := t.eng.extractCustom(fams)
	t.ep.SetAttributes(values, drop...)
	if failed != "" {
		t.s.tel.customErrors.Inc()
	}
	if failed == t.failedCustom {
		return
	}
	t.failedCustom = failed
	if failed == "" {
		t.s.log.Info("all custom metrics readable again", "endpoint", t.ep.String())
		return
	}
	t.s.log.Error(err, "custom metrics unavailable, keeping their previous values", "endpoint", t.ep.String(),
		"engine", t.eng.name, "attributes", failed)
}
