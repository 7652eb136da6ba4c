package sim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeText fetches an instance's metrics page.
func scrapeText(t *testing.T, c *http.Client, inst *Instance) (int, string) {
	t.Helper()
	resp, err := c.Get(inst.URL() + inst.MetricsPath())
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// parsePage parses Prometheus text strictly (legacy name validation, the
// strictest a scraper may use) and checks every family has HELP and TYPE.
func parsePage(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics page does not parse: %v\n%s", err, text)
	}
	for name := range fams {
		if !strings.Contains(text, "# HELP "+name+" ") || !strings.Contains(text, "# TYPE "+name+" ") {
			t.Errorf("family %s lacks a HELP or TYPE line", name)
		}
	}
	return fams
}

// value returns the value of the series of name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	mf, ok := fams[name]
	if !ok {
		t.Fatalf("family %s missing", name)
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("no %s series with labels %v", name, want)
	return 0
}

// loadUp starts three slow streaming requests on a one-seat engine (one
// running on adapter "a", two waiting on "b") and returns a stop function.
func loadUp(t *testing.T, inst *Instance, c *http.Client, loras bool) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for k := range 3 {
		model := "sim-model"
		if loras {
			model = map[bool]string{true: "a", false: "b"}[k == 0]
		}
		body := fmt.Sprintf(`{"model":%q,"prompt":"a b c d","max_tokens":1000,"stream":true}`, model)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, inst.URL()+"/v1/completions", strings.NewReader(body))
			if resp, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		waitFor(t, func() bool { return inst.EngineMetrics().Running+inst.EngineMetrics().Waiting == k+1 })
	}
	return func() { cancel(); wg.Wait() }
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pageCases is the TestMetricsPages table: where each engine reports
// waiting, running and KV usage (family, label=value selector).
var pageCases = []struct {
	engine  string
	waiting [2]string // family, label=value selector ("" for none)
	running [2]string
	kv      [2]string
	extra   []string // families that must exist
}{
	{engine: EngineVLLM, waiting: [2]string{"vllm:num_requests_waiting"}, running: [2]string{"vllm:num_requests_running"},
		kv:    [2]string{"vllm:kv_cache_usage_perc"},
		extra: []string{"vllm:cache_config_info", "vllm:lora_requests_info", "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"}},
	{engine: EngineSGLang, waiting: [2]string{"sglang:num_queue_reqs"}, running: [2]string{"sglang:num_running_reqs"},
		kv: [2]string{"sglang:token_usage"}, extra: []string{"sglang:cache_config_info", "sglang:time_to_first_token_seconds"}},
	{engine: EngineTRTLLM, waiting: [2]string{"trtllm_num_requests_waiting"}, running: [2]string{"trtllm_num_requests_running"},
		kv: [2]string{"trtllm_kv_cache_utilization"}, extra: []string{"trtllm_kv_cache_tokens_per_block", "trtllm_kv_cache_max_blocks"}},
	{engine: EngineTriton, waiting: [2]string{"nv_trt_llm_request_metrics", "request_type=waiting"},
		running: [2]string{"nv_trt_llm_request_metrics", "request_type=scheduled"},
		kv:      [2]string{"nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type=fraction"}},
}

func TestMetricsPages(t *testing.T) {
	t.Parallel()
	for _, tc := range pageCases {
		t.Run(tc.engine, func(t *testing.T) {
			t.Parallel()
			cfg := quick()
			cfg.MetricsEngine = tc.engine
			cfg.LoRAs = []string{"a", "b"}
			cfg.Capacity.MaxNumSeqs = 1
			cfg.Latency.InterTokenLatency = Ptr(20 * time.Millisecond)
			inst := start(t, cfg)
			c := client(t)
			stop := loadUp(t, inst, c, true)
			defer stop()
			status, text := scrapeText(t, c, inst)
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			fams := parsePage(t, text)
			sel := func(s [2]string) map[string]string {
				k, v, _ := strings.Cut(s[1], "=")
				if k == "" {
					return nil
				}
				return map[string]string{k: v}
			}
			if got := value(t, fams, tc.waiting[0], sel(tc.waiting)); got != 2 {
				t.Errorf("waiting = %v, want 2", got)
			}
			if got := value(t, fams, tc.running[0], sel(tc.running)); got != 1 {
				t.Errorf("running = %v, want 1", got)
			}
			if got := value(t, fams, tc.kv[0], sel(tc.kv)); got <= 0 || got > 1 {
				t.Errorf("kv usage = %v, want in (0, 1]", got)
			}
			for _, f := range tc.extra {
				if fams[f] == nil {
					t.Errorf("family %s missing", f)
				}
			}
		})
	}
}

