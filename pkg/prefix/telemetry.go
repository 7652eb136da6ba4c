package prefix

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/promreg"
)

// Metric names, upstream's.
const (
	metricIndexSize = "inference_extension_prefix_indexer_size"
	metricHitRatio  = "inference_extension_prefix_indexer_hit_ratio"
	metricHitBytes  = "inference_extension_prefix_indexer_hit_bytes"
)

// Aliases serve the index metrics under llm-d's names as well.
var Aliases = []promalias.Alias{
	{From: metricIndexSize, To: "llm_d_epp_prefix_indexer_size"},
	{From: metricHitRatio, To: "llm_d_epp_prefix_indexer_hit_ratio"},
	{From: metricHitBytes, To: "llm_d_epp_prefix_indexer_hit_bytes"},
}

// hitObservers are the per-request match histograms.
type hitObservers struct {
	ratio, bytes prometheus.Observer
}

// registerMetrics registers the index-size gauge and returns the hit-ratio
// and hit-bytes observers (nil when reg is nil). Both carry a const label plugin=<instance
// name>, so several producers can share one registry. A second instance of
// the same name (a config reload builds the new plugins before dropping the
// old) takes the gauge over and shares the histogram, so the series continue.
func registerMetrics(reg prometheus.Registerer, name string, ix *Index) (hitObservers, error) {
	if reg == nil {
		return hitObservers{}, nil
	}
	labels := prometheus.Labels{"plugin": name}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        metricIndexSize,
		Help:        "Entries ((endpoint, prompt block) pairs) in the approximate prefix-cache index.",
		ConstLabels: labels,
	}, func() float64 { return float64(ix.Len()) })
	if err := reg.Register(size); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			return hitObservers{}, fmt.Errorf("register %s: %w", metricIndexSize, err)
		}
		reg.Unregister(dup.ExistingCollector)
		if err := reg.Register(size); err != nil {
			return hitObservers{}, fmt.Errorf("register %s: %w", metricIndexSize, err)
		}
	}
	ratio, err := promreg.Shared(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        metricHitRatio,
		Help:        "Per request, the largest fraction of the prompt's blocks any endpoint held.",
		ConstLabels: labels,
		Buckets:     prometheus.LinearBuckets(0, 0.1, 11),
	}))
	if err != nil {
		return hitObservers{}, err
	}
	bytes, err := promreg.Shared(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        metricHitBytes,
		Help:        "Per request, the prompt bytes in the longest prefix any endpoint held.",
		ConstLabels: labels,
		Buckets:     prometheus.ExponentialBuckets(64, 4, 10),
	}))
	if err != nil {
		return hitObservers{}, err
	}
	return hitObservers{ratio: ratio, bytes: bytes}, nil
}
