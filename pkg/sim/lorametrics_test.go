package sim

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// residencyPage is what a scraper reads from the residency families.
type residencyPage struct {
	Loaded         map[string]float64 // "adapter/level/pinned" → value
	GPULoaded, Max float64
	Load, Activate transitionSample
}

type transitionSample struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64 // nonzero cumulative counts by upper bound
}

func readResidency(t *testing.T, fams map[string]*dto.MetricFamily) residencyPage {
	t.Helper()
	p := residencyPage{Loaded: map[string]float64{}}
	for _, m := range fams["vllm:lora_adapter_loaded"].GetMetric() {
		l := labelMap(m)
		if l["model_name"] != "sim-model" {
			t.Errorf("lora_adapter_loaded model_name = %q, want sim-model", l["model_name"])
		}
		p.Loaded[l["adapter_name"]+"/"+l["level"]+"/"+l["pinned"]] = m.GetGauge().GetValue()
	}
	p.GPULoaded = value(t, fams, "vllm:num_gpu_loaded_lora_adapters", map[string]string{"model_name": "sim-model"})
	p.Max = value(t, fams, "vllm:max_gpu_lora_adapters", map[string]string{"model_name": "sim-model"})
	for _, m := range fams["vllm:lora_adapter_load_seconds"].GetMetric() {
		h := m.GetHistogram()
		s := transitionSample{Count: h.GetSampleCount(), Sum: h.GetSampleSum(), Buckets: map[float64]uint64{}}
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() > 0 {
				s.Buckets[b.GetUpperBound()] = b.GetCumulativeCount()
			}
		}
		switch labelMap(m)["transition"] {
		case "load":
			p.Load = s
		case "activate":
			p.Activate = s
		}
	}
	return p
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// above returns cumulative bucket counts of n for every bound ≥ from.
func above(from float64, n uint64) map[float64]uint64 {
	out := map[float64]uint64{math.Inf(1): n}
	for _, b := range loraLoadBuckets {
		if b >= from {
			out[b] = n
		}
	}
	return out
}

