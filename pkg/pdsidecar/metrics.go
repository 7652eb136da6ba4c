package pdsidecar

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the requests and prefill-call counters.
const (
	resultPassthrough   = "passthrough"
	resultDisaggregated = "disaggregated"
	resultFallback      = "fallback"
	resultRejected      = "rejected"
	resultCanceled      = "canceled"

	outcomeSuccess  = "success"
	outcomeFailure  = "failure"
	outcomeCanceled = "canceled"

	legPrefill = "prefill"
	legLocal   = "local"
)

// metrics are a Handler's collectors (see the package doc).
type metrics struct {
	requests  *prometheus.CounterVec
	calls     *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
	duration  prometheus.Histogram
	p2pPulls  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openepp_pd_sidecar_requests_total",
			Help: "Generate requests through the P/D sidecar, by result (passthrough, disaggregated, fallback, rejected, canceled).",
		}, []string{"result"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openepp_pd_sidecar_prefill_calls_total",
			Help: "Prefill calls to remote prefillers, by outcome (success, failure, canceled).",
		}, []string{"outcome"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openepp_pd_sidecar_fallbacks_total",
			Help: "Requests naming a prefiller that were decoded with a local prefill, by reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "openepp_pd_sidecar_prefill_duration_seconds",
			Help:    "Duration of prefill calls that ended, successful or not.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		p2pPulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openepp_pd_sidecar_p2p_pulls_total",
			Help: "Requests sent with a kv_transfer_params.p2p block naming a KV cache source, by leg (prefill, local).",
		}, []string{"leg"}),
	}
	// Every series exists from the start, so rates and alerts see zeros.
	for _, r := range []string{resultPassthrough, resultDisaggregated, resultFallback, resultRejected, resultCanceled} {
		m.requests.WithLabelValues(r)
	}
	for _, o := range []string{outcomeSuccess, outcomeFailure, outcomeCanceled} {
		m.calls.WithLabelValues(o)
	}
	for _, r := range []string{FallbackUnreachable, FallbackTimeout, FallbackErrorStatus, FallbackNoKVTransferParams, FallbackUnsupportedPath} {
		m.fallbacks.WithLabelValues(r)
	}
	for _, l := range []string{legPrefill, legLocal} {
		m.p2pPulls.WithLabelValues(l)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.calls, m.fallbacks, m.duration, m.p2pPulls} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
