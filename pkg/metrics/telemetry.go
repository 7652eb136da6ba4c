package metrics

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/promalias"
)

// TelemetryAliases serve the pool gauges and scrape error counters under
// llm-d's names as well (llm_d_epp_*; a data-layer poll is our scrape, its
// extract step our field parsing).
var TelemetryAliases = []promalias.Alias{
	{From: "inference_pool_average_kv_cache_utilization", To: "llm_d_epp_average_kv_cache_utilization"},
	{From: "inference_pool_average_queue_size", To: "llm_d_epp_average_queue_size"},
	{From: "inference_pool_average_running_requests", To: "llm_d_epp_average_running_requests"},
	{From: "inference_pool_ready_pods", To: "llm_d_epp_ready_endpoints"},
	{From: "inference_pool_per_pod_queue_size", To: "llm_d_epp_per_endpoint_queue_size",
		Labels: map[string]string{"model_server_pod": "model_server_endpoint"}},
	{From: "openepp_metrics_scrape_errors_total", To: "llm_d_epp_datalayer_poll_errors_total",
		Sum: []string{"reason"}, Set: map[string]string{"source_type": DataSourceType}},
	{From: "openepp_metrics_field_errors_total", To: "llm_d_epp_datalayer_extract_errors_total",
		Sum: []string{"field"}, Set: map[string]string{"source_type": DataSourceType, "extractor_type": ExtractorType}},
}

// Failure reasons, the values of the reason label of
// openepp_metrics_scrape_errors_total: the data sources' shared vocabulary
// (fetchfail) and a page without the wanted metrics. The set is fixed so
// the label's cardinality is bounded.
const (
	reasonNoMetrics = "no_metrics"
	// reasonDiscarded is not a failure: a narrow page that did not pass
	// its check was dropped (see narrow.go). It has no counter.
	reasonDiscarded = "discarded"
)

var allReasons = append(append([]string{}, fetchfail.Reasons...), reasonNoMetrics)

// telemetry holds the scraper's own collectors. Children of the vectors on
// the hot path are bound once, so a scrape never hashes label values.
type telemetry struct {
	scrapes       prometheus.Counter
	errors        map[string]prometheus.Counter
	fieldErrors   [numFields]prometheus.Counter
	customErrors  prometheus.Counter
	duration      prometheus.Histogram
	unknownEngine *prometheus.CounterVec
}

func newTelemetry(reg prometheus.Registerer, store *datastore.Store, pools []string, waveEndpoints, narrowEndpoints *atomic.Int64) (*telemetry, error) {
	errVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "openepp_metrics_scrape_errors_total",
		Help: "Failed model-server metrics scrapes, by reason.",
	}, []string{"reason"})
	fieldVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "openepp_metrics_field_errors_total",
		Help: "Successful scrapes in which one metric field was missing or invalid (the field keeps its previous value).",
	}, []string{"field"})
	t := &telemetry{
		scrapes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "openepp_metrics_scrapes_total",
			Help: "Model-server metrics scrapes attempted.",
		}),
		errors: map[string]prometheus.Counter{},
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "openepp_metrics_scrape_duration_seconds",
			Help:    "Duration of one model-server metrics scrape (fetch, filter, parse, publish).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14),
		}),
		unknownEngine: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openepp_metrics_unknown_engine_total",
			Help: "Endpoints whose engine-type label names no configured engine (scraped with the default engine).",
		}, []string{"engine"}),
	}
	for _, r := range allReasons {
		t.errors[r] = errVec.WithLabelValues(r)
	}
	t.customErrors = fieldVec.WithLabelValues("customMetrics")
	for f := range numFields {
		t.fieldErrors[f] = fieldVec.WithLabelValues(f.String())
	}
	waves := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "openepp_metrics_wave_endpoints",
		Help: "Endpoints scraped together in shared waves; the others (new, failing, slow to answer, or with " +
			"--metrics-scrape-slots=-1) are scraped by a goroutine of their own.",
	}, func() float64 { return float64(waveEndpoints.Load()) })
	narrow := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "openepp_metrics_narrow_endpoints",
		Help: "Endpoints whose metrics server answers with only the metric families read (name[] query), " +
			"checked against a whole page; the others are scraped whole.",
	}, func() float64 { return float64(narrowEndpoints.Load()) })
	cs := []prometheus.Collector{t.scrapes, errVec, fieldVec, t.duration, t.unknownEngine, staleGauge(store), waves, narrow}
	cs = append(cs, poolGauges(store, pools)...)
	if reg == nil {
		return t, nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register scraper metrics: %w", err)
		}
	}
	return t, nil
}

// staleGauge is computed when the EPP's own metrics are collected, from the
// store, so it can never drift from the endpoints' flags.
func staleGauge(store *datastore.Store) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "openepp_metrics_stale_endpoints",
		Help: "Endpoints whose metrics are older than the staleness threshold or were never scraped.",
	}, func() float64 { return float64(countStale(store.Snapshot())) })
}

// countStale counts the endpoints flagged stale.
func countStale(eps []*endpoint.Endpoint) int {
	n := 0
	for _, e := range eps {
		if e.Stale() {
			n++
		}
	}
	return n
}

// freshStdDev is the population standard deviation over fresh endpoints:
// how unevenly the pool is loaded.
func freshStdDev(eps []*endpoint.Endpoint, get func(*endpoint.Metrics) float64) float64 {
	mean := freshAverage(eps, get)
	sum, n := 0.0, 0
	for _, e := range eps {
		if e.Stale() {
			continue
		}
		d := get(e.Metrics()) - mean
		sum += d * d
		n++
	}
	if n == 0 {
		return 0
	}
	return math.Sqrt(sum / float64(n))
}

func freshAverage(eps []*endpoint.Endpoint, get func(*endpoint.Metrics) float64) float64 {
	sum, n := 0.0, 0
	for _, e := range eps {
		if e.Stale() {
			continue
		}
		sum += get(e.Metrics())
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
