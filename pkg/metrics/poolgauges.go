package metrics

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
)

// poolGauges are upstream's inference_pool_* gauges (and llm-d's standard
// deviations), one series per pool (label name), averaged over the pool's
// fresh endpoints and computed at collection time (no refresh loop). The
// pools are the declared ones, which have series even while empty, and
// every pool an endpoint names; endpoints without a pool belong to the
// declared pool when there is exactly one (a selector-mode EPP has none and
// no series).
func poolGauges(store *datastore.Store, declared []string) []prometheus.Collector {
	groups := func() []poolGroup { return groupByPool(store.Snapshot(), declared) }
	gauge := func(name, help string, value func([]*endpoint.Endpoint) float64) prometheus.Collector {
		return poolGauge{desc: prometheus.NewDesc(name, help, []string{"name"}, nil), groups: groups, value: value}
	}
	avg := func(get func(*endpoint.Metrics) float64) func([]*endpoint.Endpoint) float64 {
		return func(eps []*endpoint.Endpoint) float64 { return freshAverage(eps, get) }
	}
	stdDev := func(get func(*endpoint.Metrics) float64) func([]*endpoint.Endpoint) float64 {
		return func(eps []*endpoint.Endpoint) float64 { return freshStdDev(eps, get) }
	}
	kv := func(m *endpoint.Metrics) float64 { return m.KVCacheUsagePercent }
	queue := func(m *endpoint.Metrics) float64 { return float64(m.WaitingQueueSize) }
	running := func(m *endpoint.Metrics) float64 { return float64(m.RunningRequestsSize) }
	return []prometheus.Collector{
		gauge("llm_d_epp_std_dev_kv_cache_utilization", "Standard deviation of KV-cache utilization over the pool's fresh endpoints.", stdDev(kv)),
		gauge("llm_d_epp_std_dev_queue_size", "Standard deviation of waiting-queue length over the pool's fresh endpoints.", stdDev(queue)),
		gauge("llm_d_epp_std_dev_running_requests", "Standard deviation of running requests over the pool's fresh endpoints.", stdDev(running)),
		gauge("inference_pool_average_kv_cache_utilization", "Average KV-cache utilization (0..1) of the pool's fresh endpoints.", avg(kv)),
		gauge("inference_pool_average_queue_size", "Average waiting-queue length of the pool's fresh endpoints.", avg(queue)),
		gauge("inference_pool_average_running_requests", "Average running requests of the pool's fresh endpoints.", avg(running)),
		gauge("inference_pool_ready_pods", "Endpoints in the pool.", func(eps []*endpoint.Endpoint) float64 { return float64(len(eps)) }),
		gauge("openepp_pool_stale_endpoints", "Endpoints of the pool whose metrics are older than the staleness threshold or were never scraped.",
			func(eps []*endpoint.Endpoint) float64 { return float64(countStale(eps)) }),
		perPodQueue{groups: groups, desc: prometheus.NewDesc("inference_pool_per_pod_queue_size",
			"Waiting-queue length of each fresh endpoint of the pool.", []string{"name", "model_server_pod"}, nil)},
	}
}

// poolGroup is one pool's endpoints.
type poolGroup struct {
	name string
	eps  []*endpoint.Endpoint
}

// groupByPool splits a snapshot by pool (see poolGauges), sorted by name.
func groupByPool(all []*endpoint.Endpoint, declared []string) []poolGroup {
	if len(declared) == 1 && !slices.ContainsFunc(all, func(e *endpoint.Endpoint) bool { return e.Pool != "" && e.Pool != declared[0] }) {
		return []poolGroup{{declared[0], all}} // the common case: no copy
	}
	byPool := map[string][]*endpoint.Endpoint{}
	for _, p := range declared {
		byPool[p] = nil
	}
	for _, e := range all {
		if e.Pool != "" {
			byPool[e.Pool] = append(byPool[e.Pool], e)
		}
	}
	out := make([]poolGroup, 0, len(byPool))
	for p, eps := range byPool {
		out = append(out, poolGroup{p, eps})
	}
	slices.SortFunc(out, func(a, b poolGroup) int { return strings.Compare(a.name, b.name) })
	return out
}

// poolGauge is one gauge with a series per pool.
type poolGauge struct {
	desc   *prometheus.Desc
	groups func() []poolGroup
	value  func([]*endpoint.Endpoint) float64
}

func (g poolGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g poolGauge) Collect(ch chan<- prometheus.Metric) {
	for _, pg := range g.groups() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.value(pg.eps), pg.name)
	}
}

// perPodQueue is upstream's inference_pool_per_pod_queue_size: one series
// per fresh endpoint, built at collection time, so departed endpoints leave
// no series behind.
type perPodQueue struct {
	groups func() []poolGroup
	desc   *prometheus.Desc
}

func (c perPodQueue) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c perPodQueue) Collect(ch chan<- prometheus.Metric) {
	for _, pg := range c.groups() {
		for _, e := range pg.eps {
			if !e.Stale() {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(e.Metrics().WaitingQueueSize), pg.name, e.Name)
			}
		}
	}
}
