package scorers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// QueueDepthType is the type name of QueueDepth.
const QueueDepthType = "queue-scorer"

// QueueDepthParams is empty: the scorer takes no parameters.
type QueueDepthParams struct{}

func (p *QueueDepthParams) validate() error { return nil }

// QueueDepth prefers endpoints with shorter waiting queues, spreading load
// away from servers that already have a backlog.
//
// Inputs: Metrics.WaitingQueueSize of each candidate. Parameters: none.
// Formula, with q the endpoint's queue and minQ, maxQ taken over the
// candidates: score = (maxQ − q)/(maxQ − minQ); when all queues are equal
// every endpoint scores 1.
type QueueDepth struct {
	name scheduler.TypedName
}

var _ scheduler.Scorer = (*QueueDepth)(nil)

// NewQueueDepth returns a queue scorer called name.
func NewQueueDepth(name string) *QueueDepth {
	return &QueueDepth{name: scheduler.TypedName{Type: QueueDepthType, Name: name}}
}

// QueueDepthFactory builds a QueueDepth from config.
func QueueDepthFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p QueueDepthParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return NewQueueDepth(name), nil
}

// QueueDepthRegistration describes the plugin type for the registry.
func QueueDepthRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    QueueDepthType,
		Factory: QueueDepthFactory,
		Params:  QueueDepthParams{},
		Summary: "Prefers endpoints with shorter waiting queues: (maxQ − q)/(maxQ − minQ) over the candidates.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *QueueDepth) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *QueueDepth) Score(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	for i, e := range eps {
		out[i] = float64(e.Metrics().WaitingQueueSize)
	}
	inverseMinMax(out)
	return out
}
