package mmcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ScorerType is the type name of Scorer.
const ScorerType = "mm-embeddings-cache-scorer"

// Scorer is llm-d's mm-embeddings-cache-scorer: it prefers the endpoints
// believed to hold more of the request's multimodal items, whose encoder
// outputs they may still cache. An endpoint's score is its match from the
// producer named producerName: the share of the request's distinct items
// routed there recently, in [0, 1]. A request without items scores 0
// everywhere, leaving the choice to the other scorers.
//
// With producerName empty the config loader names the config's only
// mm-embeddings-cache-producer, creating one (with its defaults) when
// there is none.
type Scorer struct {
	name     scheduler.TypedName
	params   ScorerParams
	producer *Producer
}

var (
	_ scheduler.ScoreWriter = (*Scorer)(nil)
	_ scheduler.Resolver    = (*Scorer)(nil)
)

// ScorerRegistration describes the plugin type for the registry.
func ScorerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ScorerType,
		Factory: ScorerFactory,
		Params:  ScorerParams{},
		Summary: "Prefers endpoints believed to hold more of the request's images, audio and video in their encoder cache: the share of its items mm-embeddings-cache-producer saw routed there recently.",
	}
}

// ScorerFactory builds a Scorer from its parameters.
func ScorerFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p ScorerParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewScorer(name, p, nil), nil
}

// NewScorer returns a scorer reading producer; with a nil producer,
// Resolve finds it by name.
func NewScorer(name string, p ScorerParams, producer *Producer) *Scorer {
	return &Scorer{name: scheduler.TypedName{Type: ScorerType, Name: name}, params: p, producer: producer}
}

// TypedName implements scheduler.Plugin.
func (s *Scorer) TypedName() scheduler.TypedName { return s.name }

// Resolve implements scheduler.Resolver: find the producer by name.
func (s *Scorer) Resolve(h *scheduler.Handle) error {
	name := s.params.ProducerName
	if name == "" {
		return errNoProducerName
	}
	if h == nil {
		return errors.New("producerName: no plugin handle to resolve it with")
	}
	pl, ok := h.Plugin(name)
	if !ok {
		return fmt.Errorf("producerName: no plugin named %q in the config; add an %s named so, or name yours", name, ProducerType)
	}
	pr, ok := pl.(*Producer)
	if !ok {
		return fmt.Errorf("producerName: plugin %q has type %q, want %q", name, pl.TypedName().Type, ProducerType)
	}
	s.producer = pr
	return nil
}

// Score implements scheduler.Scorer.
func (s *Scorer) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter; out comes zeroed.
func (s *Scorer) ScoreInto(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	if s.producer == nil {
		return
	}
	m, ok := s.producer.Match(state)
	if !ok || m.Items == 0 {
		return
	}
	for i, e := range eps {
		out[i] = m.Fraction(e)
	}
}
