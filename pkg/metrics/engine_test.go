package metrics

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuiltinEngines(t *testing.T) {
	t.Parallel()
	set, err := buildEngines(nil, EngineVLLM, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		EngineVLLM: {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
			"vllm:lora_requests_info", "vllm:cache_config_info", "vllm:lora_adapter_loaded",
			"vllm:num_gpu_loaded_lora_adapters", "vllm:max_gpu_lora_adapters", "vllm:lora_adapter_load_seconds"},
		EngineSGLang: {"sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage", "sglang:cache_config_info",
			"sglang:page_size", "sglang:num_pages"},
		EngineAtom:        {"atom:requests_waiting", "atom:requests_running", "atom:kv_cache_usage_ratio", "atom:cache_config_info"},
		EngineTriton:      {"nv_inference_pending_request_count", "nv_inference_exec_count"},
		EngineTRTLLMServe: {"trtllm_num_requests_waiting", "trtllm_num_requests_running", "trtllm_kv_cache_utilization", "trtllm_kv_cache_tokens_per_block", "trtllm_kv_cache_max_blocks"},
		// Two families, several label-selected specs each: read once.
		EngineTritonTensorRTLLM: {"nv_trt_llm_request_metrics", "nv_trt_llm_kv_cache_block_metrics"},
	}
	got := map[string][]string{}
	for name, e := range set.byName {
		got[name] = e.families
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("engine families mismatch (-want +got):\n%s", diff)
	}
	if p := set.byName[EngineTRTLLMServe].path; p != "/prometheus/metrics" {
		t.Errorf("trtllm-serve path = %q, want /prometheus/metrics", p)
	}
	if l := set.byName[EngineSGLang]; l.blockSizeLabel != "page_size" || l.numBlocksLabel != "num_pages" {
		t.Errorf("sglang cache labels = %q/%q, want page_size/num_pages", l.blockSizeLabel, l.numBlocksLabel)
	}
}

func TestBuildEnginesMerge(t *testing.T) {
	t.Parallel()
	set, err := buildEngines([]EngineConfig{
		// Replaces the built-in vllm entirely: LoRA and cache info are now disabled.
		{Name: EngineVLLM, QueuedRequestsSpec: "vllm:num_requests_waiting", KVUsageSpec: "vllm:gpu_cache_usage_perc"},
		{Name: "atom", QueuedRequestsSpec: "atom:q", RunningRequestsSpec: "atom:r"},
	}, "atom", "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc"}, set.byName[EngineVLLM].families); diff != "" {
		t.Errorf("replaced vllm families mismatch (-want +got):\n%s", diff)
	}
	if set.def.name != "atom" || set.byName[EngineSGLang] == nil {
		t.Errorf("default = %q, sglang kept = %v; want atom and true", set.def.name, set.byName[EngineSGLang] != nil)
	}
}

func TestBuildEnginesErrors(t *testing.T) {
	t.Parallel()
	_, err := buildEngines([]EngineConfig{
		{Name: ""},
		{Name: "default"},
		{Name: "x", KVUsageSpec: "x{a=", CacheBlockSizeLabelName: "bad-label", MetricsPath: "metrics"},
		{Name: "x"},
	}, "nope", "")
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{
		"engineConfigs[0].name: must not be empty",
		`engineConfigs[1].name: "default" is reserved`,
		`engineConfigs[3].name: duplicate engine "x"`,
		`engineConfigs[2].kvUsageSpec: selector "x{a="`,
		`engineConfigs[2].cacheBlockSizeLabelName: invalid label name "bad-label"`,
		`metricsPath: "metrics" must start with '/'`,
		`defaultEngine: "nope" is not a configured engine`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nmissing %q", err, want)
		}
	}
}

