package mmcache

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// telemetry is llm-d's encoder-cache metrics, counted when a request's
// items are matched (before the pick, as llm-d counts them): items looked
// up by modality, the endpoints believed to hold each, and the best
// endpoint's share of the request's items. nil counts nothing.
type telemetry struct {
	plugin  scheduler.TypedName
	queries *prometheus.CounterVec
	hits    *prometheus.CounterVec
	ratio   prometheus.Observer
}

// newTelemetry registers the families on reg, or finds those another
// instance (or the config before a reload) registered; nil reg gives nil.
func newTelemetry(reg prometheus.Registerer, plugin scheduler.TypedName) (*telemetry, error) {
	if reg == nil {
		return nil, nil
	}
	queries, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_d_epp_encoder_cache_queries_total",
		Help: "Multimodal items looked up in the encoder-cache affinity index, by modality."},
		[]string{"plugin_type", "plugin_name", "modality"}))
	if err != nil {
		return nil, err
	}
	hits, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_d_epp_encoder_cache_hits_total",
		Help: "Multimodal items an endpoint was believed to hold when a request referencing them was matched, by endpoint and modality."},
		[]string{"plugin_type", "plugin_name", "pod", "modality"}))
	if err != nil {
		return nil, err
	}
	ratio, err := promreg.Shared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llm_d_epp_encoder_cache_hit_ratio",
		Help:    "Share of a request's multimodal items held by the endpoint holding most of them.",
		Buckets: []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 1}}, []string{"plugin_type", "plugin_name"}))
	if err != nil {
		return nil, err
	}
	return &telemetry{plugin: plugin, queries: queries, hits: hits,
		ratio: ratio.WithLabelValues(plugin.Type, plugin.Name)}, nil
}

// queried counts the request's items by modality.
func (t *telemetry) queried(items []uint64) {
	if t == nil {
		return
	}
	var by [len(request.MediaModalities)]int
	for _, h := range items {
		by[h>>62]++
	}
	for k, n := range by {
		if n > 0 {
			t.queries.WithLabelValues(t.plugin.Type, t.plugin.Name, request.MediaModalities[k]).Add(float64(n))
		}
	}
}

// held counts what e holds of the request's items, by modality.
func (t *telemetry) held(e *endpoint.Endpoint, by [len(request.MediaModalities)]int) {
	if t == nil {
		return
	}
	pod := e.Pod
	if pod == "" {
		pod = e.Name
	}
	for k, n := range by {
		if n > 0 {
			t.hits.WithLabelValues(t.plugin.Type, t.plugin.Name, pod, request.MediaModalities[k]).Add(float64(n))
		}
	}
}

// matched observes the best endpoint's share of the request's items.
func (t *telemetry) matched(best, items int) {
	if t == nil || items == 0 {
		return
	}
	t.ratio.Observe(float64(best) / float64(items))
}
