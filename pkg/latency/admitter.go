package latency

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// AdmitterType is the type name of Admitter.
const AdmitterType = "latency-slo-admitter"

// AdmitterParams configures Admitter.
type AdmitterParams struct {
	LatencyPredictionInfoProducerName string `json:"latencyPredictionInfoProducerName" doc:"the predicted-latency-producer whose predictions are judged (one is added when none is listed; OpenEPP extension)" default:"predicted-latency-producer"`
}

// Admitter is the latency-slo-admitter of GIE and llm-d: a sheddable
// request (priority < 0) carrying SLO headers is refused with 429 when no
// candidate is predicted to meet its objectives, rather than sent to a
// certain miss. Requests without SLO headers, of priority >= 0, or arriving
// before the models predict are admitted.
type Admitter struct {
	name     scheduler.TypedName
	params   AdmitterParams
	producer *Producer
}

var (
	_ scheduler.Admitter = (*Admitter)(nil)
	_ scheduler.Resolver = (*Admitter)(nil)
)

// AdmitterFactory builds an Admitter from config.
func AdmitterFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := AdmitterParams{LatencyPredictionInfoProducerName: ProducerType}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return &Admitter{name: scheduler.TypedName{Type: AdmitterType, Name: name}, params: p}, nil
}

// AdmitterRegistration describes the plugin type for the registry.
func AdmitterRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    AdmitterType,
		Factory: AdmitterFactory,
		Params:  AdmitterParams{},
		Summary: "Refuses (429) a sheddable request with SLO headers when no endpoint is predicted to meet them.",
	}
}

// TypedName implements scheduler.Plugin.
func (a *Admitter) TypedName() scheduler.TypedName { return a.name }

// Resolve implements scheduler.Resolver.
func (a *Admitter) Resolve(h *scheduler.Handle) error {
	p, err := lookupProducer(h, a.params.LatencyPredictionInfoProducerName)
	a.producer = p
	return err
}

// Admit implements scheduler.Admitter.
func (a *Admitter) Admit(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) error {
	if req == nil || req.Priority >= 0 || !a.producer.HasSLO(state) {
		return nil
	}
	preds, ok := a.producer.Predictions(state)
	if !ok {
		return nil
	}
	for _, e := range eps {
		if p, ok := preds[e.HostPort]; ok && p.TTFTHeadroom >= 0 && p.TPOTHeadroom >= 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: sheddable request (priority %d) shed by %s: no endpoint is predicted to meet its latency objectives",
		scheduler.ErrRejected, req.Priority, a.name.String())
}
