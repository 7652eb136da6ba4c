package scorers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// LoRAAffinityType is the type name of LoRAAffinity.
const LoRAAffinityType = "lora-affinity-scorer"

// LoRAAffinityParams is empty: the scorer takes no parameters.
type LoRAAffinityParams struct{}

func (p *LoRAAffinityParams) validate() error { return nil }

// The LoRA affinity levels, best first.
const (
	loraActive   = 1.0 // adapter already loaded: no load delay
	loraHasSlot  = 0.8 // a free adapter slot: loads without evicting
	loraWaiting  = 0.6 // already queued for loading on this server
	loraNoChance = 0.0 // slots full and not queued: must wait for an eviction
)

// LoRAAffinity prefers endpoints that already serve the request's LoRA
// adapter, or can load it soonest, because loading an adapter delays every
// request that needs it.
//
// Inputs: Request.Model and each candidate's Metrics.ActiveModels,
// WaitingModels and MaxActiveModels. Parameters: none. Formula, checked in
// this order: 1.0 if the model is in ActiveModels; 0.8 if
// len(ActiveModels)+len(WaitingModels) < MaxActiveModels; 0.6 if the model
// is in WaitingModels; else 0.
//
// A base-model request is scored like any other model name, as upstream
// does: the base model never appears among the adapters, so it gets 0.8
// where adapter slots are free and 0 where they are full (and 0 everywhere on
// servers that report no LoRA capacity, which changes no ranking). Leave the
// scorer out of profiles that serve only base-model traffic.
type LoRAAffinity struct {
	name scheduler.TypedName
}

var _ scheduler.ScoreWriter = (*LoRAAffinity)(nil)

// NewLoRAAffinity returns a LoRA affinity scorer called name.
func NewLoRAAffinity(name string) *LoRAAffinity {
	return &LoRAAffinity{name: scheduler.TypedName{Type: LoRAAffinityType, Name: name}}
}

// LoRAAffinityFactory builds a LoRAAffinity from config.
func LoRAAffinityFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p LoRAAffinityParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return NewLoRAAffinity(name), nil
}

// LoRAAffinityRegistration describes the plugin type for the registry.
func LoRAAffinityRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    LoRAAffinityType,
		Factory: LoRAAffinityFactory,
		Params:  LoRAAffinityParams{},
		Summary: "Prefers endpoints with the request's LoRA adapter loaded (1), a free slot (0.8) or it queued (0.6).",
	}
}

// TypedName implements scheduler.Plugin.
func (s *LoRAAffinity) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *LoRAAffinity) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *LoRAAffinity) ScoreInto(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	for i, e := range eps {
		out[i] = loraScore(e.Metrics(), req.Model)
	}
}

func loraScore(m *endpoint.Metrics, model string) float64 {
	if _, ok := m.ActiveModels[model]; ok {
		return loraActive
	}
	if len(m.ActiveModels)+len(m.WaitingModels) < m.MaxActiveModels {
		return loraHasSlot
	}
	if _, ok := m.WaitingModels[model]; ok {
		return loraWaiting
	}
	return loraNoChance
}
