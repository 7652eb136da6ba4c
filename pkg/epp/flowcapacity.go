package epp

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/flowcontrol"
)

// A band without a limit is measured against llm-d's per-band defaults,
// so that every configured band reports a utilization, as llm-d's does.
const (
	defaultBandRequests = 5000
	defaultBandBytes    = 1_000_000_000
)

// flowCapacity is llm-d's flow-control utilization gauges, computed from
// the controller when the page is gathered: per band the share of its
// request and byte limits that waits, and the same against the global
// limits when they are set. Nothing is served while flow control is off.
type flowCapacity struct {
	f       *flowControl
	enabled atomic.Bool

	bandRequests, bandBytes, globalRequests, globalBytes *prometheus.Desc
}

func newFlowCapacity(f *flowControl) *flowCapacity {
	band := []string{"priority", "inference_pool"}
	global := []string{"inference_pool"}
	return &flowCapacity{f: f,
		bandRequests: prometheus.NewDesc("llm_d_epp_flow_control_capacity_utilization_requests",
			"Share of each priority band's request limit (5000 when unset) held by waiting requests.", band, nil),
		bandBytes: prometheus.NewDesc("llm_d_epp_flow_control_capacity_utilization_bytes",
			"Share of each priority band's byte limit (1e9 when unset) held by waiting requests.", band, nil),
		globalRequests: prometheus.NewDesc("llm_d_epp_flow_control_global_capacity_utilization_requests",
			"Share of the global request limit held by waiting requests (only when the limit is set).", global, nil),
		globalBytes: prometheus.NewDesc("llm_d_epp_flow_control_global_capacity_utilization_bytes",
			"Share of the global byte limit held by waiting requests (only when the limit is set).", global, nil),
	}
}

func (c *flowCapacity) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bandRequests
	ch <- c.bandBytes
	ch <- c.globalRequests
	ch <- c.globalBytes
}

func (c *flowCapacity) Collect(ch chan<- prometheus.Metric) {
	if !c.enabled.Load() {
		return
	}
	c.f.each(func(fp *flowPool) { c.collectPool(ch, fp.gate.ctl, fp.name) })
}

// collectPool serves one controller's series under its pool's label.
func (c *flowCapacity) collectPool(ch chan<- prometheus.Metric, ctl *flowcontrol.Controller, pool string) {
	var requests, bytes int64
	for _, b := range ctl.BandUsage() {
		p := strconv.Itoa(b.Priority)
		ch <- prometheus.MustNewConstMetric(c.bandRequests, prometheus.GaugeValue, share(b.Requests, b.MaxRequests, defaultBandRequests), p, pool)
		ch <- prometheus.MustNewConstMetric(c.bandBytes, prometheus.GaugeValue, share(b.Bytes, b.MaxBytes, defaultBandBytes), p, pool)
		requests, bytes = requests+b.Requests, bytes+b.Bytes
	}
	maxRequests, maxBytes := ctl.Limits()
	if maxRequests > 0 {
		ch <- prometheus.MustNewConstMetric(c.globalRequests, prometheus.GaugeValue, share(requests, maxRequests, 0), pool)
	}
	if maxBytes > 0 {
		ch <- prometheus.MustNewConstMetric(c.globalBytes, prometheus.GaugeValue, share(bytes, maxBytes, 0), pool)
	}
}

// share is used/limit, limit falling back to fallback when unset.
func share(used, limit, fallback int64) float64 {
	if limit <= 0 {
		limit = fallback
	}
	if limit <= 0 {
		return 0
	}
	return float64(used) / float64(limit)
}
