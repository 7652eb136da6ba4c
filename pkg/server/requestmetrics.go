package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/scheduler"
)

// The per-request metrics are recorded once, under llm-d's names and labels
// (model, target model, fairness ID, priority); GIE's inference_objective_*
// families are served from them by summing the extra labels away
// (RequestAliases), so dashboards of either project work without a second
// observation on the request path.
const (
	nameRequests   = "llm_d_epp_request_total"
	nameErrors     = "llm_d_epp_request_error_total"
	nameDuration   = "llm_d_epp_request_duration_seconds"
	nameReqSize    = "llm_d_epp_request_size_bytes"
	nameRespSize   = "llm_d_epp_response_size_bytes"
	nameInputTok   = "llm_d_epp_request_input_tokens"
	nameOutputTok  = "llm_d_epp_request_output_tokens"
	nameCachedTok  = "llm_d_epp_request_cached_tokens"
	nameRunning    = "llm_d_epp_request_running"
	nameNTPOT      = "llm_d_epp_request_ntpot_seconds"
	nameTTFT       = "llm_d_epp_request_ttft_seconds"
	nameTPOT       = "llm_d_epp_request_streaming_tpot_seconds"
	nameITL        = "llm_d_epp_request_streaming_itl_seconds"
	nameReqHandled = "llm_d_epp_request_processing_duration_seconds"
	nameRespBusy   = "llm_d_epp_response_processing_duration_seconds"
)

// RequestAliases serve GIE's and llm-d's names for the families NewMetrics
// records under only one of them.
var RequestAliases = []promalias.Alias{
	{From: nameRequests, To: "inference_objective_request_total", Sum: []string{"fairness_id"}},
	{From: nameErrors, To: "inference_objective_request_error_total", Sum: []string{"fairness_id", "priority"}},
	{From: nameDuration, To: "inference_objective_request_duration_seconds", Sum: []string{"fairness_id", "priority"}},
	{From: nameReqSize, To: "inference_objective_request_sizes", Sum: []string{"fairness_id", "priority"}},
	{From: nameRespSize, To: "inference_objective_response_sizes", Sum: []string{"fairness_id", "priority"}},
	{From: nameInputTok, To: "inference_objective_input_tokens", Sum: []string{"fairness_id", "priority"}},
	{From: nameOutputTok, To: "inference_objective_output_tokens", Sum: []string{"fairness_id", "priority"}},
	{From: nameCachedTok, To: "inference_objective_prompt_cached_tokens", Sum: []string{"fairness_id", "priority"}},
	{From: nameRunning, To: "inference_objective_running_requests", Sum: []string{"target_model_name", "fairness_id", "priority"}},
	{From: nameNTPOT, To: "inference_objective_normalized_time_per_output_token_seconds", Sum: []string{"fairness_id", "priority"}},
	// GIE records these two with its latency predictor only; they are the
	// same measurements.
	{From: nameTTFT, To: "inference_objective_request_ttft_seconds", Sum: []string{"fairness_id", "priority", "streaming"}},
	{From: nameTPOT, To: "inference_objective_request_tpot_seconds", Sum: []string{"fairness_id", "priority"}},
	{From: nameSchedule, To: "llm_d_epp_scheduler_e2e_duration_seconds"},
	{From: nameAttempts, To: "llm_d_epp_scheduler_attempts_total", Labels: map[string]string{"pod_name": "endpoint_name"}},
	{From: namePlugins, To: "llm_d_epp_plugin_duration_seconds"},
	{From: nameRewrites, To: "llm_d_epp_model_rewrite_decisions_total"},
}

// requestVecs are the per-request collectors.
type requestVecs struct {
	requests                                                    *prometheus.CounterVec
	errors                                                      *prometheus.CounterVec
	duration, reqSize, respSize, inputTok, outputTok, cachedTok *prometheus.HistogramVec
	ntpot, ttft, tpot, itl                                      *prometheus.HistogramVec
	running                                                     *prometheus.GaugeVec
	reqHandled, respBusy                                        prometheus.Histogram
}