func TestVLLMCacheAndLoRAInfo(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.LoRAs = []string{"a", "b"}
	cfg.Capacity.MaxNumSeqs = 1
	cfg.Capacity.KVCacheBlocks = 777
	cfg.Latency.InterTokenLatency = Ptr(20 * time.Millisecond)
	inst := start(t, cfg)
	c := client(t)
	_, idle := scrapeText(t, c, inst)
	stop := loadUp(t, inst, c, true)
	defer stop()
	_, busy := scrapeText(t, c, inst)
	fams := parsePage(t, busy)
	if got := value(t, fams, "vllm:cache_config_info", map[string]string{"block_size": "16", "num_gpu_blocks": "777"}); got != 1 {
		t.Errorf("cache_config_info = %v", got)
	}
	// The newest series (largest value) describes the current adapters;
	// the idle combination from the first scrape is still exported, older.
	var newest, idleAt float64
	var newestLabels map[string]string
	for _, m := range fams["vllm:lora_requests_info"].GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		v := m.GetGauge().GetValue()
		if labels["running_lora_adapters"] == "" && labels["waiting_lora_adapters"] == "" {
			idleAt = v
		}
		if v > newest {
			newest, newestLabels = v, labels
		}
	}
	want := map[string]string{"running_lora_adapters": "a", "waiting_lora_adapters": "b", "max_lora": "1"}
	for k, v := range want {
		if newestLabels[k] != v {
			t.Fatalf("newest lora_requests_info labels = %v, want %v", newestLabels, want)
		}
	}
	if idleAt == 0 || idleAt >= newest || !strings.Contains(idle, "vllm:lora_requests_info") {
		t.Fatalf("idle series at %v, newest at %v", idleAt, newest)
	}
	if now := float64(time.Now().Unix()); newest < now-60 || newest > now+60 {
		t.Fatalf("lora_requests_info value %v is not a current Unix timestamp", newest)
	}
}

func TestMetricsPathPerEngine(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.MetricsEngine = EngineTRTLLM
	inst := start(t, cfg)
	c := client(t)
	if inst.MetricsPath() != "/prometheus/metrics" {
		t.Fatalf("MetricsPath = %q", inst.MetricsPath())
	}
	if r := do(t, c, http.MethodGet, inst.URL()+"/metrics", ""); r.status != http.StatusNotFound {
		t.Fatalf("/metrics on trtllm-serve = %d, want 404", r.status)
	}
	if status, _ := scrapeText(t, c, inst); status != http.StatusOK {
		t.Fatalf("/prometheus/metrics = %d", status)
	}
}

func TestHistogramsObserve(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	for range 3 {
		post(t, c, inst.URL()+"/v1/completions", `{"prompt":"hello","max_tokens":4}`)
	}
	_, text := scrapeText(t, c, inst)
	fams := parsePage(t, text)
	count := func(name string) uint64 {
		return fams[name].GetMetric()[0].GetHistogram().GetSampleCount()
	}
	got := [3]uint64{count("vllm:time_to_first_token_seconds"), count("vllm:inter_token_latency_seconds"), count("vllm:e2e_request_latency_seconds")}
	if got != [3]uint64{3, 9, 3} {
		t.Fatalf("ttft, itl, e2e sample counts = %v, want [3 9 3]", got)
	}
	if v := value(t, fams, "vllm:generation_tokens_total", nil); v != 12 {
		t.Fatalf("generation tokens = %v, want 12", v)
	}
}
