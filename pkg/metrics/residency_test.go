package metrics

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
)

const residencyBase = `vllm:num_requests_waiting{model_name="base"} 0
vllm:num_requests_running{model_name="base"} 0
vllm:kv_cache_usage_perc{model_name="base"} 0.1
vllm:cache_config_info{block_size="16",num_gpu_blocks="100"} 1
vllm:lora_requests_info{max_lora="2",running_lora_adapters="alice",waiting_lora_adapters=""} 1.7e9
`

// TestResidencyExtraction reads vLLM's residency families as llm-d's
// lora-load-state scorer expects them: union over engines, GPU outranking
// the host cache, zero series absent, the slot gauge over the info label.
func TestResidencyExtraction(t *testing.T) {
	t.Parallel()
	gpu, cpu := endpoint.LoRAResidence{OnGPU: true}, endpoint.LoRAResidence{}
	cases := []struct {
		name           string
		page           string
		want           map[string]endpoint.LoRAResidence
		gpus, slots    int
		base           string
		load, activate float64
		failed         []string
	}{
		{name: "no residency families: none reported, info label gives the slots, queue gauge's model_name the base",
			page: residencyBase, slots: 2, base: "base"},
		{name: "no residency families and no LoRA slots: no base model",
			page: strings.Replace(residencyBase, `max_lora="2"`, `max_lora="0"`, 1)},
		{name: "two engines: union, gpu outranks cpu, pinned anywhere, zero absent, largest count",
			page: residencyBase + `vllm:lora_adapter_loaded{engine="0",adapter_name="alice",level="gpu",pinned="false"} 1
vllm:lora_adapter_loaded{engine="1",adapter_name="alice",level="cpu",pinned="false"} 1
vllm:lora_adapter_loaded{engine="0",adapter_name="bob",level="cpu",pinned="true"} 1
vllm:lora_adapter_loaded{engine="0",adapter_name="dave",level="gpu",pinned="false"} 0
vllm:lora_adapter_loaded{engine="1",adapter_name="carol",level="gpu",pinned="false"} 1
vllm:num_gpu_loaded_lora_adapters{engine="0",model_name="base"} 1
vllm:num_gpu_loaded_lora_adapters{engine="1",model_name="base"} 2
vllm:max_gpu_lora_adapters{engine="0",model_name="base"} 4
`,
			want: map[string]endpoint.LoRAResidence{"alice": gpu, "bob": {Pinned: true}, "carol": gpu},
			gpus: 2, slots: 4, base: "base"},
		{name: "count gauge alone: residency reported, nothing resident",
			page: residencyBase + "vllm:num_gpu_loaded_lora_adapters{model_name=\"base\"} 0\n",
			want: map[string]endpoint.LoRAResidence{}, slots: 2, base: "base"},
		{name: "loaded series alone: count from the GPU residents",
			page: residencyBase + `vllm:lora_adapter_loaded{adapter_name="a",level="gpu"} 1
vllm:lora_adapter_loaded{adapter_name="b",level="cpu"} 1
vllm:lora_adapter_loaded{adapter_name="c",level="gpu"} 1
`,
			want: map[string]endpoint.LoRAResidence{"a": gpu, "b": cpu, "c": gpu}, gpus: 2, slots: 2},
		{name: "transition means pooled over engines, unknown transitions ignored",
			page: residencyBase + `# TYPE vllm:lora_adapter_load_seconds histogram
vllm:lora_adapter_load_seconds_bucket{engine="0",transition="load",le="+Inf"} 2
vllm:lora_adapter_load_seconds_sum{engine="0",transition="load"} 0.8
vllm:lora_adapter_load_seconds_count{engine="0",transition="load"} 2
vllm:lora_adapter_load_seconds_bucket{engine="1",transition="load",le="+Inf"} 2
vllm:lora_adapter_load_seconds_sum{engine="1",transition="load"} 1.2
vllm:lora_adapter_load_seconds_count{engine="1",transition="load"} 2
vllm:lora_adapter_load_seconds_bucket{engine="0",transition="activate",le="+Inf"} 4
vllm:lora_adapter_load_seconds_sum{engine="0",transition="activate"} 0.4
vllm:lora_adapter_load_seconds_count{engine="0",transition="activate"} 4
vllm:lora_adapter_load_seconds_bucket{engine="0",transition="unload",le="+Inf"} 1
vllm:lora_adapter_load_seconds_sum{engine="0",transition="unload"} 9
vllm:lora_adapter_load_seconds_count{engine="0",transition="unload"} 1
`,
			slots: 2, base: "base", load: 0.5, activate: 0.1},
		{name: "an unknown level is an error, not a guess",
			page:   residencyBase + "vllm:lora_adapter_loaded{adapter_name=\"a\",level=\"disk\"} 1\n",
			slots:  2,
			failed: []string{"loraLoaded"}},
		{name: "a resident series without a name is an error",
			page:   residencyBase + "vllm:lora_adapter_loaded{level=\"gpu\"} 1\n",
			slots:  2,
			failed: []string{"loraLoaded"}},
		{name: "a non-boolean pinned label is an error",
			page:   residencyBase + "vllm:lora_adapter_loaded{adapter_name=\"a\",level=\"gpu\",pinned=\"maybe\"} 1\n",
			slots:  2,
			failed: []string{"loraLoaded"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := testTarget(t, "127.0.0.1:1", nil)
			fams, err := parsePage([]byte(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			m, failed, err := tg.eng.extract(fams, &endpoint.Metrics{}, &loraCache{})
			if got := failed.names(); !cmp.Equal(got, tc.failed) {
				t.Fatalf("failed fields %v (%v), want %v", got, err, tc.failed)
			}
			if len(tc.failed) > 0 && (err == nil || !strings.Contains(err.Error(), "loraLoaded")) {
				t.Errorf("error %v does not name the field", err)
			}
			if diff := cmp.Diff(tc.want, m.LoRAResidency); diff != "" {
				t.Errorf("residency (-want +got):\n%s", diff)
			}
			if (tc.want == nil) != (m.LoRAResidency == nil) {
				t.Errorf("residency reported = %v, want %v", m.LoRAResidency != nil, tc.want != nil)
			}
			if m.GPULoadedAdapters != tc.gpus || m.MaxActiveModels != tc.slots || m.BaseModel != tc.base {
				t.Errorf("gpus %d slots %d base %q, want %d %d %q", m.GPULoadedAdapters, m.MaxActiveModels, m.BaseModel,
					tc.gpus, tc.slots, tc.base)
			}
			if m.LoRALoadSeconds != tc.load || m.LoRAActivateSeconds != tc.activate {
				t.Errorf("load %v activate %v, want %v %v", m.LoRALoadSeconds, m.LoRAActivateSeconds, tc.load, tc.activate)
			}
		})
	}
}

// TestResidencyAcrossScrapes checks the published snapshots: an evicted
// adapter leaves, an unchanged set reuses the previous map, a server that
// stops reporting reports nothing, and a page of residency alone is no page.
func TestResidencyAcrossScrapes(t *testing.T) {
	t.Parallel()
	_, _, _, tg := handDriven(t, specFor(t, "a", "127.0.0.1:1", nil))
	clk := newFakeClock()
	apply := func(page string) *endpoint.Metrics {
		t.Helper()
		if _, err := tg.apply([]byte(page), false, clk.Now()); err != nil {
			t.Fatal(err)
		}
		return tg.ep.Metrics()
	}
	loaded := residencyBase + "vllm:lora_adapter_loaded{adapter_name=\"alice\",level=\"gpu\"} 1\n" +
		"vllm:num_gpu_loaded_lora_adapters{model_name=\"base\"} 1\n"
	first := apply(loaded)
	second := apply(loaded + "# a comment changes the page, not the set\n")
	if len(first.LoRAResidency) != 1 || !first.LoRAResidency["alice"].OnGPU {
		t.Fatalf("first scrape residency %v", first.LoRAResidency)
	}
	first.LoRAResidency["probe"] = endpoint.LoRAResidence{} // test-only write to detect sharing
	if _, shared := second.LoRAResidency["probe"]; !shared {
		t.Error("an unchanged resident set was rebuilt instead of reused")
	}
	delete(first.LoRAResidency, "probe")
	evicted := apply(residencyBase + "vllm:lora_adapter_loaded{adapter_name=\"alice\",level=\"gpu\"} 0\n" +
		"vllm:num_gpu_loaded_lora_adapters{model_name=\"base\"} 0\n")
	if evicted.LoRAResidency == nil || len(evicted.LoRAResidency) != 0 || evicted.GPULoadedAdapters != 0 {
		t.Errorf("after eviction: %v, %d on GPU", evicted.LoRAResidency, evicted.GPULoadedAdapters)
	}
	if gone := apply(residencyBase); gone.LoRAResidency != nil || gone.BaseModel != "base" {
		t.Errorf("a server that stopped reporting has residency %v (base %q), want none (base from its queue gauge)", gone.LoRAResidency, gone.BaseModel)
	}
	if _, err := tg.apply([]byte("vllm:num_gpu_loaded_lora_adapters 1\n"), false, clk.Now()); err == nil {
		t.Error("a page with residency only was accepted as a model server's page")
	}
}
