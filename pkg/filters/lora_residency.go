package filters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/scheduler"
)

// LoRAResidencyType is the type name of LoRAResidency (llm-d's).
const LoRAResidencyType = "lora-residency-filter"

// Outcomes of one request, as counted in
// openepp_lora_residency_filter_decisions_total.
const (
	residencyBaseModel      = "base_model"      // the request needs no adapter: all pass
	residencyUnreported     = "unreported"      // no candidate reports residency: all pass
	residencyNoHome         = "no_home"         // no candidate has the adapter in a GPU slot: all pass
	residencySticky         = "sticky"          // a home has room: the homes
	residencyCapBlocked     = "cap_blocked"     // homes full, but maxReplicas homes already: the homes
	residencySpread         = "spread"          // homes full: the warm (else cold) candidates with room
	residencyFleetSaturated = "fleet_saturated" // homes full and nothing else has room: the homes
)

// LoRAResidencyParams configures LoRAResidency, in llm-d's names.
type LoRAResidencyParams struct {
	MaxReplicas      int     `json:"maxReplicas" doc:"the adapter spreads to no more servers once this many candidates hold it in a GPU slot; 0 = unbounded" default:"0"`
	QueueThreshold   int     `json:"queueThreshold" doc:"a server with more waiting requests than this is saturated; 0 = the queue does not count" default:"8"`
	KVCacheThreshold float64 `json:"kvCacheThreshold" doc:"a server whose KV-cache usage fraction exceeds this is saturated; in [0, 1], 0 = KV usage does not count" default:"0.8"`
}

// DefaultLoRAResidencyParams returns llm-d's defaults.
func DefaultLoRAResidencyParams() LoRAResidencyParams {
	return LoRAResidencyParams{QueueThreshold: 8, KVCacheThreshold: 0.8}
}

func (p *LoRAResidencyParams) validate() error {
	var errs []error
	if p.MaxReplicas < 0 {
		errs = append(errs, fmt.Errorf("maxReplicas: must be >= 0 (0 = unbounded), got %d", p.MaxReplicas))
	}
	if p.QueueThreshold < 0 {
		errs = append(errs, fmt.Errorf("queueThreshold: must be >= 0 (0 = off), got %d", p.QueueThreshold))
	}
	if !(p.KVCacheThreshold >= 0 && p.KVCacheThreshold <= 1) {
		errs = append(errs, fmt.Errorf("kvCacheThreshold: must be in [0, 1] (0 = off), got %v", p.KVCacheThreshold))
	}
	return errors.Join(errs...)
}

// LoRAResidency decides whether a LoRA adapter may spread to another
// server: it keeps a request on the servers holding its adapter in a GPU
// slot while one of them has room, because every extra copy takes a slot
// another adapter could use and costs a load. It is llm-d's
// lora-residency-filter.
//
// Inputs: Request.Model (the model the server sees, after rewrites) and each
// candidate's Metrics: LoRAResidency, BaseModel, WaitingQueueSize and
// KVCacheUsagePercent. Parameters (defaults): maxReplicas (0, unbounded),
// queueThreshold (8; 0 off), kvCacheThreshold (0.8; 0 off).
//
// Rule. Every candidate passes when the model is some candidate's
// BaseModel (no adapter needed) or no candidate reports residency
// (LoRAResidency nil everywhere). Otherwise the candidates are homes
// (adapter in a GPU slot), warm (in the host cache only) or cold, and one is
// saturated when WaitingQueueSize > queueThreshold or KVCacheUsagePercent >
// kvCacheThreshold (each when enabled). In order: no home: all pass; some
// home not saturated: the homes pass (all of them; scorers choose); every
// home saturated and maxReplicas > 0 homes or more: the homes; some other
// candidate not saturated: the unsaturated warm ones, else the unsaturated
// cold ones; else the homes. The homes counted are the candidates this
// request sees, not the whole pool.
//
// Every decision is counted in
// openepp_lora_residency_filter_decisions_total{plugin, outcome}.
type LoRAResidency struct {
	name      scheduler.TypedName
	p         LoRAResidencyParams
	decisions *prometheus.CounterVec // nil: not counted
}

var _ scheduler.Filter = (*LoRAResidency)(nil)

// LoRAResidencyDecisionsMetric counts the filter's decisions; the EPP serves
// it under llm-d's name too (llm_d_epp_lora_residency_filter_decisions_total,
// label plugin_name).
const LoRAResidencyDecisionsMetric = "openepp_lora_residency_filter_decisions_total"

