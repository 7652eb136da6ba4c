package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ActiveRequestsType is the type name of ActiveRequests.
const ActiveRequestsType = "active-request-scorer"

// defaultRequestTimeout is how long a request may stay in flight before the
// in-flight trackers assume its completion was lost (llm-d's default).
const defaultRequestTimeout = 2 * time.Minute

// ActiveRequestsParams configures ActiveRequests.
type ActiveRequestsParams struct {
	// IdleThreshold is the in-flight count at or below which an endpoint is
	// idle and scores 1.
	IdleThreshold int `json:"idleThreshold" doc:"in-flight requests at or below which an endpoint is idle and scores 1" default:"0"`
	// MaxBusyScore caps the score of busy endpoints, leaving a gap that makes
	// any idle endpoint win over every busy one when it is below 1.
	MaxBusyScore float64 `json:"maxBusyScore" doc:"highest score a busy (non-idle) endpoint can get, in [0, 1]" default:"1.0"`
	// RequestTimeout releases requests whose completion was never seen.
	RequestTimeout Duration `json:"requestTimeout" doc:"in-flight requests older than this are assumed finished (Go duration or seconds)" default:"2m"`
}

func (p *ActiveRequestsParams) validate() error {
	var errs []error
	if p.IdleThreshold < 0 {
		errs = append(errs, fmt.Errorf("idleThreshold: must be >= 0, got %d", p.IdleThreshold))
	}
	if !(p.MaxBusyScore >= 0 && p.MaxBusyScore <= 1) {
		errs = append(errs, fmt.Errorf("maxBusyScore: must be in [0, 1], got %v", p.MaxBusyScore))
	}
	if p.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("requestTimeout: must be > 0, got %s", p.RequestTimeout))
	}
	return errors.Join(errs...)
}

// ActiveRequests prefers endpoints with fewer requests in flight from this
// EPP. Unlike the scraped queue metrics it reacts immediately to its own
// routing decisions, so a burst does not pile onto the endpoint that looked
// idle at the last scrape.
//
// Inputs: its own in-flight counts, kept through the request hooks: a
// request counts against its primary target from PreRequest, moves to the
// endpoint the proxy reports as served in ResponseHeaders, and is released
// once in ResponseComplete (also when cancelled), after requestTimeout, or
// when its endpoint leaves the pool. Parameters: idleThreshold (0),
// maxBusyScore (1.0), requestTimeout (2m).
//
// Formula, with c the endpoint's in-flight count and maxC the largest count
// among the candidates: c ≤ idleThreshold → 1; otherwise
// maxBusyScore × (maxC − c)/maxC, so the busiest candidate scores 0.
type ActiveRequests struct {
	inflight.Counter // the lifecycle hooks and the sweep
	name             scheduler.TypedName
	params           ActiveRequestsParams
}

var (
	_ scheduler.ScoreWriter      = (*ActiveRequests)(nil)
	_ scheduler.PreRequest       = (*ActiveRequests)(nil)
	_ scheduler.ResponseHeaders  = (*ActiveRequests)(nil)
	_ scheduler.ResponseComplete = (*ActiveRequests)(nil)
	_ scheduler.Runnable         = (*ActiveRequests)(nil)
	_ scheduler.StateDumper      = (*ActiveRequests)(nil) // the Counter's inflight.State
	_ scheduler.Inheritor        = (*ActiveRequests)(nil) // the Counter: in-flight books survive a reload
)

// NewActiveRequests validates p and returns an active-request scorer. h
// supplies the clock, logger and pool (any of them may be unset).
func NewActiveRequests(name string, p ActiveRequestsParams, h *scheduler.Handle) (*ActiveRequests, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &ActiveRequests{
		Counter: inflight.NewCounter(h, name, time.Duration(p.RequestTimeout), nil),
		name:    scheduler.TypedName{Type: ActiveRequestsType, Name: name},
		params:  p,
	}, nil
}

// ActiveRequestsFactory builds an ActiveRequests from config.
func ActiveRequestsFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := ActiveRequestsParams{MaxBusyScore: 1, RequestTimeout: Duration(defaultRequestTimeout)}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewActiveRequests(name, p, h)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ActiveRequestsRegistration describes the plugin type for the registry.
func ActiveRequestsRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ActiveRequestsType,
		Factory: ActiveRequestsFactory,
		Params:  ActiveRequestsParams{},
		Summary: "Prefers endpoints with fewer requests in flight from this EPP: idle 1, busiest 0.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *ActiveRequests) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *ActiveRequests) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *ActiveRequests) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	s.Tracker().Requests(eps, out)
	idle := float64(s.params.IdleThreshold)
	busiest := 0.0
	for _, c := range out {
		busiest = max(busiest, c)
	}
	for i, c := range out {
		if c <= idle {
			out[i] = 1
			continue
		}
		out[i] = s.params.MaxBusyScore * (busiest - c) / busiest
	}
}

// handleClock returns h's clock, or the wall clock when h has none.
func handleClock(h *scheduler.Handle) scheduler.Clock {
	if h == nil || h.Clock == nil {
		return scheduler.RealClock{}
	}
	return h.Clock
}

// handleLog returns h's logger, or a discarding one when h is nil.
func handleLog(h *scheduler.Handle) logr.Logger {
	if h == nil {
		return logr.Discard()
	}
	return h.Log
}
