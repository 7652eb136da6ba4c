package sim

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// flavor is one model server's way of exporting metrics: its path, its
// latency histogram names ("" when it has none) and its gauges/counters.
type flavor struct {
	path           string
	ttft, itl, e2e string
	collect        func(e *emitter, s scrape)
}

// flavorFor returns the exports of a MetricsEngine (validated by resolve).
// Names follow reference.md §3.2 (the names the EPP reads) plus each
// server's usual latency histograms and token counters.
func flavorFor(metricsEngine string) *flavor {
	switch metricsEngine {
	case EngineSGLang:
		return &flavor{
			path: "/metrics", collect: collectSGLang,
			ttft: "sglang:time_to_first_token_seconds", itl: "sglang:inter_token_latency_seconds",
			e2e: "sglang:e2e_request_latency_seconds",
		}
	case EngineTRTLLM:
		return &flavor{
			path: "/prometheus/metrics", collect: collectTRTLLM,
			ttft: "trtllm_time_to_first_token_seconds", itl: "trtllm_time_per_output_token_seconds",
			e2e: "trtllm_e2e_request_latency_seconds",
		}
	case EngineTriton:
		return &flavor{path: "/metrics", collect: collectTriton}
	}
	return &flavor{
		path: "/metrics", collect: collectVLLM,
		ttft: "vllm:time_to_first_token_seconds", itl: "vllm:inter_token_latency_seconds",
		e2e: "vllm:e2e_request_latency_seconds",
	}
}

// Histogram buckets in seconds, spanning the fast preset (milliseconds)
// to saturated 70B servers (minutes).
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640}
	itlBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5}
	e2eBuckets  = []float64{0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960}
)

// observers feed the latency histograms; nil members are skipped.
type observers struct {
	first, inter, total prometheus.Observer
}

func newObservers(fl *flavor, model string, reg prometheus.Registerer) (observers, error) {
	var o observers
	var err error
	mk := func(name, help string, buckets []float64) prometheus.Observer {
		if name == "" || err != nil {
			return nil
		}
		h := prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: name, Help: help, Buckets: buckets,
			ConstLabels: prometheus.Labels{"model_name": model},
		})
		if rerr := reg.Register(h); rerr != nil {
			err = fmt.Errorf("register %s: %w", name, rerr)
			return nil
		}
		return h
	}
	o.first = mk(fl.ttft, "Histogram of time to first token in seconds.", ttftBuckets)
	o.inter = mk(fl.itl, "Histogram of inter-token latency in seconds.", itlBuckets)
	o.total = mk(fl.e2e, "Histogram of end-to-end request latency in seconds.", e2eBuckets)
	return o, err
}

func (o observers) ttft(d time.Duration) { observe(o.first, d) }
func (o observers) itl(d time.Duration)  { observe(o.inter, d) }
func (o observers) e2e(d time.Duration)  { observe(o.total, d) }

func observe(o prometheus.Observer, d time.Duration) {
	if o != nil {
		o.Observe(d.Seconds())
	}
}

// scrape is the state one Collect call exports.
type scrape struct {
	m     engine.Metrics
	model string
	cfg   engine.Config
	loras []loraSeries
	// loaded are the vllm:lora_adapter_loaded series.
	loaded []loadedSeries
}

// loraSeries is one label combination of vllm:lora_requests_info. vLLM keeps
// exporting old combinations with the time they were last current, which is
// why the EPP picks the series with the largest value; so do we.
type loraSeries struct {
	running, waiting string
	at               float64 // Unix seconds
}

// maxLoRASeries bounds the remembered combinations.
const maxLoRASeries = 8

// collector is an unchecked prometheus.Collector that reads the engine on
// every scrape.
type collector struct {
	fl   *flavor
	inst *Instance

	mu      sync.Mutex
	history []loraSeries
	res     residency
}

func newCollector(fl *flavor, inst *Instance) *collector { return &collector{fl: fl, inst: inst} }