// NewLoRAResidency validates p and returns the filter called name,
// counting its decisions on reg (nil: not counted).
func NewLoRAResidency(name string, p LoRAResidencyParams, reg prometheus.Registerer) (*LoRAResidency, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	decisions, err := promreg.Outcomes(reg, LoRAResidencyDecisionsMetric,
		"Requests lora-residency-filter decided on, by outcome: sticky (a home of the adapter has room), spread (every home "+
			"saturated: candidates with room), cap_blocked (homes saturated, maxReplicas reached), fleet_saturated (nothing has "+
			"room: the homes), no_home (no candidate holds the adapter in a GPU slot), base_model and unreported (all pass).")
	if err != nil {
		return nil, err
	}
	return &LoRAResidency{name: scheduler.TypedName{Type: LoRAResidencyType, Name: name}, p: p, decisions: decisions}, nil
}

// LoRAResidencyFactory builds a LoRAResidency from config.
func LoRAResidencyFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultLoRAResidencyParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewLoRAResidency(name, p, h.MetricsRegisterer())
}

// LoRAResidencyRegistration describes the plugin type for the registry.
func LoRAResidencyRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    LoRAResidencyType,
		Factory: LoRAResidencyFactory,
		Params:  LoRAResidencyParams{},
		Summary: "Keeps a LoRA request on the servers holding its adapter in a GPU slot while one has room; when all are saturated, " +
			"spreads it to unsaturated servers holding it in host memory, else to any unsaturated server, unless maxReplicas " +
			"candidates hold it already (llm-d).",
	}
}

// TypedName implements scheduler.Plugin.
func (f *LoRAResidency) TypedName() scheduler.TypedName { return f.name }

// residencyClass is what a candidate is to the request's adapter.
type residencyClass uint8

const (
	classCold residencyClass = iota
	classWarm
	classHome
	classSaturated residencyClass = 1 << 7 // or-ed onto the others
)

// Filter implements scheduler.Filter.
func (f *LoRAResidency) Filter(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	kept, outcome := f.decide(req.Model, eps)
	if f.decisions != nil {
		f.decisions.WithLabelValues(f.name.Name, outcome).Inc()
	}
	return kept
}

// decide returns the candidates kept and the outcome. Each endpoint's
// metrics are read once, so a scrape landing mid-decision cannot empty the
// answer.
func (f *LoRAResidency) decide(adapter string, eps []*endpoint.Endpoint) ([]*endpoint.Endpoint, string) {
	classes := make([]residencyClass, len(eps))
	reported := false
	var all, free [classHome + 1]int // per class: every candidate, the unsaturated ones
	for i, e := range eps {
		m := e.Metrics()
		if b := m.BaseModel; b != "" && b == adapter {
			return eps, residencyBaseModel
		}
		reported = reported || m.LoRAResidency != nil
		c := classCold
		if r, held := m.LoRAResidency[adapter]; held && r.OnGPU {
			c = classHome
		} else if held {
			c = classWarm
		}
		all[c]++
		if f.saturated(m) {
			classes[i] = c | classSaturated
			continue
		}
		classes[i] = c
		free[c]++
	}
	switch {
	case !reported:
		return eps, residencyUnreported
	case all[classHome] == 0:
		return eps, residencyNoHome
	case free[classHome] > 0:
		return ofClass(eps, classes, classHome, false), residencySticky
	case f.p.MaxReplicas > 0 && all[classHome] >= f.p.MaxReplicas:
		return ofClass(eps, classes, classHome, false), residencyCapBlocked
	case free[classWarm] > 0:
		return ofClass(eps, classes, classWarm, true), residencySpread
	case free[classCold] > 0:
		return ofClass(eps, classes, classCold, true), residencySpread
	}
	return ofClass(eps, classes, classHome, false), residencyFleetSaturated
}

// saturated reports whether the server is over an enabled threshold.
func (f *LoRAResidency) saturated(m *endpoint.Metrics) bool {
	return f.p.QueueThreshold > 0 && m.WaitingQueueSize > f.p.QueueThreshold ||
		f.p.KVCacheThreshold > 0 && m.KVCacheUsagePercent > f.p.KVCacheThreshold
}

// ofClass keeps, in input order, the endpoints of class c (only the
// unsaturated ones when unsaturated is set); eps itself when all are kept.
func ofClass(eps []*endpoint.Endpoint, classes []residencyClass, c residencyClass, unsaturated bool) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, 0, len(eps))
	for i, e := range eps {
		if k := classes[i]; k&^classSaturated == c && (!unsaturated || k&classSaturated == 0) {
			out = append(out, e)
		}
	}
	if len(out) == len(eps) {
		return eps
	}
	return out
}