func TestDecodeExtractorParams(t *testing.T) {
	t.Parallel()
	// An upstream core-metrics-extractor parameters block, as written in
	// GIE/llm-d EndpointPickerConfig files.
	upstream := `
engineLabelKey: example.com/engine
defaultEngine: atom
engineConfigs:
  - name: atom
    queuedRequestsSpec: "atom:num_requests_waiting"
    runningRequestsSpec: "atom:num_requests_running"
    kvUsageSpec: "atom:kv_cache_usage_perc"
    loraSpec: ""
    cacheInfoSpec: "atom:cache_config_info"
    cacheBlockSizeLabelName: page_size
    cacheNumBlocksLabelName: num_pages
  - name: triton-tensorrt-llm
    queuedRequestsSpec: nv_trt_llm_request_metrics{request_type=waiting}
    cacheBlockSizeSpec: nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}
    cacheNumBlocksSpec: nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}
`
	got, err := DecodeExtractorParams([]byte(upstream))
	if err != nil {
		t.Fatal(err)
	}
	want := ExtractorParams{
		EngineLabelKey: "example.com/engine",
		DefaultEngine:  "atom",
		EngineConfigs: []EngineConfig{{
			Name: "atom", QueuedRequestsSpec: "atom:num_requests_waiting", RunningRequestsSpec: "atom:num_requests_running",
			KVUsageSpec: "atom:kv_cache_usage_perc", CacheInfoSpec: "atom:cache_config_info",
			CacheBlockSizeLabelName: "page_size", CacheNumBlocksLabelName: "num_pages",
		}, {
			Name: "triton-tensorrt-llm", QueuedRequestsSpec: "nv_trt_llm_request_metrics{request_type=waiting}",
			CacheBlockSizeSpec: "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}",
			CacheNumBlocksSpec: "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}",
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decode mismatch (-want +got):\n%s", diff)
	}
	var o Options
	got.Apply(&o)
	if _, err := New(newStoreWith(), o); err != nil {
		t.Errorf("New with decoded params: %v", err)
	}
}

func TestDecodeExtractorParamsStrict(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"engineConfigs":[{"name":"x","queueRequestsSpec":"typo"}]}`,
		`{"defaultEngine":"vllm","defaultEngine":"sglang"}`,
		`defaultEngine: [1]`,
	} {
		if _, err := DecodeExtractorParams([]byte(in)); err == nil {
			t.Errorf("DecodeExtractorParams(%s): want error", in)
		}
	}
}

func TestResolveEngine(t *testing.T) {
	t.Parallel()
	set, err := buildEngines(nil, EngineVLLM, "example.com/engine")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		labels      map[string]string
		want        string
		wantUnknown string
	}{
		{name: "unlabeled", want: EngineVLLM},
		{name: "gie label", labels: map[string]string{EngineLabelGIE: EngineSGLang}, want: EngineSGLang},
		{name: "llm-d label", labels: map[string]string{EngineLabelLLMD: EngineTRTLLMServe}, want: EngineTRTLLMServe},
		{name: "gie before llm-d", labels: map[string]string{EngineLabelGIE: EngineSGLang, EngineLabelLLMD: EngineTRTLLMServe}, want: EngineSGLang},
		{name: "explicit key first", labels: map[string]string{"example.com/engine": EngineTritonTensorRTLLM, EngineLabelGIE: EngineSGLang}, want: EngineTritonTensorRTLLM},
		{name: "unknown falls back", labels: map[string]string{EngineLabelGIE: "mystery"}, want: EngineVLLM, wantUnknown: "mystery"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, unknown := set.resolve(tc.labels)
			if e.name != tc.want || unknown != tc.wantUnknown {
				t.Errorf("resolve = (%q, %q), want (%q, %q)", e.name, unknown, tc.want, tc.wantUnknown)
			}
		})
	}
}

func TestEngineNamer(t *testing.T) {
	t.Parallel()
	name := EngineNamer(Options{EngineLabelKey: "my/engine", Engines: []EngineConfig{{Name: "custom"}}, DefaultEngine: EngineSGLang})
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{nil, EngineSGLang},
		{map[string]string{EngineLabelLLMD: "vllm"}, EngineVLLM},
		{map[string]string{EngineLabelGIE: "custom", EngineLabelLLMD: "vllm"}, "custom"},
		{map[string]string{"my/engine": "trtllm-serve", EngineLabelGIE: "vllm"}, EngineTRTLLMServe},
		{map[string]string{EngineLabelLLMD: "unknown"}, EngineSGLang},
	} {
		if got := name(tc.labels); got != tc.want {
			t.Errorf("engine of %v = %q, want %q", tc.labels, got, tc.want)
		}
	}
	if got := EngineNamer(Options{})(nil); got != EngineVLLM {
		t.Errorf("default engine = %q, want vllm", got)
	}
}