func newRequestVecs() requestVecs {
	labels := []string{"model_name", "target_model_name", "fairness_id", "priority"}
	hist := func(name, help string, buckets []float64, extra ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets},
			append(append([]string{}, labels...), extra...))
	}
	tokens := prometheus.ExponentialBuckets(1, 4, 12)
	sizes := prometheus.ExponentialBuckets(64, 4, 12)
	latency := prometheus.ExponentialBuckets(0.005, 2, 20)
	perToken := prometheus.ExponentialBuckets(0.001, 2, 14)
	epp := prometheus.ExponentialBuckets(25e-6, 2, 16) // 25 µs .. 0.8 s
	return requestVecs{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: nameRequests,
			Help: "Requests scheduled, by model, fairness ID and priority."}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: nameErrors,
			Help: "Requests answered with an error by the EPP, by HTTP status."}, append(append([]string{}, labels...), "error_code")),
		duration:  hist(nameDuration, "Time from request headers to response end.", latency),
		reqSize:   hist(nameReqSize, "Request body sizes in bytes.", sizes),
		respSize:  hist(nameRespSize, "Response body sizes in bytes.", sizes),
		inputTok:  hist(nameInputTok, "Prompt tokens reported by the model server.", tokens),
		outputTok: hist(nameOutputTok, "Completion tokens reported by the model server.", tokens),
		cachedTok: hist(nameCachedTok, "Prompt tokens served from the model server's prefix cache.", tokens),
		ntpot:     hist(nameNTPOT, "Request duration divided by the output tokens the model server reported.", perToken),
		ttft: hist(nameTTFT, "Time from request headers to the first response body byte (streaming=\"true\"), "+
			"or to the response end for a response that is not streamed.", latency, "streaming"),
		tpot: hist(nameTPOT, "Streamed responses: (duration - time to first token) / (output tokens - 1).", perToken),
		itl:  hist(nameITL, "Streamed responses: time between consecutive non-empty response body chunks.", perToken),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: nameRunning,
			Help: "Requests scheduled and not yet completed."}, labels),
		reqHandled: prometheus.NewHistogram(prometheus.HistogramOpts{Name: nameReqHandled, Buckets: epp,
			Help: "EPP time from request headers to its answer (routing or error), admission wait included."}),
		respBusy: prometheus.NewHistogram(prometheus.HistogramOpts{Name: nameRespBusy, Buckets: epp,
			Help: "EPP time spent handling one response's headers, body chunks and trailers, summed."}),
	}
}

func (v requestVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.requests, v.errors, v.duration, v.reqSize, v.respSize, v.inputTok,
		v.outputTok, v.cachedTok, v.ntpot, v.ttft, v.tpot, v.itl, v.running, v.reqHandled, v.respBusy}
}

// flowKey is one label set of the per-request collectors.
type flowKey struct {
	model, target, fairness string
	priority                int
}

// flowMetrics are the per-request collectors' children for one label set,
// looked up once per request instead of hashing labels per observation.
type flowMetrics struct {
	requests                                                    prometheus.Counter
	reqSize, duration, respSize, inputTok, outputTok, cachedTok prometheus.Observer
	ntpot, tpot, itl                                            prometheus.Observer
	ttft                                                        [2]prometheus.Observer // [streaming]
	running                                                     prometheus.Gauge
}

