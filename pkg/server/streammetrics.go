package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StreamMetrics are llm-d's opt-in ext_proc stream metrics
// (--enable-grpc-stream-metrics): how many proxy streams are open, how long
// they stay open and how they end. A nil *StreamMetrics records nothing.
type StreamMetrics struct {
	inflight prometheus.Gauge
	duration prometheus.Histogram
	ended    [codes.Unauthenticated + 1]prometheus.Counter // by gRPC code
}

// NewStreamMetrics registers the stream metrics on reg.
func NewStreamMetrics(reg prometheus.Registerer) *StreamMetrics {
	m := &StreamMetrics{
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "llm_d_epp_extproc_streams_inflight",
			Help: "ext_proc streams open now."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "llm_d_epp_extproc_stream_duration_seconds",
			Help: "How long an ext_proc stream stayed open.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
	}
	ended := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_d_epp_extproc_streams_total",
		Help: "ext_proc streams ended, by the gRPC status the EPP ended them with."}, []string{"code"})
	for c := range m.ended {
		m.ended[c] = ended.WithLabelValues(codes.Code(c).String())
	}
	reg.MustRegister(m.inflight, m.duration, ended)
	return m
}

func (m *StreamMetrics) started() {
	if m != nil {
		m.inflight.Inc()
	}
}

func (m *StreamMetrics) finished(err error, d time.Duration) {
	if m == nil {
		return
	}
	m.inflight.Dec()
	m.duration.Observe(d.Seconds())
	c := status.Code(err)
	if int(c) >= len(m.ended) {
		c = codes.Unknown
	}
	m.ended[c].Inc()
}