func TestVLLMLoRAResidencyGauges(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.LoRAs, cfg.PinnedLoRAs = []string{"a", "b", "c", "d"}, []string{"d"}
	cfg.Capacity.MaxLoRAs, cfg.Capacity.MaxCPULoRAs = 2, 3
	cfg.Latency.LoRALoadDelay, cfg.Latency.LoRAActivateDelay = Ptr(20*time.Millisecond), Ptr(5*time.Millisecond)
	inst := start(t, cfg)
	c := client(t)
	scrape := func() residencyPage {
		t.Helper()
		status, text := scrapeText(t, c, inst)
		if status != http.StatusOK {
			t.Fatalf("metrics status %d", status)
		}
		return readResidency(t, parsePage(t, text))
	}
	complete := func(model string) {
		t.Helper()
		if r := post(t, c, inst.URL()+"/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":"hi","max_tokens":1}`, model)); r.status != http.StatusOK {
			t.Fatalf("completion for %q: %d %s", model, r.status, r.body)
		}
	}
	none := transitionSample{Buckets: map[float64]uint64{}}
	steps := []struct {
		name    string
		request string
		api     string // a dynamic adapter endpoint, called for lora_name request
		want    residencyPage
	}{
		{name: "start: d pinned on the GPU, a and b preloaded to fill the host cache", want: residencyPage{
			Loaded: map[string]float64{"a/cpu/false": 1, "b/cpu/false": 1, "d/gpu/true": 1}, GPULoaded: 1, Max: 2,
			Load: none, Activate: none,
		}},
		{name: "c resident nowhere: loaded over a (LRU off the GPU), activated into the free slot", request: "c", want: residencyPage{
			Loaded: map[string]float64{"a/cpu/false": 0, "b/cpu/false": 1, "c/gpu/false": 1, "d/gpu/true": 1}, GPULoaded: 2, Max: 2,
			Load:     transitionSample{Count: 1, Sum: 0.02, Buckets: above(0.025, 1)},
			Activate: transitionSample{Count: 1, Sum: 0.005, Buckets: above(0.005, 1)},
		}},
		{name: "b on the host: activated over c, which stays on the host", request: "b", want: residencyPage{
			Loaded:    map[string]float64{"a/cpu/false": 0, "b/cpu/false": 0, "b/gpu/false": 1, "c/cpu/false": 1, "c/gpu/false": 0, "d/gpu/true": 1},
			GPULoaded: 2, Max: 2,
			Load:     transitionSample{Count: 1, Sum: 0.02, Buckets: above(0.025, 1)},
			Activate: transitionSample{Count: 2, Sum: 0.01, Buckets: above(0.005, 2)},
		}},
		{name: "e loaded by the API over c, the host-only adapter", request: "e", api: "/v1/load_lora_adapter", want: residencyPage{
			Loaded:    map[string]float64{"a/cpu/false": 0, "b/cpu/false": 0, "b/gpu/false": 1, "c/cpu/false": 0, "c/gpu/false": 0, "d/gpu/true": 1, "e/cpu/false": 1},
			GPULoaded: 2, Max: 2,
			Load:     transitionSample{Count: 2, Sum: 0.04, Buckets: above(0.025, 2)},
			Activate: transitionSample{Count: 2, Sum: 0.01, Buckets: above(0.005, 2)},
		}},
		{name: "b unloaded by the API: off the GPU and the host", request: "b", api: "/v1/unload_lora_adapter", want: residencyPage{
			Loaded:    map[string]float64{"a/cpu/false": 0, "b/cpu/false": 0, "b/gpu/false": 0, "c/cpu/false": 0, "c/gpu/false": 0, "d/gpu/true": 1, "e/cpu/false": 1},
			GPULoaded: 1, Max: 2,
			Load:     transitionSample{Count: 2, Sum: 0.04, Buckets: above(0.025, 2)},
			Activate: transitionSample{Count: 2, Sum: 0.01, Buckets: above(0.005, 2)},
		}},
	}
	for _, st := range steps {
		switch {
		case st.api != "":
			if r := post(t, c, inst.URL()+st.api, fmt.Sprintf(`{"lora_name":%q}`, st.request)); r.status != http.StatusOK {
				t.Fatalf("%s %q: %d %s", st.api, st.request, r.status, r.body)
			}
		case st.request != "":
			complete(st.request)
		}
		if diff := cmp.Diff(st.want, scrape(), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
			t.Fatalf("%s: residency families (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestVLLMLoRAResidencyDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		maxLoRAs int
		want     []string // families present
		absent   []string
	}{
		{name: "lora on", maxLoRAs: 1,
			want:   []string{"vllm:num_gpu_loaded_lora_adapters", "vllm:max_gpu_lora_adapters", "vllm:lora_adapter_load_seconds"},
			absent: []string{"vllm:lora_adapter_loaded"}}, // no host cache flag: nothing preloaded
		{name: "lora off", maxLoRAs: -1, absent: []string{"vllm:lora_adapter_loaded", "vllm:num_gpu_loaded_lora_adapters",
			"vllm:max_gpu_lora_adapters", "vllm:lora_adapter_load_seconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := quick()
			if tc.maxLoRAs > 0 {
				cfg.LoRAs, cfg.Capacity.MaxLoRAs = []string{"a"}, tc.maxLoRAs
			} else {
				cfg.Tune = func(c *engine.Config) { c.MaxLoRAs = 0 }
			}
			inst := start(t, cfg)
			_, text := scrapeText(t, client(t), inst)
			fams := parsePage(t, text)
			for _, f := range tc.want {
				if fams[f] == nil {
					t.Errorf("family %s missing", f)
				}
			}
			for _, f := range tc.absent {
				if fams[f] != nil {
					t.Errorf("family %s present", f)
				}
			}
		})
	}
}

func TestResidencySeriesBounded(t *testing.T) {
	t.Parallel()
	var r residency
	var got []loadedSeries
	for k := range 100 {
		got = r.update([]engine.LoRAState{{Name: fmt.Sprint("x", k)}, {Name: "p", OnGPU: true, Pinned: true}})
	}
	if len(got) != 2+maxStaleResidentSeries {
		t.Fatalf("%d series after 100 adapters came and went, want %d", len(got), 2+maxStaleResidentSeries)
	}
	current := map[string]bool{}
	for _, s := range got {
		if s.resident {
			current[s.adapter] = true
		}
		if s.adapter == "x0" {
			t.Errorf("the longest-gone adapter x0 is still exported")
		}
	}
	if diff := cmp.Diff(map[string]bool{"x99": true, "p": true}, current); diff != "" {
		t.Errorf("series at 1 (-want +got):\n%s", diff)
	}
	got = r.update(nil)
	if len(got) != maxStaleResidentSeries || slices.ContainsFunc(got, func(s loadedSeries) bool { return s.resident }) {
		t.Errorf("after every adapter left: %d series %+v; want %d, all at 0", len(got), got, maxStaleResidentSeries)
	}
}
