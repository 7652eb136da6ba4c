package prefix

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, upstream's.
const (
	metricIndexSize = "inference_extension_prefix_indexer_size"
	metricHitRatio  = "inference_extension_prefix_indexer_hit_ratio"
)

// registerMetrics registers the index-size gauge and returns the hit-ratio
// observer (nil when reg is nil). Both carry a const label plugin=<instance
// name>, so several producers can share one registry. A second instance of
// the same name (a config reload builds the new plugins before dropping the
// old) takes the gauge over and shares the histogram, so the series continue.
func registerMetrics(reg prometheus.Registerer, name string, ix *Index) (prometheus.Observer, error) {
	if reg == nil {
		return nil, nil
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
			return nil, fmt.Errorf("register %s: %w", metricIndexSize, err)
		}
		reg.Unregister(dup.ExistingCollector)
		if err := reg.Register(size); err != nil {
			return nil, fmt.Errorf("register %s: %w", metricIndexSize, err)
		}
	}
	hits := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        metricHitRatio,
		Help:        "Per request, the largest fraction of the prompt's blocks any endpoint held.",
		ConstLabels: labels,
		Buckets:     prometheus.LinearBuckets(0, 0.1, 11),
	})
	if err := reg.Register(hits); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			return nil, fmt.Errorf("register %s: %w", metricHitRatio, err)
		}
		existing, ok := dup.ExistingCollector.(prometheus.Histogram)
		if !ok {
			return nil, fmt.Errorf("register %s: %w", metricHitRatio, err)
		}
		return existing, nil
	}
	return hits, nil
}
