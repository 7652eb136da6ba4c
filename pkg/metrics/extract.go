package metrics

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Labels of vLLM's lora_requests_info series.
const (
	loraRunningLabel = "running_lora_adapters"
	loraWaitingLabel = "waiting_lora_adapters"
	loraMaxLabel     = "max_lora"
)

// maxCount bounds integer fields so a garbage value cannot overflow int math
// downstream.
const maxCount = 1 << 31

var (
	errFamilyNotFound = errors.New("metric family not found")
	errNoSeries       = errors.New("no series matches the selector")
)

// loraCache remembers the last adapter label strings and the sets built from
// them, so an unchanged adapter list costs no allocation.
type loraCache struct {
	running, waiting       string
	runningSet, waitingSet map[string]int
	// residency is the adapter map last published, reused while unchanged.
	residency map[string]endpoint.LoRAResidence
}

// extract reads every enabled field of e from fams into a copy of prev.
// A field that cannot be read keeps its previous value and is reported in
// failed (with its error joined into err); the other fields still update.
func (e *engine) extract(fams map[string]*dto.MetricFamily, prev *endpoint.Metrics, lc *loraCache) (
	next endpoint.Metrics, failed fieldSet, err error,
) {
	next = *prev
	var errs [numFields]error
	var res residencyRead
	for f := range numFields {
		sel := e.specs[f]
		if sel == nil {
			continue
		}
		var ferr error
		if residencyFields&(1<<f) != 0 {
			ferr = readResidency(f, sel, fams, &res)
		} else {
			ferr = e.extractField(f, sel, fams, &next, lc)
		}
		if ferr != nil {
			failed |= 1 << f
			errs[f] = fmt.Errorf("%s %s: %w", f, sel.String(), ferr)
		}
	}
	failed = e.geometryFromEither(failed)
	if res.present&(1<<fieldLoRALoaded|1<<fieldLoRAGPULoaded) == 0 && next.MaxActiveModels > 0 {
		res.base = e.servedModel(fams)
	}
	applyResidency(&res, failed, &next, lc)
	var joined []error
	for f := range numFields {
		if failed&(1<<f) != 0 {
			joined = append(joined, errs[f])
		}
	}
	return next, failed, errors.Join(joined...)
}

// servedModel is the model_name label of the queue gauge's series, which
// vLLM and SGLang set to the name they serve the base model under: the base
// model of a LoRA server that publishes no residency gauges, so requests
// for it are not taken for an adapter's. "" when the label is absent.
func (e *engine) servedModel(fams map[string]*dto.MetricFamily) string {
	sel := e.specs[fieldQueue]
	if sel == nil {
		return ""
	}
	m, err := latest(fams, sel)
	if err != nil {
		return ""
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == residencyModelLabel {
			return l.GetValue()
		}
	}
	return ""
}

// geometryGauges are the two gauges that give the cache geometry instead of
// an info series.
const geometryGauges = fieldSet(1<<fieldBlockSize | 1<<fieldNumBlocks)

// geometryFromEither forgives the missing source of the cache geometry
// when an engine names both an info series and the two gauges (SGLang
// moved from cache_config_info to page_size and num_pages gauges) and the
// other source gave it: either suffices, the gauges winning when both do.
func (e *engine) geometryFromEither(failed fieldSet) fieldSet {
	if e.enabled&(1<<fieldCacheInfo) == 0 || e.enabled&geometryGauges != geometryGauges {
		return failed
	}
	switch {
	case failed&geometryGauges == 0:
		return failed &^ (1 << fieldCacheInfo)
	case failed&(1<<fieldCacheInfo) == 0:
		return failed &^ geometryGauges
	}
	return failed
}

func (e *engine) extractField(f field, sel *Selector, fams map[string]*dto.MetricFamily, m *endpoint.Metrics, lc *loraCache) error {
	switch f {
	case fieldLoRA:
		return extractLoRA(fams, sel, m, lc)
	case fieldCacheInfo:
		return e.extractCacheInfo(fams, sel, m)
	}
	v, err := scalar(fams, sel)
	if err != nil {
		return err
	}
	switch f {
	case fieldQueue:
		return setCount(&m.WaitingQueueSize, v)
	case fieldRunning:
		return setCount(&m.RunningRequestsSize, v)
	case fieldKVUsage:
		return setFraction(&m.KVCacheUsagePercent, v)
	case fieldBlockSize:
		return setCount(&m.CacheBlockSize, v)
	case fieldNumBlocks:
		return setCount(&m.CacheNumBlocks, v)
	}
	return fmt.Errorf("unhandled field %d", f)
}

