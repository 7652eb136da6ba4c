package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/labelbudget"
	"github.com/openepp/openepp/pkg/scheduler"
)

// maxLabelValues caps the distinct values of a client-chosen label (model
// name, fairness ID) so a client sending random ones cannot blow up the
// metrics page (llm-d's cap too).
const maxLabelValues = 1000

// fairnessIdle is how long a fairness ID's series outlive its last request
// once the label budget is full: agent-identity makes one ID per coding
// session, and without forgetting, the first thousand sessions would keep
// their series for good and every later one would be "other".
const fairnessIdle = 10 * time.Minute

// Metrics are the request-path collectors, named as upstream GIE and llm-d
// name them so existing dashboards keep working (see RequestAliases). A nil
// *Metrics records nothing.
type Metrics struct {
	vecs      requestVecs
	schedule  prometheus.Histogram
	schedErrs prometheus.Counter
	attempts  *prometheus.CounterVec
	rewrites  *prometheus.CounterVec
	plugins   *prometheus.HistogramVec
	// pluginObs caches plugins' children: the set of plugins is fixed per
	// configuration, so it stays small.
	pluginObs sync.Map // pluginKey -> prometheus.Observer

	models, fairness *labelbudget.Budget
	mu               sync.RWMutex
	// flows caches the per-request collectors' children by label set; it
	// holds no more entries than the vectors have children.
	flows map[flowKey]*flowMetrics
	// successes caches the attempts counter of each (endpoint, target
	// model) that was picked, so a decision does not hash five labels, and
	// lists the series PruneEndpoints deletes when the endpoint leaves.
	successes map[attemptKey]prometheus.Counter
}

// The scheduling collectors keep GIE's names; RequestAliases adds llm-d's.
const (
	nameSchedule = "inference_extension_scheduler_e2e_duration_seconds"
	nameAttempts = "inference_extension_scheduler_attempts_total"
	namePlugins  = "inference_extension_plugin_duration_seconds"
	nameRewrites = "inference_extension_model_rewrite_decisions_total"
)

// attemptKey names one success series of scheduler_attempts_total.
type attemptKey struct {
	pod, namespace string
	port           int
	target         string
}

// NewMetrics registers the request metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		vecs: newRequestVecs(),
		schedule: prometheus.NewHistogram(prometheus.HistogramOpts{Name: nameSchedule,
			Help: "Time to make one scheduling decision.", Buckets: prometheus.ExponentialBuckets(1e-6, 2, 20)}),
		schedErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "openepp_scheduler_failures_total",
			Help: "Scheduling attempts that found no endpoint."}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: nameAttempts,
			Help: "Scheduling attempts by outcome, with the primary target of successful ones."},
			[]string{"status", "target_model_name", "pod_name", "namespace", "port"}),
		rewrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: nameRewrites,
			Help: "Requests whose model an InferenceModelRewrite rule chose, by rule object, requested and target model."},
			[]string{"model_rewrite_name", "model_name", "target_model"}),
		plugins: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: namePlugins,
			Help: "Time spent in each plugin call, by extension point.", Buckets: prometheus.ExponentialBuckets(1e-6, 2, 20)},
			[]string{"extension_point", "plugin_type", "plugin_name"}),
		models:    labelbudget.New(maxLabelValues),
		flows:     map[flowKey]*flowMetrics{},
		successes: map[attemptKey]prometheus.Counter{},
	}
	m.fairness = labelbudget.NewForgetting(maxLabelValues, fairnessIdle, m.forgetFairness)
	reg.MustRegister(append(m.vecs.collectors(), m.schedule, m.schedErrs, m.attempts, m.rewrites, m.plugins)...)
	return m
}

// forgetFairness deletes the series of a fairness ID the label budget
// forgot, and their cached children.
func (m *Metrics) forgetFairness(id string) {
	for _, c := range m.vecs.collectors() {
		if v, ok := c.(interface{ DeletePartialMatch(prometheus.Labels) int }); ok {
			v.DeletePartialMatch(prometheus.Labels{"fairness_id": id})
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.flows {
		if k.fairness == id {
			delete(m.flows, k)
		}
	}
}

// label returns model, or "other" once the label budget is spent.
func (m *Metrics) label(model string) string { return m.models.Value(model) }

// scheduled records one scheduling decision for req (res is nil on error).
func (m *Metrics) scheduled(start time.Time, req *scheduler.Request, res *scheduler.Result, err error) {
	if m == nil {
		return
	}
	m.schedule.Observe(time.Since(start).Seconds())
	target := m.label(req.Model)
	if err != nil {
		m.schedErrs.Inc()
		m.attempts.WithLabelValues("failure", target, "", "", "").Inc()
		return
	}
	if t := res.Targets(); len(t) > 0 {
		m.success(attemptKey{pod: t[0].Name, namespace: t[0].Namespace, port: t[0].Port, target: target}).Inc()
	}
}

// success returns the attempts counter of k, creating its series once.
func (m *Metrics) success(k attemptKey) prometheus.Counter {
	m.mu.RLock()
	c := m.successes[k]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.successes[k]; c == nil {
		c = m.attempts.WithLabelValues("success", k.target, k.pod, k.namespace, strconv.Itoa(k.port))
		m.successes[k] = c
	}
	return c
}

// PruneEndpoints deletes the scheduler_attempts_total series of endpoints
// not in live, so that a pool whose pods are replaced (every rollout gives
// them new names) does not keep a series per pod it ever had. Failure
// series carry no endpoint and stay.
func (m *Metrics) PruneEndpoints(live []*endpoint.Endpoint) {
	if m == nil {
		return
	}
	type id struct {
		pod, namespace string
		port           int
	}
	present := make(map[id]bool, len(live))
	for _, e := range live {
		present[id{e.Name, e.Namespace, e.Port}] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.successes {
		if !present[id{k.pod, k.namespace, k.port}] {
			m.attempts.DeleteLabelValues("success", k.target, k.pod, k.namespace, strconv.Itoa(k.port))
			delete(m.successes, k)
		}
	}
}

type pluginKey struct {
	point string
	name  scheduler.TypedName
}

// ObservePlugin implements scheduler.PluginTimer.
func (m *Metrics) ObservePlugin(point string, p scheduler.TypedName, d time.Duration) {
	if m == nil {
		return
	}
	k := pluginKey{point, p}
	o, ok := m.pluginObs.Load(k)
	if !ok {
		o, _ = m.pluginObs.LoadOrStore(k, m.plugins.WithLabelValues(point, p.Type, p.Name))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

func (m *Metrics) rewritten(rule, model, target string) {
	if m == nil {
		return
	}
	m.rewrites.WithLabelValues(rule, m.label(model), m.label(target)).Inc()
}