// Describe sends nothing: the collector is unchecked, its series depend on
// the state at scrape time.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect exports the flavor's series.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.inst.drv.metrics()
	s := scrape{m: m, model: c.inst.cfg.Model, cfg: c.inst.cfg.engine, loras: c.loraHistory(m, time.Now())}
	c.mu.Lock()
	s.loaded = c.res.update(m.LoRAResidency)
	c.mu.Unlock()
	e := &emitter{ch: ch}
	c.fl.collect(e, s)
	collectKVTransfer(e, c.inst.kvStats(m), s.model)
	collectGPU(e, c.inst.gpu.utilization(c.inst.drv.now(), m.BusyTime), c.inst.engineID)
}

func (c *collector) loraHistory(m engine.Metrics, now time.Time) []loraSeries {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := loraSeries{
		running: strings.Join(m.RunningLoRAs, ","), waiting: strings.Join(m.WaitingLoRAs, ","),
		at: float64(now.UnixNano()) / 1e9,
	}
	found := false
	for j := range c.history {
		if c.history[j].running == cur.running && c.history[j].waiting == cur.waiting {
			c.history[j].at, found = cur.at, true
		}
	}
	if !found {
		c.history = append(c.history, cur)
		if len(c.history) > maxLoRASeries {
			c.history = c.history[1:] // appended in time order: oldest first
		}
	}
	return append([]loraSeries(nil), c.history...)
}

// emitter builds const metrics, turning construction errors (for example a
// model name that is not valid UTF-8) into invalid metrics, which make the
// scrape fail with 500 instead of panicking.
type emitter struct {
	ch chan<- prometheus.Metric
}

func (e *emitter) emit(t prometheus.ValueType, name, help string, v float64, kv ...string) {
	names, values := splitLabels(kv)
	desc := prometheus.NewDesc(name, help, names, nil)
	m, err := prometheus.NewConstMetric(desc, t, v, values...)
	if err != nil {
		m = prometheus.NewInvalidMetric(desc, err)
	}
	e.ch <- m
}

// splitLabels splits alternating label names and values.
func splitLabels(kv []string) (names, values []string) {
	names = make([]string, 0, len(kv)/2)
	values = make([]string, 0, len(kv)/2)
	for j := 0; j+1 < len(kv); j += 2 {
		names = append(names, kv[j])
		values = append(values, kv[j+1])
	}
	return names, values
}

func (e *emitter) gauge(name, help string, v float64, kv ...string) {
	e.emit(prometheus.GaugeValue, name, help, v, kv...)
}

func (e *emitter) counter(name, help string, v uint64, kv ...string) {
	e.emit(prometheus.CounterValue, name, help, float64(v), kv...)
}

func itoa(n int) string { return strconv.Itoa(n) }

func collectVLLM(e *emitter, s scrape) {
	m, l := s.m, []string{"model_name", s.model, "engine", "0"}
	e.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", float64(m.Running), l...)
	e.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(m.Waiting), l...)
	e.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", m.KVUsage, l...)
	e.counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", m.PromptTokens, l...)
	e.counter("vllm:generation_tokens_total", "Number of generation tokens processed.", m.GenerationTokens, l...)
	e.counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", m.PrefixQueries, l...)
	e.counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", m.PrefixHits, l...)
	e.counter("vllm:num_preemptions_total", "Cumulative number of preemptions from the engine.", m.Preemptions, l...)
	e.counter("vllm:request_success_total", "Count of successfully processed requests.", m.Finished,
		append(l, "finished_reason", "length")...)
	e.gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig.", 1,
		"block_size", itoa(m.BlockSize), "num_gpu_blocks", itoa(m.NumBlocks),
		"cache_dtype", "auto", "enable_prefix_caching", "True")
	if m.MaxLoRAs == 0 {
		return // vLLM exports LoRA info only with LoRA enabled
	}
	for _, ls := range s.loras {
		e.gauge("vllm:lora_requests_info", "Running stats on lora requests.", ls.at,
			"max_lora", itoa(m.MaxLoRAs), "running_lora_adapters", ls.running, "waiting_lora_adapters", ls.waiting)
	}
	collectLoRAResidency(e, s)
}