// latest returns the series of the selected family that sel matches, picking
// the newest explicit timestamp; among equal timestamps (the usual case: no
// timestamps at all) the first series in page order wins, as upstream does.
func latest(fams map[string]*dto.MetricFamily, sel *Selector) (*dto.Metric, error) {
	mf := fams[sel.Name]
	if mf == nil {
		return nil, errFamilyNotFound
	}
	var best *dto.Metric
	for _, m := range mf.GetMetric() {
		if !sel.Matches(m.GetLabel()) {
			continue
		}
		if best == nil || m.GetTimestampMs() > best.GetTimestampMs() {
			best = m
		}
	}
	if best == nil {
		return nil, errNoSeries
	}
	return best, nil
}

func scalar(fams map[string]*dto.MetricFamily, sel *Selector) (float64, error) {
	m, err := latest(fams, sel)
	if err != nil {
		return 0, err
	}
	return sampleValue(m)
}

// sampleValue accepts gauges, counters and untyped samples alike.
func sampleValue(m *dto.Metric) (float64, error) {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), nil
	case m.Counter != nil:
		return m.Counter.GetValue(), nil
	case m.Untyped != nil:
		return m.Untyped.GetValue(), nil
	}
	return 0, errors.New("series is not a gauge, counter or untyped sample")
}

func setCount(dst *int, v float64) error {
	if math.IsNaN(v) || v < 0 || v >= maxCount {
		return fmt.Errorf("value %v is not a count", v)
	}
	*dst = int(math.Round(v))
	return nil
}

// setFraction takes a utilization in [0, 1]; a value a rounding error above 1
// is clamped, anything else is rejected (a percentage would be a
// misconfigured spec, not something to guess about).
func setFraction(dst *float64, v float64) error {
	if math.IsNaN(v) || v < 0 || v > 1+1e-6 {
		return fmt.Errorf("value %v is outside [0, 1]", v)
	}
	*dst = min(v, 1)
	return nil
}

func (e *engine) extractCacheInfo(fams map[string]*dto.MetricFamily, sel *Selector, m *endpoint.Metrics) error {
	s, err := latest(fams, sel)
	if err != nil {
		return err
	}
	bs, err := labelInt(s.GetLabel(), e.blockSizeLabel)
	if err != nil {
		return err
	}
	nb, err := labelInt(s.GetLabel(), e.numBlocksLabel)
	if err != nil {
		return err
	}
	m.CacheBlockSize, m.CacheNumBlocks = bs, nb
	return nil
}

func labelInt(labels []*dto.LabelPair, name string) (int, error) {
	raw := labelValue(labels, name)
	if raw == "" {
		return 0, fmt.Errorf("label %q missing", name)
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		// Python exporters may render integers as floats ("16.0").
		f, ferr := strconv.ParseFloat(raw, 64)
		if ferr != nil || f != math.Trunc(f) {
			return 0, fmt.Errorf("label %q: %q is not an integer", name, raw)
		}
		n = int(f)
	}
	if n < 0 || n >= maxCount {
		return 0, fmt.Errorf("label %q: %d out of range", name, n)
	}
	return n, nil
}

// extractLoRA reads vLLM's lora_requests_info: the series with the largest
// value (the update timestamp) describes the current adapters.
func extractLoRA(fams map[string]*dto.MetricFamily, sel *Selector, m *endpoint.Metrics, lc *loraCache) error {
	mf := fams[sel.Name]
	if mf == nil {
		return errFamilyNotFound
	}
	var best *dto.Metric
	bestV := math.Inf(-1)
	for _, s := range mf.GetMetric() {
		if !sel.Matches(s.GetLabel()) {
			continue
		}
		if v, err := sampleValue(s); err == nil && (best == nil || v > bestV) {
			best, bestV = s, v
		}
	}
	if best == nil {
		return errNoSeries
	}
	maxLoRA := 0
	if raw := labelValue(best.GetLabel(), loraMaxLabel); raw != "" {
		n, err := labelInt(best.GetLabel(), loraMaxLabel)
		if err != nil {
			return err
		}
		maxLoRA = n
	}
	running := labelValue(best.GetLabel(), loraRunningLabel)
	waiting := labelValue(best.GetLabel(), loraWaitingLabel)
	if lc.runningSet == nil || running != lc.running {
		lc.running, lc.runningSet = running, splitSet(running)
	}
	if lc.waitingSet == nil || waiting != lc.waiting {
		lc.waiting, lc.waitingSet = waiting, splitSet(waiting)
	}
	m.ActiveModels, m.WaitingModels, m.MaxActiveModels = lc.runningSet, lc.waitingSet, maxLoRA
	return nil
}

// splitSet turns "a, b,,c" into {a, b, c}. The returned map is shared by
// every snapshot published from it and must never be mutated.
func splitSet(csv string) map[string]int {
	set := map[string]int{}
	for part := range strings.SplitSeq(csv, ",") {
		if p := strings.TrimSpace(part); p != "" {
			set[p] = 0
		}
	}
	return set
}
