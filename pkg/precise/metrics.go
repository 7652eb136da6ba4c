package precise

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/promreg"
)

// indexGauge reports the size of whichever index the producer uses now
// (a reload may hand it the previous instance's).
type indexGauge struct {
	ix   atomic.Pointer[Index]
	desc *prometheus.Desc
}

func (g *indexGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *indexGauge) Collect(ch chan<- prometheus.Metric) {
	if ix := g.ix.Load(); ix != nil {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(ix.Keys()))
	}
}

func newProducerMetrics(reg prometheus.Registerer, plugin string, ix *Index) (*producerMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	events, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "openepp_precise_prefix_events_total",
		Help: "KV events precise-prefix-cache-producer received, by outcome: stored, removed and cleared blocks; orphan (parent never seen), other_tier, other_group (a hybrid model's sliding-window or state-space cache group), malformed, unknown (event kinds not known), gap (lost events: the server's blocks are forgotten), disconnected, undecodable, unknown_source (a topic naming no endpoint of the pool).",
	}, []string{"plugin", "outcome"}))
	if err != nil {
		return nil, err
	}
	ratio, err := promreg.Shared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "openepp_precise_prefix_match_ratio",
		Help:    "Per request, the longest prefix a candidate holds as a fraction of the prompt's blocks, per precise-prefix-cache-producer.",
		Buckets: []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1},
	}, []string{"plugin"}))
	if err != nil {
		return nil, err
	}
	subs, err := promreg.Shared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "openepp_precise_prefix_subscriptions",
		Help: "KV-event subscriptions precise-prefix-cache-producer holds open (1 when binding zmqEndpoint; one per endpoint with discoverPods).",
	}, []string{"plugin"}))
	if err != nil {
		return nil, err
	}
	// A reload registers the same plugin again: Shared then returns the
	// previous instance's gauge, which is pointed at this index.
	g, err := promreg.Shared(reg, &indexGauge{desc: prometheus.NewDesc("openepp_precise_prefix_index_blocks",
		"Distinct blocks the precise prefix index holds.", nil, prometheus.Labels{"plugin": plugin})})
	if err != nil {
		return nil, err
	}
	g.ix.Store(ix)
	m := &producerMetrics{events: events, ratio: ratio.WithLabelValues(plugin), subs: subs.WithLabelValues(plugin), plugin: plugin, blocks: g}
	return m, nil
}
