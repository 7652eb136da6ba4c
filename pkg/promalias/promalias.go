// Package promalias serves metric families under a second name as well as
// their own, so that one recording answers to two naming schemes (GIE's
// inference_* names and llm-d's llm_d_epp_* names) without a second
// observation on the request path. The copies are made when the page is
// gathered, never while requests run.
package promalias

import (
	"slices"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// Alias serves the family From again as To, with the label names in Labels
// (old name -> new name) renamed. Labels named in Sum are summed away: the
// series that differ only in them become one (counters, gauges and
// histograms add up; a summary keeps only its count and sum). Set adds
// constant labels to every series. Help text and type are kept.
type Alias struct {
	From, To string
	Labels   map[string]string
	Sum      []string
	Set      map[string]string
}

// Gatherer gathers its source and appends each aliased family's copy.
type Gatherer struct {
	src    prometheus.Gatherer
	byFrom map[string][]Alias
}

// New wraps src. A family may have several aliases.
func New(src prometheus.Gatherer, aliases []Alias) *Gatherer {
	g := &Gatherer{src: src, byFrom: map[string][]Alias{}}
	for _, a := range aliases {
		g.byFrom[a.From] = append(g.byFrom[a.From], a)
	}
	return g
}

// Gather implements prometheus.Gatherer. A family the source already has
// under an alias's name is the source's own and is not replaced: two
// families of one name would make the page invalid. Aliases of several
// families to one name (two data sources' error counters, told apart by a
// Set label) make one family holding every copy's series; its help and
// type are the first copy's, and a copy of another type is left out. Like
// the source, it returns what it could gather together with the source's
// error.
func (g *Gatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, err := g.src.Gather()
	native := familyNames(fams)
	out := fams
	made := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		for _, a := range g.byFrom[f.GetName()] {
			if native[a.To] {
				continue
			}
			c := renamed(f, a)
			if prev := made[a.To]; prev != nil {
				if prev.GetType() == c.GetType() {
					prev.Metric = append(prev.Metric, c.Metric...)
					sort.SliceStable(prev.Metric, func(i, j int) bool {
						return labelKey(prev.Metric[i]) < labelKey(prev.Metric[j])
					})
				}
				continue
			}
			made[a.To] = c
			out = append(out, c)
		}
	}
	sortIfGrown(out, len(fams))
	return out, err
}

// familyNames is the set of the families' names.
func familyNames(fams []*dto.MetricFamily) map[string]bool {
	names := make(map[string]bool, len(fams))
	for _, f := range fams {
		names[f.GetName()] = true
	}
	return names
}

// sortIfGrown orders out by name, as a registry does, when copies were
// appended to its first n families.
func sortIfGrown(out []*dto.MetricFamily, n int) {
	if len(out) > n {
		sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	}
}

func renamed(f *dto.MetricFamily, a Alias) *dto.MetricFamily {
	c := proto.Clone(f).(*dto.MetricFamily)
	c.Name = proto.String(a.To)
	if len(a.Sum) > 0 {
		c.Metric = summed(c.Metric, a.Sum)
	}
	if len(a.Labels) == 0 && len(a.Set) == 0 {
		return c
	}
	for _, m := range c.Metric {
		for _, lp := range m.Label {
			if to, ok := a.Labels[lp.GetName()]; ok {
				lp.Name = proto.String(to)
			}
		}
		for k, v := range a.Set {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(k), Value: proto.String(v)})
		}
		// The exposition formats want label pairs sorted by name.
		sort.Slice(m.Label, func(i, j int) bool { return m.Label[i].GetName() < m.Label[j].GetName() })
	}
	return c
}

// summed merges the metrics that agree on every label but those in drop,
// ordered by their remaining labels as a registry orders series.
func summed(ms []*dto.Metric, drop []string) []*dto.Metric {
	var keys []string
	byKey := map[string]*dto.Metric{}
	for _, m := range ms {
		m.Label = slices.DeleteFunc(m.Label, func(lp *dto.LabelPair) bool { return slices.Contains(drop, lp.GetName()) })
		key := labelKey(m)
		if m.Summary != nil {
			m.Summary.Quantile = nil // quantiles of parts do not add up
		}
		if into, ok := byKey[key]; ok {
			add(into, m)
			continue
		}
		byKey[key] = m
		keys = append(keys, key)
	}
	sort.Strings(keys)
	out := make([]*dto.Metric, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out
}

// add adds m's values to into; both come from one family, so a histogram's
// buckets line up.
func add(into, m *dto.Metric) {
	switch {
	case into.Counter != nil:
		into.Counter.Value = proto.Float64(into.Counter.GetValue() + m.Counter.GetValue())
		into.Counter.Exemplar, into.Counter.CreatedTimestamp = nil, nil
	case into.Gauge != nil:
		into.Gauge.Value = proto.Float64(into.Gauge.GetValue() + m.Gauge.GetValue())
	case into.Untyped != nil:
		into.Untyped.Value = proto.Float64(into.Untyped.GetValue() + m.Untyped.GetValue())
	case into.Histogram != nil:
		h, o := into.Histogram, m.Histogram
		h.SampleCount = proto.Uint64(h.GetSampleCount() + o.GetSampleCount())
		h.SampleSum = proto.Float64(h.GetSampleSum() + o.GetSampleSum())
		for i, b := range h.Bucket {
			if i < len(o.Bucket) {
				b.CumulativeCount = proto.Uint64(b.GetCumulativeCount() + o.Bucket[i].GetCumulativeCount())
			}
			b.Exemplar = nil
		}
		h.CreatedTimestamp = nil
	case into.Summary != nil:
		s, o := into.Summary, m.Summary
		s.SampleCount = proto.Uint64(s.GetSampleCount() + o.GetSampleCount())
		s.SampleSum = proto.Float64(s.GetSampleSum() + o.GetSampleSum())
	}
}

// labelKey orders series by their label pairs, as a registry does.
func labelKey(m *dto.Metric) string {
	var b []byte
	for _, lp := range m.GetLabel() {
		b = append(append(append(b, lp.GetName()...), 0), lp.GetValue()...)
		b = append(b, 0)
	}
	return string(b)
}
