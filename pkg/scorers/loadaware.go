package scorers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// LoadAwareType is the type name of LoadAware.
const LoadAwareType = "load-aware-scorer"

// LoadAwareParams configures LoadAware.
type LoadAwareParams struct {
	// Threshold is the waiting-queue length at which an endpoint counts as
	// overloaded and scores 0.
	Threshold int `json:"threshold" doc:"waiting-queue length at which an endpoint scores 0 (overloaded)" default:"128"`
}

func (p *LoadAwareParams) validate() error {
	if p.Threshold < 1 {
		return fmt.Errorf("threshold: must be >= 1, got %d", p.Threshold)
	}
	return nil
}

// LoadAware scores endpoints by their waiting queue against a fixed
// overload threshold. Unlike QueueDepth it is absolute, not relative to the
// other candidates, and its range is [0, 0.5], as upstream's, so that it
// nudges rather than dominates when combined with affinity scorers.
//
// Inputs: Metrics.WaitingQueueSize of each candidate. Parameters: threshold
// (default 128). Formula, with q the queue: q = 0 → 0.5; q ≥ threshold → 0;
// otherwise 0.5 × (1 − q/threshold).
type LoadAware struct {
	name      scheduler.TypedName
	threshold float64
}

var _ scheduler.ScoreWriter = (*LoadAware)(nil)

// NewLoadAware validates p and returns a load-aware scorer called name.
func NewLoadAware(name string, p LoadAwareParams) (*LoadAware, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &LoadAware{name: scheduler.TypedName{Type: LoadAwareType, Name: name}, threshold: float64(p.Threshold)}, nil
}

// LoadAwareFactory builds a LoadAware from config.
func LoadAwareFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := LoadAwareParams{Threshold: 128}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewLoadAware(name, p)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// LoadAwareRegistration describes the plugin type for the registry.
func LoadAwareRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    LoadAwareType,
		Factory: LoadAwareFactory,
		Params:  LoadAwareParams{},
		Summary: "Scores the waiting queue against a threshold in [0, 0.5]: empty 0.5, at or over threshold 0.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *LoadAware) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *LoadAware) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *LoadAware) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	for i, e := range eps {
		q := float64(e.Metrics().WaitingQueueSize)
		out[i] = 0.5 * (1 - unitClamp(q/s.threshold))
	}
}
