package scorers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// RunningRequestsType is the type name of RunningRequests.
const RunningRequestsType = "running-requests-size-scorer"

// RunningRequestsParams is empty: the scorer takes no parameters.
type RunningRequestsParams struct{}

func (p *RunningRequestsParams) validate() error { return nil }

// RunningRequests prefers endpoints running fewer requests, whose batches
// are smaller and so decode faster per token.
//
// Inputs: Metrics.RunningRequestsSize of each candidate. Parameters: none.
// Formula, with r the endpoint's running requests and minR, maxR taken over
// the candidates: score = (maxR − r)/(maxR − minR); when all are equal every
// endpoint scores 1.
type RunningRequests struct {
	name scheduler.TypedName
}

var _ scheduler.ScoreWriter = (*RunningRequests)(nil)

// NewRunningRequests returns a running-requests scorer called name.
func NewRunningRequests(name string) *RunningRequests {
	return &RunningRequests{name: scheduler.TypedName{Type: RunningRequestsType, Name: name}}
}

// RunningRequestsFactory builds a RunningRequests from config.
func RunningRequestsFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p RunningRequestsParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return NewRunningRequests(name), nil
}

// RunningRequestsRegistration describes the plugin type for the registry.
func RunningRequestsRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    RunningRequestsType,
		Factory: RunningRequestsFactory,
		Params:  RunningRequestsParams{},
		Summary: "Prefers endpoints running fewer requests: (maxR − r)/(maxR − minR) over the candidates.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *RunningRequests) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *RunningRequests) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *RunningRequests) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	for i, e := range eps {
		out[i] = float64(e.Metrics().RunningRequestsSize)
	}
	inverseMinMax(out)
}
