package scorers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// KVCacheUtilizationType is the type name of KVCacheUtilization.
const KVCacheUtilizationType = "kv-cache-utilization-scorer"

// KVCacheUtilizationParams is empty: the scorer takes no parameters.
type KVCacheUtilizationParams struct{}

func (p *KVCacheUtilizationParams) validate() error { return nil }

// KVCacheUtilization prefers endpoints with free KV-cache space, where a new
// request is least likely to wait for blocks or preempt others.
//
// Inputs: Metrics.KVCacheUsagePercent (a fraction, 0..1) of each candidate.
// Parameters: none. Formula: score = 1 − clamp(usage, 0, 1); an unusable
// value (NaN) counts as a full cache, so it scores 0.
type KVCacheUtilization struct {
	name scheduler.TypedName
}

var _ scheduler.ScoreWriter = (*KVCacheUtilization)(nil)

// NewKVCacheUtilization returns a KV-cache utilization scorer called name.
func NewKVCacheUtilization(name string) *KVCacheUtilization {
	return &KVCacheUtilization{name: scheduler.TypedName{Type: KVCacheUtilizationType, Name: name}}
}

// KVCacheUtilizationFactory builds a KVCacheUtilization from config.
func KVCacheUtilizationFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p KVCacheUtilizationParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return NewKVCacheUtilization(name), nil
}

// KVCacheUtilizationRegistration describes the plugin type for the registry.
func KVCacheUtilizationRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    KVCacheUtilizationType,
		Factory: KVCacheUtilizationFactory,
		Params:  KVCacheUtilizationParams{},
		Summary: "Prefers endpoints with free KV-cache space: 1 − KV-cache usage.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *KVCacheUtilization) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *KVCacheUtilization) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *KVCacheUtilization) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	for i, e := range eps {
		u := e.Metrics().KVCacheUsagePercent
		if u != u { // NaN: treat as full
			u = 1
		}
		out[i] = 1 - unitClamp(u)
	}
}
