package metrics

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openepp/openepp/pkg/endpoint"
)

// extractPage runs the scraper's page pipeline (filter, expfmt parse,
// extract) for one engine, starting from prev.
func extractPage(t *testing.T, eng *engine, page []byte, prev *endpoint.Metrics) (endpoint.Metrics, fieldSet, error) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(filterPage(nil, page, eng.families)))
	if err != nil {
		t.Fatalf("parse filtered page: %v", err)
	}
	return eng.extract(fams, prev, &loraCache{})
}

func builtin(t *testing.T, name string) *engine {
	t.Helper()
	set, err := buildEngines(nil, EngineVLLM, "")
	if err != nil {
		t.Fatal(err)
	}
	e := set.byName[name]
	if e == nil {
		t.Fatalf("no built-in engine %q", name)
	}
	return e
}

func TestExtractEnginePages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		engine string
		page   string
		want   endpoint.Metrics
	}{
		{engine: EngineVLLM, page: "vllm.txt", want: endpoint.Metrics{
			WaitingQueueSize: 3, RunningRequestsSize: 7, KVCacheUsagePercent: 0.4213,
			// The series with the newest timestamp value wins; CSV entries are trimmed, empties dropped.
			ActiveModels: map[string]int{"sql-lora": 0, "tweet-lora": 0}, WaitingModels: map[string]int{"news-lora": 0},
			MaxActiveModels: 4, CacheBlockSize: 16, CacheNumBlocks: 27153,
			// No residency gauges on a LoRA server: the queue gauge names the base model.
			BaseModel: "meta-llama/Llama-3.1-8B-Instruct",
		}},
		{engine: EngineSGLang, page: "sglang.txt", want: endpoint.Metrics{
			WaitingQueueSize: 5, RunningRequestsSize: 12, KVCacheUsagePercent: 0.61, CacheBlockSize: 1, CacheNumBlocks: 161184,
		}},
		{engine: EngineTRTLLMServe, page: "trtllm-serve.txt", want: endpoint.Metrics{
			WaitingQueueSize: 2, RunningRequestsSize: 9, KVCacheUsagePercent: 0.375, CacheBlockSize: 32, CacheNumBlocks: 8192,
		}},
		{engine: EngineTritonTensorRTLLM, page: "triton-tensorrt-llm.txt", want: endpoint.Metrics{
			WaitingQueueSize: 4, RunningRequestsSize: 6, KVCacheUsagePercent: 0.25, CacheBlockSize: 64, CacheNumBlocks: 4096,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.engine, func(t *testing.T) {
			t.Parallel()
			eng := builtin(t, tc.engine)
			page := readPage(t, tc.page)
			got, failed, err := extractPage(t, eng, page, &endpoint.Metrics{})
			if err != nil || failed != 0 {
				t.Fatalf("extract: failed=%v err=%v", failed.names(), err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("metrics mismatch (-want +got):\n%s", diff)
			}
			// Pre-filtering must not change the result: parse the whole page too.
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
			if err != nil {
				t.Fatalf("parse full page: %v", err)
			}
			full, _, _ := eng.extract(fams, &endpoint.Metrics{}, &loraCache{})
			if diff := cmp.Diff(full, got); diff != "" {
				t.Errorf("filtered vs full page mismatch (-full +filtered):\n%s", diff)
			}
		})
	}
}

func TestExtractFieldErrorsKeepOtherFields(t *testing.T) {
	t.Parallel()
	prev := &endpoint.Metrics{WaitingQueueSize: 1, RunningRequestsSize: 1, KVCacheUsagePercent: 0.9, CacheBlockSize: 8, CacheNumBlocks: 10}
	tests := []struct {
		name       string
		page       string
		want       endpoint.Metrics
		wantFailed []string
		wantErr    string
	}{
		{
			name: "missing kv family",
			page: "vllm:num_requests_waiting 4\nvllm:num_requests_running 2\n" +
				`vllm:cache_config_info{block_size="32",num_gpu_blocks="100"} 1` + "\n",
			want:       endpoint.Metrics{WaitingQueueSize: 4, RunningRequestsSize: 2, KVCacheUsagePercent: 0.9, CacheBlockSize: 32, CacheNumBlocks: 100},
			wantFailed: []string{"kvUsage", "lora"},
			wantErr:    "metric family not found",
		},
		{
			name: "invalid values",
			page: "vllm:num_requests_waiting -1\nvllm:num_requests_running NaN\nvllm:kv_cache_usage_perc 42\n" +
				`vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1` + "\n" +
				`vllm:lora_requests_info{max_lora="x",running_lora_adapters="a"} 5` + "\n",
			want:       *prev,
			wantFailed: []string{"queuedRequests", "runningRequests", "kvUsage", "lora", "cacheInfo"},
			wantErr:    `label "num_gpu_blocks": "None" is not an integer`,
		},
		{
			name:       "summary where a gauge is expected",
			page:       "# TYPE vllm:num_requests_waiting summary\nvllm:num_requests_waiting{quantile=\"0.5\"} 1\nvllm:num_requests_running 3\n",
			want:       endpoint.Metrics{WaitingQueueSize: 1, RunningRequestsSize: 3, KVCacheUsagePercent: 0.9, CacheBlockSize: 8, CacheNumBlocks: 10},
			wantFailed: []string{"queuedRequests", "kvUsage", "lora", "cacheInfo"},
			wantErr:    "not a gauge, counter or untyped sample",
		},
		{
			name:       "float label and tiny overshoot",
			page:       "vllm:kv_cache_usage_perc 1.0000001\n" + `vllm:cache_config_info{block_size="16.0",num_gpu_blocks="7"} 1` + "\n",
			want:       endpoint.Metrics{WaitingQueueSize: 1, RunningRequestsSize: 1, KVCacheUsagePercent: 1, CacheBlockSize: 16, CacheNumBlocks: 7},
			wantFailed: []string{"queuedRequests", "runningRequests", "lora"},
			wantErr:    "metric family not found",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, failed, err := extractPage(t, builtin(t, EngineVLLM), []byte(tc.page), prev)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("metrics mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantFailed, failed.names()); diff != "" {
				t.Errorf("failed fields mismatch (-want +got):\n%s", diff)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestExtractLatestSeries(t *testing.T) {
	t.Parallel()
	eng := builtin(t, EngineVLLM)
	tests := []struct {
		name, page string
		want       int
	}{
		// No timestamps (the usual case): the first series wins, nothing is summed.
		{name: "first of equal", page: "vllm:num_requests_waiting{engine=\"0\"} 3\nvllm:num_requests_waiting{engine=\"1\"} 5\n", want: 3},
		{name: "newest timestamp", page: "vllm:num_requests_waiting{engine=\"0\"} 3 1000\nvllm:num_requests_waiting{engine=\"1\"} 5 2000\n", want: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, _, _ := extractPage(t, eng, []byte(tc.page), &endpoint.Metrics{})
			if got.WaitingQueueSize != tc.want {
				t.Errorf("WaitingQueueSize = %d, want %d", got.WaitingQueueSize, tc.want)
			}
		})
	}
}

func TestSplitSet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want map[string]int
	}{
		{in: "", want: map[string]int{}},
		{in: " a, b ,,a,", want: map[string]int{"a": 0, "b": 0}},
		{in: ",,", want: map[string]int{}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, splitSet(tc.in)); diff != "" {
			t.Errorf("splitSet(%q) mismatch (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestLoRACacheReusesSets(t *testing.T) {
	t.Parallel()
	eng := builtin(t, EngineVLLM)
	page := []byte(`vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters=""} 10` + "\n")
	p := expfmt.NewTextParser(model.UTF8Validation)
	lc := &loraCache{}
	var first, second endpoint.Metrics
	for _, dst := range []*endpoint.Metrics{&first, &second} {
		fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
		if err != nil {
			t.Fatal(err)
		}
		*dst, _, _ = eng.extract(fams, &endpoint.Metrics{}, lc)
	}
	first.ActiveModels["probe"] = 1 // same map: visible through second
	if _, ok := second.ActiveModels["probe"]; !ok {
		t.Error("unchanged adapter list built a new map; want the cached one reused")
	}
}
