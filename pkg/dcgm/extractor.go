package dcgm

import (
	"encoding/json"
	"math"

	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ExtractorType is llm-d's type name of the GPU-utilization extractor.
const ExtractorType = "dcgm-extractor"

const (
	// UtilizationFamily is the DCGM field the extractor reads: GPU
	// utilization in percent, a gauge per GPU.
	UtilizationFamily = "DCGM_FI_DEV_GPU_UTIL"
	// UtilizationAttribute is the name of the attribute the extractor
	// publishes, llm-d's.
	UtilizationAttribute = "GPUUtilization"
	// UtilizationKey is the endpoint attribute holding the GPU
	// utilization in [0, 1] (endpoint.Attribute), the attribute name and
	// its producer as endpoint.AttributeKey spells them.
	UtilizationKey = UtilizationAttribute + "/" + ExtractorType
	// podLabel is the label DCGM's Kubernetes mapping names the pod using
	// a GPU with.
	podLabel = "pod"
)

// familyExtractor is what a dcgm-data-source feeds: it turns an exporter's
// parsed page into endpoint data (Extract) and forgets it (Clear). The
// source calls both from its polls' goroutines, concurrently for
// endpoints on different exporters; fams is shared by every endpoint on
// one exporter and must not be modified.
type familyExtractor interface {
	scheduler.Plugin
	Extract(ep *endpoint.Endpoint, fams map[string]*dto.MetricFamily)
	Clear(ep *endpoint.Endpoint)
}

// Extractor is the dcgm-extractor plugin: from an exporter's
// DCGM_FI_DEV_GPU_UTIL samples it keeps those of the endpoint's pod (the
// sample's pod label equal to Spec.Pod, or Spec.Name when the endpoint
// has no pod) and those without a pod label (an exporter in the pod, or
// one without Kubernetes mapping), and publishes their maximum over 100,
// in [0, 1], as the endpoint's UtilizationKey attribute:
//
//	GPUUtilization = clamp(max over kept samples of value / 100, 0, 1)
//
// With no kept sample (no such family, or only other pods' GPUs) the
// attribute is removed. It has no parameters.
type Extractor struct {
	name scheduler.TypedName
}

var _ familyExtractor = (*Extractor)(nil)

// ExtractorFactory builds an Extractor from config; it takes no parameters.
func ExtractorFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if err := scheduler.DecodeParams(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return &Extractor{name: scheduler.TypedName{Type: ExtractorType, Name: name}}, nil
}

// ExtractorRegistration describes the plugin type for the registry.
func ExtractorRegistration() scheduler.Registration {
	return scheduler.Registration{Type: ExtractorType, Factory: ExtractorFactory,
		Summary: "Reads DCGM_FI_DEV_GPU_UTIL from the page a dcgm-data-source fetched (the endpoint's pod's GPUs, or unlabelled ones; the busiest) " +
			"and keeps it on the endpoint, in [0, 1], as attribute " + UtilizationKey + "."}
}

// TypedName implements scheduler.Plugin.
func (x *Extractor) TypedName() scheduler.TypedName { return x.name }

// Extract publishes ep's GPU utilization from fams, or removes it when
// fams has none for ep.
func (x *Extractor) Extract(ep *endpoint.Endpoint, fams map[string]*dto.MetricFamily) {
	pod := ep.Pod
	if pod == "" {
		pod = ep.Name
	}
	v, ok := utilization(fams[UtilizationFamily], pod)
	if !ok {
		x.Clear(ep)
		return
	}
	ep.SetAttributes(endpoint.Attributes{UtilizationKey: v})
}

// Clear removes ep's GPU utilization.
func (x *Extractor) Clear(ep *endpoint.Endpoint) {
	if _, ok := ep.Attribute(UtilizationKey); ok {
		ep.SetAttributes(nil, UtilizationKey)
	}
}

// utilization is the largest value over 100, clamped to [0, 1], of the
// family's samples that belong to pod or to no pod; false when there is
// none. NaN samples are skipped.
func utilization(fam *dto.MetricFamily, pod string) (float64, bool) {
	found, top := false, 0.0
	for _, m := range fam.GetMetric() {
		if p := label(m, podLabel); p != "" && p != pod {
			continue
		}
		v, ok := value(m)
		if !ok || math.IsNaN(v) {
			continue
		}
		if !found || v > top {
			found, top = true, v
		}
	}
	if !found {
		return 0, false
	}
	return min(max(top/100, 0), 1), true
}

// label returns the value of m's label name, "" when absent (as
// Prometheus, an empty value is no label).
func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// value reads a gauge's value, or an untyped one's (a page without TYPE
// lines); other kinds have none.
func value(m *dto.Metric) (float64, bool) {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}