// flow returns the children for req's label set, under budgeted labels.
func (m *Metrics) flow(req *scheduler.Request) *flowMetrics {
	k := flowKey{m.label(req.IncomingModel), m.label(req.Model), m.fairness.Value(req.FairnessID), req.Priority}
	m.mu.RLock()
	f := m.flows[k]
	m.mu.RUnlock()
	if f != nil {
		return f
	}
	l := []string{k.model, k.target, k.fairness, strconv.Itoa(k.priority)}
	v := m.vecs
	f = &flowMetrics{
		requests: v.requests.WithLabelValues(l...),
		reqSize:  v.reqSize.WithLabelValues(l...), duration: v.duration.WithLabelValues(l...),
		respSize: v.respSize.WithLabelValues(l...), inputTok: v.inputTok.WithLabelValues(l...),
		outputTok: v.outputTok.WithLabelValues(l...), cachedTok: v.cachedTok.WithLabelValues(l...),
		ntpot: v.ntpot.WithLabelValues(l...), tpot: v.tpot.WithLabelValues(l...), itl: v.itl.WithLabelValues(l...),
		ttft:    [2]prometheus.Observer{v.ttft.WithLabelValues(append(l, "false")...), v.ttft.WithLabelValues(append(l, "true")...)},
		running: v.running.WithLabelValues(l...),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev := m.flows[k]; prev != nil {
		return prev
	}
	m.flows[k] = f
	return f
}

// requestStarted records a scheduled request and returns its collectors,
// which the exchange keeps for the rest of the request.
func (m *Metrics) requestStarted(req *scheduler.Request, bodyBytes int) *flowMetrics {
	if m == nil {
		return nil
	}
	f := m.flow(req)
	f.requests.Inc()
	f.reqSize.Observe(float64(bodyBytes))
	f.running.Inc()
	return f
}

// requestError counts an error answer; req is nil when the request failed
// before it was understood, and fairness and priority then come from what
// the headers said.
func (m *Metrics) requestError(req *scheduler.Request, fairness string, code int) {
	if m == nil {
		return
	}
	model, target, priority := "", "", 0
	if req != nil {
		model, target, fairness, priority = req.IncomingModel, req.Model, req.FairnessID, req.Priority
	}
	m.vecs.errors.WithLabelValues(m.label(model), m.label(target), m.fairness.Value(fairness),
		strconv.Itoa(priority), strconv.Itoa(code)).Inc()
}

// requestHandled records the EPP's time to answer one request.
func (m *Metrics) requestHandled(d time.Duration) {
	if m != nil {
		m.vecs.reqHandled.Observe(d.Seconds())
	}
}

// firstByte records time to first token of a streamed response.
func (f *flowMetrics) firstByte(d time.Duration) {
	if f != nil {
		f.ttft[1].Observe(d.Seconds())
	}
}

// interToken records the gap between two streamed chunks.
func (f *flowMetrics) interToken(d time.Duration) {
	if f != nil {
		f.itl.Observe(d.Seconds())
	}
}

// requestDone records a finished request: d is its duration, ttft the time
// to its first body byte (0 when none came), busy the EPP's time on its
// response.
func (m *Metrics) requestDone(f *flowMetrics, resp *scheduler.Response, d, ttft, busy time.Duration) {
	if m == nil || f == nil {
		return
	}
	f.running.Dec()
	f.duration.Observe(d.Seconds())
	f.respSize.Observe(float64(resp.BodyBytes))
	if busy > 0 {
		m.vecs.respBusy.Observe(busy.Seconds())
	}
	if !resp.Streaming && !resp.Cancelled {
		f.ttft[0].Observe(d.Seconds())
	}
	if !resp.UsageKnown {
		return
	}
	f.inputTok.Observe(float64(resp.Usage.PromptTokens))
	f.outputTok.Observe(float64(resp.Usage.CompletionTokens))
	f.cachedTok.Observe(float64(resp.Usage.CachedTokens))
	n := resp.Usage.CompletionTokens
	if n <= 0 || resp.Cancelled {
		return
	}
	f.ntpot.Observe(d.Seconds() / float64(n))
	if resp.Streaming && n > 1 && ttft > 0 {
		f.tpot.Observe((d - ttft).Seconds() / float64(n-1))
	}
}