func collectSGLang(e *emitter, s scrape) {
	m, l := s.m, []string{"model_name", s.model}
	e.gauge("sglang:num_running_reqs", "The number of running requests.", float64(m.Running), l...)
	e.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", float64(m.Waiting), l...)
	e.gauge("sglang:token_usage", "The token usage.", m.KVUsage, l...)
	e.gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", ratio(m.PrefixHits, m.PrefixQueries), l...)
	e.counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", m.PromptTokens, l...)
	e.counter("sglang:generation_tokens_total", "Number of generation tokens processed.", m.GenerationTokens, l...)
	e.counter("sglang:num_requests_total", "Number of requests processed.", m.Finished, l...)
	e.gauge("sglang:cache_config_info", "Information of the KV cache configuration.", 1,
		"page_size", itoa(m.BlockSize), "num_pages", itoa(m.NumBlocks))
}

func collectTRTLLM(e *emitter, s scrape) {
	m, l := s.m, []string{"model_name", s.model, "engine_type", "trtllm"}
	e.gauge("trtllm_num_requests_waiting", "Number of requests waiting to be scheduled.", float64(m.Waiting), l...)
	e.gauge("trtllm_num_requests_running", "Number of requests currently executing.", float64(m.Running), l...)
	e.gauge("trtllm_kv_cache_utilization", "Fraction of KV cache blocks in use.", m.KVUsage, l...)
	e.gauge("trtllm_kv_cache_tokens_per_block", "Tokens per KV cache block.", float64(m.BlockSize), l...)
	e.gauge("trtllm_kv_cache_max_blocks", "Maximum number of KV cache blocks.", float64(m.NumBlocks), l...)
	e.gauge("trtllm_kv_cache_hit_rate", "KV cache reuse rate.", ratio(m.PrefixHits, m.PrefixQueries), l...)
	e.counter("trtllm_request_success_total", "Count of successfully processed requests.", m.Finished,
		append(l, "finished_reason", "length")...)
}

func collectTriton(e *emitter, s scrape) {
	m := s.m
	l := []string{"model", "tensorrt_llm", "version", "1"}
	req := func(typ string, v int) {
		e.gauge("nv_trt_llm_request_metrics", "TRT LLM request metrics.", float64(v), append(l, "request_type", typ)...)
	}
	req("waiting", m.Waiting)
	req("scheduled", m.Running)
	req("active", m.Running+m.Waiting)
	req("max", s.cfg.MaxNumSeqs)
	kv := func(typ string, v float64) {
		e.gauge("nv_trt_llm_kv_cache_block_metrics", "TRT LLM KV cache block metrics.", v, append(l, "kv_cache_block_type", typ)...)
	}
	kv("fraction", m.KVUsage)
	kv("tokens_per", float64(m.BlockSize))
	kv("max", float64(m.NumBlocks))
	kv("used", float64(m.UsedBlocks))
	kv("free", float64(m.NumBlocks-m.UsedBlocks))
	e.gauge("nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting execution per-model.", float64(m.Waiting), l...)
	e.counter("nv_inference_request_success", "Number of successful inference requests, all batch sizes.", m.Finished, l...)
	e.counter("nv_inference_exec_count", "Number of model executions performed (does not include cached requests).", m.Iterations, l...)
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// garbage is what the MetricsGarbage fault serves: plausible at a glance,
// not parseable as Prometheus text.
const garbage = "<html><body>upstream connect error</body></html>\nvllm:num_requests_waiting{ 3 oops\n"

// metricsHandler serves the metrics page, subject to the metrics faults.
func (i *Instance) metricsHandler(page http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f := i.Faults()
		if f.MetricsHang {
			select {
			case <-r.Context().Done():
			case <-i.closing:
			}
			return
		}
		if f.MetricsDelay > 0 && !i.sleep(r, f.MetricsDelay) {
			return
		}
		switch {
		case f.MetricsStatus != 0:
			http.Error(w, "simulated metrics failure", f.MetricsStatus)
		case f.MetricsGarbage:
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = io.WriteString(w, garbage)
		default:
			page.ServeHTTP(w, r)
		}
	}
}

// sleep waits d unless the request or the server ends first; it reports
// whether the full delay elapsed.
func (i *Instance) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-i.closing:
	}
	return false
}
