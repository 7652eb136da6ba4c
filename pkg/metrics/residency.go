package metrics

import (
	"fmt"
	"maps"
	"math"

	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Labels of vLLM's LoRA residency families.
const (
	residencyAdapterLabel    = "adapter_name"
	residencyLevelLabel      = "level"
	residencyPinnedLabel     = "pinned"
	residencyModelLabel      = "model_name"
	residencyTransitionLabel = "transition"
)

// residencyRead collects one page's residency families before they are
// applied together: the count falls back on the resident set, and a server
// reports residency when either family is on its page.
type residencyRead struct {
	present  fieldSet
	adapters map[string]endpoint.LoRAResidence
	gpuCount int
	base     string
	slots    int
	load     float64
	activate float64
}

// readResidency reads one residency field into r. A missing family is not
// an error (most servers do not publish these yet); a malformed series is,
// and keeps the field's previous value.
func readResidency(f field, sel *Selector, fams map[string]*dto.MetricFamily, r *residencyRead) error {
	mf := fams[sel.Name]
	if mf == nil {
		return nil
	}
	var err error
	switch f {
	case fieldLoRALoaded:
		r.adapters, err = residentAdapters(mf, sel)
	case fieldLoRAGPULoaded:
		var ok bool
		r.gpuCount, r.base, ok, err = largestGauge(mf, sel, residencyModelLabel)
		if !ok {
			return err
		}
	case fieldLoRAGPUSlots:
		var ok bool
		r.slots, _, ok, err = largestGauge(mf, sel, "")
		if !ok {
			return err
		}
	case fieldLoRALoadSeconds:
		r.load, r.activate, err = transitionMeans(mf, sel)
	}
	if err == nil {
		r.present |= 1 << f
	}
	return err
}

// residentAdapters unions the matching series (one per engine on a
// data-parallel server): an adapter on any GPU counts as on the GPU, pinned
// anywhere as pinned. Series at 0 are adapters that left.
func residentAdapters(mf *dto.MetricFamily, sel *Selector) (map[string]endpoint.LoRAResidence, error) {
	out := map[string]endpoint.LoRAResidence{}
	for _, s := range mf.GetMetric() {
		if !sel.Matches(s.GetLabel()) {
			continue
		}
		v, err := sampleValue(s)
		if err != nil {
			return nil, err
		}
		if !(v > 0) {
			continue
		}
		labels := s.GetLabel()
		name := labelValue(labels, residencyAdapterLabel)
		if name == "" {
			return nil, fmt.Errorf("a resident series has no %q label", residencyAdapterLabel)
		}
		var r endpoint.LoRAResidence
		switch level := labelValue(labels, residencyLevelLabel); level {
		case "gpu":
			r.OnGPU = true
		case "cpu":
		default:
			return nil, fmt.Errorf("adapter %q: %s %q is neither gpu nor cpu", name, residencyLevelLabel, level)
		}
		switch pinned := labelValue(labels, residencyPinnedLabel); pinned {
		case "true", "True":
			r.Pinned = true
		case "false", "False", "":
		default:
			return nil, fmt.Errorf("adapter %q: %s %q is not a boolean", name, residencyPinnedLabel, pinned)
		}
		prev := out[name]
		out[name] = endpoint.LoRAResidence{OnGPU: prev.OnGPU || r.OnGPU, Pinned: prev.Pinned || r.Pinned}
	}
	return out, nil
}

// largestGauge returns the largest matching count (engines of one server
// each report theirs) and that series' label; ok is false when no series
// matches.
func largestGauge(mf *dto.MetricFamily, sel *Selector, label string) (n int, labelVal string, ok bool, err error) {
	best := math.Inf(-1)
	for _, s := range mf.GetMetric() {
		if !sel.Matches(s.GetLabel()) {
			continue
		}
		v, verr := sampleValue(s)
		if verr != nil {
			return 0, "", false, verr
		}
		if v > best {
			best, labelVal = v, labelValue(s.GetLabel(), label)
		}
	}
	if math.IsInf(best, -1) {
		return 0, "", false, nil
	}
	if err := setCount(&n, best); err != nil {
		return 0, "", false, err
	}
	return n, labelVal, true, nil
}

// transitionMeans pools the matching histogram series by transition and
// returns the mean load and activation seconds (0 when none happened).
func transitionMeans(mf *dto.MetricFamily, sel *Selector) (load, activate float64, err error) {
	var sum [2]float64
	var count [2]uint64
	for _, s := range mf.GetMetric() {
		if !sel.Matches(s.GetLabel()) {
			continue
		}
		h := s.GetHistogram()
		if h == nil {
			return 0, 0, fmt.Errorf("series is not a histogram")
		}
		i := -1
		switch labelValue(s.GetLabel(), residencyTransitionLabel) {
		case "load":
			i = 0
		case "activate":
			i = 1
		}
		if i < 0 {
			continue // a transition this reader does not price
		}
		if v := h.GetSampleSum(); math.IsNaN(v) || v < 0 {
			return 0, 0, fmt.Errorf("sum %v is not a duration", v)
		}
		sum[i] += h.GetSampleSum()
		count[i] += h.GetSampleCount()
	}
	mean := func(i int) float64 {
		if count[i] == 0 {
			return 0
		}
		return sum[i] / float64(count[i])
	}
	return mean(0), mean(1), nil
}

// applyResidency publishes what r read into m. Fields that failed keep
// their previous values; a page with neither residency family reports none.
// The adapter map of the previous snapshot is reused when unchanged, so a
// steady server costs no allocation per scrape beyond the read.
func applyResidency(r *residencyRead, failed fieldSet, m *endpoint.Metrics, lc *loraCache) {
	if failed&(1<<fieldLoRAGPUSlots) == 0 && r.present&(1<<fieldLoRAGPUSlots) != 0 {
		m.MaxActiveModels = r.slots
	}
	if failed&(1<<fieldLoRALoadSeconds) == 0 {
		m.LoRALoadSeconds, m.LoRAActivateSeconds = r.load, r.activate
	}
	if failed&(1<<fieldLoRALoaded|1<<fieldLoRAGPULoaded) != 0 {
		return
	}
	loaded, counted := r.present&(1<<fieldLoRALoaded) != 0, r.present&(1<<fieldLoRAGPULoaded) != 0
	if !loaded && !counted {
		m.LoRAResidency, m.GPULoadedAdapters, m.BaseModel = nil, 0, r.base
		lc.residency = nil
		return
	}
	adapters := r.adapters
	if adapters == nil {
		adapters = map[string]endpoint.LoRAResidence{}
	}
	if lc.residency != nil && maps.Equal(adapters, lc.residency) {
		adapters = lc.residency
	}
	lc.residency = adapters
	m.LoRAResidency, m.BaseModel = adapters, r.base
	if counted {
		m.GPULoadedAdapters = r.gpuCount
		return
	}
	m.GPULoadedAdapters = 0
	for _, a := range adapters {
		if a.OnGPU {
			m.GPULoadedAdapters++
		}
	}
}
