package promalias

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Twins serves the families gathered under one name prefix again under
// another (llm-d's deprecated llm_d_router_epp_ copies of its llm_d_epp_
// families), unchanged but for the name. Only is the families (suffixes
// after From) to copy; empty copies every family with the prefix.
type Twins struct {
	From, To string
	Only     []string
}

// TwinGatherer gathers its source and appends the twins.
type TwinGatherer struct {
	src   prometheus.Gatherer
	twins []Twins
}

// NewTwins wraps src.
func NewTwins(src prometheus.Gatherer, twins ...Twins) *TwinGatherer {
	return &TwinGatherer{src: src, twins: twins}
}

// Gather implements prometheus.Gatherer. A twin shares its original's
// series (the page is encoded, never changed, after gathering); a name the
// source already has is not replaced.
func (g *TwinGatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, err := g.src.Gather()
	have := familyNames(fams)
	out := fams
	for _, t := range g.twins {
		for _, f := range fams {
			rest, ok := strings.CutPrefix(f.GetName(), t.From)
			name := t.To + rest
			if !ok || have[name] || (len(t.Only) > 0 && !slices.Contains(t.Only, rest)) {
				continue
			}
			have[name] = true
			out = append(out, &dto.MetricFamily{Name: &name, Help: f.Help, Type: f.Type, Unit: f.Unit, Metric: f.Metric})
		}
	}
	sortIfGrown(out, len(fams))
	return out, err
}
