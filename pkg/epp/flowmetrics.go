package epp

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/labelbudget"
	"github.com/openepp/openepp/pkg/scheduler"
)

// maxFlowLabels caps the distinct fairness IDs and model names the
// flow-control series carry: clients choose both, so past the cap they are
// counted under "other" (as llm-d caps them).
const maxFlowLabels = 1000

// flowMetrics are the flow-control series, named as upstream GIE names
// them.
type flowMetrics struct {
	pool       string
	waitTime   *prometheus.HistogramVec
	enqueue    *prometheus.HistogramVec
	cycles     prometheus.Histogram
	outcomes   *prometheus.CounterVec
	queueSize  *prometheus.GaugeVec
	queueBytes *prometheus.GaugeVec
	// saturation is each pool's rating, by pool label.
	saturation sync.Map // string → func(time.Time) float64
	stale      atomic.Pointer[staleSource]

	mu     sync.RWMutex
	flows  *labelbudget.Budget
	models *labelbudget.Budget
	// series caches each label set's children, so a request hashes its
	// labels once, not for every series.
	series map[seriesKey]*flowSeries
}

// seriesKey is a request's raw labels.
type seriesKey struct {
	flow          string
	priority      int
	model, target string
	pool          string
}

// flowSeries are the children of one label set, under budgeted labels.
type flowSeries struct {
	values     []string // fairness_id, priority, inference_pool, model_name, target_model_name
	size       prometheus.Gauge
	bytes      prometheus.Gauge
	dispatched prometheus.Observer
	// passed counts this series' dispatched requests in llm-d's outcome
	// counter (labelled by priority only).
	passed prometheus.Counter
}

func newFlowMetrics(reg prometheus.Registerer, pool string) *flowMetrics {
	queue := []string{"fairness_id", "priority", "inference_pool", "model_name", "target_model_name"}
	m := &flowMetrics{
		pool: pool,
		waitTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "inference_extension_flow_control_request_queue_duration_seconds",
			Help:    "Time requests spent in flow control, by outcome (Dispatched, RejectedCapacity, EvictedTTL, ...).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 22)},
			[]string{"fairness_id", "priority", "outcome", "inference_pool", "model_name", "target_model_name"}),
		enqueue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "inference_extension_flow_control_request_enqueue_duration_seconds",
			Help:    "Time a request that could not pass at once took to be queued (outcome Enqueued) or refused at the door.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12)},
			[]string{"fairness_id", "priority", "outcome"}),
		cycles: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "inference_extension_flow_control_dispatch_cycle_duration_seconds",
			Help:    "Time of one dispatcher pass over waiting requests (expiry and releases; waits for released requests to be scheduled excluded).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12)}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_d_epp_flow_control_requests_total",
			Help: "Requests that passed through flow control, by outcome (llm-d's name; no GIE counterpart)."},
			[]string{"outcome", "priority", "inference_pool"}),
		queueSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inference_extension_flow_control_queue_size",
			Help: "Requests waiting in flow control."}, queue),
		queueBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inference_extension_flow_control_queue_bytes",
			Help: "Request bytes waiting in flow control."}, queue),
		models: labelbudget.New(maxFlowLabels),
		series: map[seriesKey]*flowSeries{},
	}
	// Flows come and go (one per agent session with agent-identity): as the
	// request metrics do, forget those idle for fairnessIdle once full.
	m.flows = labelbudget.NewForgetting(maxFlowLabels, flowIdle, m.forgetFlow)
	reg.MustRegister(m.waitTime, m.enqueue, m.cycles, m.outcomes, m.queueSize, m.queueBytes, saturationCollector{m}, staleCollector{m})
	return m
}

// saturationDesc is the detector's rating of each pool.
var saturationDesc = prometheus.NewDesc("inference_extension_flow_control_pool_saturation",
	"The saturation detector's rating of the pool (>= 1: requests wait).", []string{"inference_pool"}, nil)

// saturationCollector rates every watched pool when the page is gathered;
// before any is watched it serves 0 for the EPP's pool label.
type saturationCollector struct{ m *flowMetrics }

func (c saturationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- saturationDesc }

func (c saturationCollector) Collect(ch chan<- prometheus.Metric) {
	now, watched := time.Now(), false
	c.m.saturation.Range(func(pool, f any) bool {
		watched = true
		ch <- prometheus.MustNewConstMetric(saturationDesc, prometheus.GaugeValue, f.(func(time.Time) float64)(now), pool.(string))
		return true
	})
	if !watched {
		ch <- prometheus.MustNewConstMetric(saturationDesc, prometheus.GaugeValue, 0, c.m.pool)
	}
}

