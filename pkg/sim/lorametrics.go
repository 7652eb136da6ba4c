package sim

import (
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// loraLoadBuckets (seconds) span a small adapter copied over PCIe (1 ms)
// to a large one read from slow storage (10 s).
var loraLoadBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// residentSeries is one label combination of vllm:lora_adapter_loaded. An
// adapter that moves between tiers or leaves keeps its old series at 0, as
// vLLM's gauges do; seen is the scrape that last found it current.
type residentSeries struct {
	adapter, level, pinned string
	seen                   uint64
}

// maxStaleResidentSeries bounds the series kept at 0, so adapter churn
// cannot grow the page without limit.
const maxStaleResidentSeries = 32

// residency is the collector's memory of vllm:lora_adapter_loaded series;
// the collector's mutex guards it.
type residency struct {
	series  []residentSeries
	scrapes uint64
}

// update records the adapters resident now and returns the series to
// export with their values (1 current, 0 stale).
func (r *residency) update(states []engine.LoRAState) []loadedSeries {
	if len(states) == 0 && len(r.series) == 0 {
		return nil
	}
	r.scrapes++
	for _, st := range states {
		level := "cpu"
		if st.OnGPU {
			level = "gpu"
		}
		cur := residentSeries{adapter: st.Name, level: level, pinned: strconv.FormatBool(st.Pinned), seen: r.scrapes}
		j := slices.IndexFunc(r.series, func(s residentSeries) bool {
			return s.adapter == cur.adapter && s.level == cur.level && s.pinned == cur.pinned
		})
		if j < 0 {
			r.series = append(r.series, cur)
		} else {
			r.series[j].seen = r.scrapes
		}
	}
	r.dropStale()
	out := make([]loadedSeries, len(r.series))
	for j, s := range r.series {
		out[j] = loadedSeries{adapter: s.adapter, level: s.level, pinned: s.pinned, resident: s.seen == r.scrapes}
	}
	return out
}

// dropStale forgets the longest-gone series beyond maxStaleResidentSeries.
func (r *residency) dropStale() {
	stale := 0
	for _, s := range r.series {
		if s.seen != r.scrapes {
			stale++
		}
	}
	for ; stale > maxStaleResidentSeries; stale-- {
		oldest := -1
		for j, s := range r.series {
			if s.seen != r.scrapes && (oldest < 0 || s.seen < r.series[oldest].seen) {
				oldest = j
			}
		}
		r.series = slices.Delete(r.series, oldest, oldest+1)
	}
}

// loadedSeries is one exported vllm:lora_adapter_loaded series.
type loadedSeries struct {
	adapter, level, pinned string
	resident               bool
}

// collectLoRAResidency exports vLLM's adapter residency families; the
// caller checks that LoRA is enabled.
func collectLoRAResidency(e *emitter, s scrape) {
	m, model := s.m, s.model
	for _, r := range s.loaded {
		v := 0.0
		if r.resident {
			v = 1
		}
		e.gauge("vllm:lora_adapter_loaded", "Whether a LoRA adapter is loaded (1) at a level: gpu slot or cpu cache.", v,
			"model_name", model, "adapter_name", r.adapter, "level", r.level, "pinned", r.pinned)
	}
	e.gauge("vllm:num_gpu_loaded_lora_adapters", "Number of LoRA adapters in GPU slots.", float64(len(m.LoadedLoRAs)), "model_name", model)
	e.gauge("vllm:max_gpu_lora_adapters", "Number of GPU LoRA adapter slots (max_loras).", float64(m.MaxLoRAs), "model_name", model)
	for _, t := range []struct {
		name  string
		stats engine.TransitionStats
	}{{"load", m.LoRALoad}, {"activate", m.LoRAActivate}} {
		e.histogram("vllm:lora_adapter_load_seconds", "Time to load a LoRA adapter into the cpu cache (load) or a GPU slot (activate).",
			t.stats, "model_name", model, "transition", t.name)
	}
}

// histogram exports a transition's count and sum as a histogram. The
// engine charges every transition of a kind the same configured delay, so
// all observations equal the mean; the tolerance absorbs the rounding of
// summing float seconds.
func (e *emitter) histogram(name, help string, t engine.TransitionStats, kv ...string) {
	buckets := make(map[float64]uint64, len(loraLoadBuckets))
	mean := 0.0
	if t.Count > 0 {
		mean = t.Seconds / float64(t.Count)
	}
	for _, ub := range loraLoadBuckets {
		if mean <= ub*(1+1e-9) {
			buckets[ub] = t.Count
		} else {
			buckets[ub] = 0
		}
	}
	names, values := splitLabels(kv)
	desc := prometheus.NewDesc(name, help, names, nil)
	m, err := prometheus.NewConstHistogram(desc, t.Count, t.Seconds, buckets, values...)
	if err != nil {
		m = prometheus.NewInvalidMetric(desc, err)
	}
	e.ch <- m
}
