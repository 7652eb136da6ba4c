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

// maxModelLabels caps distinct model_name label values so a client sending
// random model names cannot blow up the metrics page.
const maxModelLabels = 1000

// Metrics are the request-path collectors, named as upstream GIE names them
// so existing dashboards keep working. A nil *Metrics records nothing.
type Metrics struct {
	requests  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqSizes  *prometheus.HistogramVec
	respSizes *prometheus.HistogramVec
	inputTok  *prometheus.HistogramVec
	outputTok *prometheus.HistogramVec
	cachedTok *prometheus.HistogramVec
	running   *prometheus.GaugeVec
	ntpot     *prometheus.HistogramVec
	schedule  prometheus.Histogram
	schedErrs prometheus.Counter
	attempts  *prometheus.CounterVec
	rewrites  *prometheus.CounterVec
	plugins   *prometheus.HistogramVec
	// pluginObs caches plugins' children: the set of plugins is fixed per
	// configuration, so it stays small.
	pluginObs sync.Map // pluginKey -> prometheus.Observer

	models *labelbudget.Budget
	mu     sync.RWMutex
	// pairs caches the per-request collectors' children by label pair; it
	// holds no more entries than the vectors have children.
	pairs map[labelPair]*pairMetrics
	// successes caches the attempts counter of each (endpoint, target
	// model) that was picked, so a decision does not hash five labels, and
	// lists the series PruneEndpoints deletes when the endpoint leaves.
	successes map[attemptKey]prometheus.Counter
}

// attemptKey names one success series of scheduler_attempts_total.
type attemptKey struct {
	pod, namespace string
	port           int
	target         string
}

// labelPair is a (model_name, target_model_name) label pair.
type labelPair struct{ model, target string }

// pairMetrics are the children of the per-model collectors for one label
// pair, so that a request looks them up once instead of hashing its labels
// for each of them.
type pairMetrics struct {
	reqSize, duration, respSize, inputTok, outputTok, cachedTok, ntpot prometheus.Observer
	running                                                            prometheus.Gauge
}

// NewMetrics registers the request metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	models := []string{"model_name", "target_model_name"}
	tokens := prometheus.ExponentialBuckets(1, 4, 12)
	sizes := prometheus.ExponentialBuckets(64, 4, 12)
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inference_objective_request_total",
			Help: "Requests scheduled, by model and priority."}, append(models, "priority")),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inference_objective_request_error_total",
			Help: "Requests answered with an error by the EPP, by HTTP status."}, append(models, "error_code")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_objective_request_duration_seconds",
			Help: "Time from request headers to response end.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 20)}, models),
		reqSizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_objective_request_sizes",
			Help: "Request body sizes in bytes.", Buckets: sizes}, models),
		respSizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_objective_response_sizes",
			Help: "Response body sizes in bytes.", Buckets: sizes}, models),
		inputTok: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_objective_input_tokens",
			Help: "Prompt tokens reported by the model server.", Buckets: tokens}, models),
		outputTok: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_objective_output_tokens",
			Help: "Completion tokens reported by the model server.", Buckets: tokens}, models),
		cachedTok: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_objective_prompt_cached_tokens",
			Help: "Prompt tokens served from the model server's prefix cache.", Buckets: tokens}, models),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inference_objective_running_requests",
			Help: "Requests scheduled and not yet completed."}, []string{"model_name"}),
		schedule: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "inference_extension_scheduler_e2e_duration_seconds",
			Help: "Time to make one scheduling decision.", Buckets: prometheus.ExponentialBuckets(1e-6, 2, 20)}),
		ntpot: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_objective_normalized_time_per_output_token_seconds",
			Help:    "Request duration divided by the output tokens the model server reported.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, models),
		schedErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "openepp_scheduler_failures_total",
			Help: "Scheduling attempts that found no endpoint."}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inference_extension_scheduler_attempts_total",
			Help: "Scheduling attempts by outcome, with the primary target of successful ones."},
			[]string{"status", "target_model_name", "pod_name", "namespace", "port"}),
		rewrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inference_extension_model_rewrite_decisions_total",
			Help: "Requests whose model an InferenceModelRewrite rule chose, by rule object, requested and target model."},
			[]string{"model_rewrite_name", "model_name", "target_model"}),
		plugins: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inference_extension_plugin_duration_seconds",
			Help: "Time spent in each plugin call, by extension point.", Buckets: prometheus.ExponentialBuckets(1e-6, 2, 20)},
			[]string{"extension_point", "plugin_type", "plugin_name"}),
		models:    labelbudget.New(maxModelLabels),
		pairs:     map[labelPair]*pairMetrics{},
		successes: map[attemptKey]prometheus.Counter{},
	}
	reg.MustRegister(m.requests, m.errors, m.duration, m.reqSizes, m.respSizes, m.inputTok, m.outputTok,
		m.cachedTok, m.ntpot, m.running, m.schedule, m.schedErrs, m.attempts, m.rewrites, m.plugins)
	return m
}

// label returns model, or "other" once the label budget is spent.
func (m *Metrics) label(model string) string { return m.models.Value(model) }

// pair returns the collectors' children for a request for model sent as
// target, under their budgeted labels.
func (m *Metrics) pair(model, target string) *pairMetrics {
	k := labelPair{m.label(model), m.label(target)}
	m.mu.RLock()
	p := m.pairs[k]
	m.mu.RUnlock()
	if p != nil {
		return p
	}
	p = &pairMetrics{
		reqSize:   m.reqSizes.WithLabelValues(k.model, k.target),
		duration:  m.duration.WithLabelValues(k.model, k.target),
		respSize:  m.respSizes.WithLabelValues(k.model, k.target),
		inputTok:  m.inputTok.WithLabelValues(k.model, k.target),
		outputTok: m.outputTok.WithLabelValues(k.model, k.target),
		cachedTok: m.cachedTok.WithLabelValues(k.model, k.target),
		ntpot:     m.ntpot.WithLabelValues(k.model, k.target),
		running:   m.running.WithLabelValues(k.model),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev := m.pairs[k]; prev != nil {
		return prev
	}
	m.pairs[k] = p
	return p
}

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

func (m *Metrics) requestStarted(req *scheduler.Request, bodyBytes int) {
	if m == nil {
		return
	}
	p := m.pair(req.IncomingModel, req.Model)
	m.requests.WithLabelValues(m.label(req.IncomingModel), m.label(req.Model), strconv.Itoa(req.Priority)).Inc()
	p.reqSize.Observe(float64(bodyBytes))
	p.running.Inc()
}

func (m *Metrics) requestError(model, target string, code int) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(m.label(model), m.label(target), strconv.Itoa(code)).Inc()
}

func (m *Metrics) requestDone(req *scheduler.Request, resp *scheduler.Response, d time.Duration) {
	if m == nil {
		return
	}
	p := m.pair(req.IncomingModel, req.Model)
	p.running.Dec()
	p.duration.Observe(d.Seconds())
	p.respSize.Observe(float64(resp.BodyBytes))
	if resp.UsageKnown {
		p.inputTok.Observe(float64(resp.Usage.PromptTokens))
		p.outputTok.Observe(float64(resp.Usage.CompletionTokens))
		p.cachedTok.Observe(float64(resp.Usage.CachedTokens))
		if n := resp.Usage.CompletionTokens; n > 0 && !resp.Cancelled {
			p.ntpot.Observe(d.Seconds() / float64(n))
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