// staleSource is a detector that counts endpoints with stale metrics, and
// the endpoints it rates (every pool's).
type staleSource struct {
	detector string
	count    func(time.Time) int
}

// staleCounter is a detector that counts stale endpoints.
type staleCounter interface {
	StaleAmong([]*endpoint.Endpoint, time.Time) int
}

// staleDesc is llm-d's flow_control_stale_endpoints: the endpoints the
// detector finds with stale or missing metrics, so a pool held by failing
// scrapes is told apart from a loaded one. Counted when read, over every
// pool's endpoints (llm-d's gauge has no pool label).
var staleDesc = prometheus.NewDesc("llm_d_epp_flow_control_stale_endpoints",
	"Endpoints whose metrics are missing or older than the saturation detector's staleness threshold.",
	[]string{"detector"}, nil)

// staleCollector serves staleDesc while the detector reports it.
type staleCollector struct{ m *flowMetrics }

func (c staleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- staleDesc }

func (c staleCollector) Collect(ch chan<- prometheus.Metric) {
	if s := c.m.stale.Load(); s != nil {
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, float64(s.count(time.Now())), s.detector)
	}
}

// flowIdle is how long an idle flow's series stay once the flow budget is
// full (as server's fairness IDs).
const flowIdle = 10 * time.Minute

// forgetFlow deletes the series of a flow the budget forgot, and their
// cached children; a request still holding them updates orphans.
func (m *flowMetrics) forgetFlow(id string) {
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{m.waitTime, m.enqueue, m.queueSize, m.queueBytes} {
		v.DeletePartialMatch(prometheus.Labels{"fairness_id": id})
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.series {
		if s.values[0] == id {
			delete(m.series, k)
		}
	}
}

// watchSaturation makes pool's saturation series read f, and the
// stale-endpoint gauge count d's stale endpoints among all when d counts
// them (nil: no detector).
func (m *flowMetrics) watchSaturation(pool string, f func(time.Time) float64, d scheduler.SaturationDetector,
	all func() []*endpoint.Endpoint) {
	m.saturation.Store(pool, f)
	if c, ok := d.(staleCounter); ok {
		m.stale.Store(&staleSource{detector: d.TypedName().Name,
			count: func(now time.Time) int { return c.StaleAmong(all(), now) }})
		return
	}
	m.stale.Store(nil)
}

// of returns the series of req's labels.
func (m *flowMetrics) of(req *scheduler.Request) *flowSeries {
	k := seriesKey{req.FairnessID, req.Priority, req.IncomingModel, req.Model, req.Pool}
	pool := m.pool
	if k.pool != "" {
		pool = k.pool
	}
	m.mu.RLock()
	s := m.series[k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	// The budgets are asked outside the lock: forgetting a flow takes it.
	v := []string{m.flows.Value(k.flow), strconv.Itoa(k.priority), pool, m.models.Value(k.model), m.models.Value(k.target)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.series[k]; s != nil {
		return s
	}
	s = &flowSeries{values: v, size: m.queueSize.WithLabelValues(v...), bytes: m.queueBytes.WithLabelValues(v...),
		dispatched: m.waitTime.WithLabelValues(v[0], v[1], flowcontrol.Dispatched.String(), v[2], v[3], v[4]),
		passed:     m.outcomes.WithLabelValues(flowcontrol.Dispatched.String(), v[1], v[2])}
	// Past the budgets many raw label sets share one series; cache only
	// those within them so the map stays bounded.
	if len(m.series) < maxFlowLabels*4 {
		m.series[k] = s
	}
	return s
}

// queued moves the queue gauges; a request counts while it is inside
// Admit, which on the fast path is a microsecond.
func (s *flowSeries) queued(n int, bytes int64) {
	s.size.Add(float64(n))
	s.bytes.Add(float64(bytes))
}

func (m *flowMetrics) finished(s *flowSeries, o flowcontrol.Outcome, waited time.Duration) {
	obs, n := s.dispatched, s.passed
	if o != flowcontrol.Dispatched {
		v := s.values
		obs = m.waitTime.WithLabelValues(v[0], v[1], o.String(), v[2], v[3], v[4])
		n = m.outcomes.WithLabelValues(o.String(), v[1], v[2])
	}
	obs.Observe(waited.Seconds())
	n.Inc()
}

// enqueued records a slow-path request's way into the queue (or its
// refusal there); requests on the fast path are not timed.
func (m *flowMetrics) enqueued(r flowcontrol.Request, outcome string, took time.Duration) {
	m.enqueue.WithLabelValues(m.flows.Value(r.FlowID), strconv.Itoa(r.Priority), outcome).Observe(took.Seconds())
}

// cycle records one dispatcher pass.
func (m *flowMetrics) cycle(took time.Duration) { m.cycles.Observe(took.Seconds()) }
