package requestcontrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ProbabilisticAdmitterType is the type name of ProbabilisticAdmitter.
const ProbabilisticAdmitterType = "probabilistic-admitter"

// ProbabilisticParams configures ProbabilisticAdmitter, as llm-d names them.
type ProbabilisticParams struct {
	QueueDepthThreshold  float64 `json:"queueDepthThreshold" doc:"waiting requests at which an endpoint counts as fully loaded; > 0" default:"5"`
	KVCacheUtilThreshold float64 `json:"kvCacheUtilThreshold" doc:"KV-cache usage fraction at which an endpoint counts as fully loaded; in (0, 1]" default:"0.8"`
	Power                float64 `json:"power" doc:"steepness of the shedding curve; > 0" default:"5"`
	K                    float64 `json:"k" doc:"scale of the shedding curve: every sheddable request is shed from saturation (1/k)^(1/power) on (0.34 with the defaults); > 0" default:"300"`
}

func (p *ProbabilisticParams) validate() error {
	var errs []error
	positive := func(name string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s: must be a finite number > 0, got %v", name, v))
		}
	}
	positive("queueDepthThreshold", p.QueueDepthThreshold)
	positive("power", p.Power)
	positive("k", p.K)
	if !(p.KVCacheUtilThreshold > 0 && p.KVCacheUtilThreshold <= 1) {
		errs = append(errs, fmt.Errorf("kvCacheUtilThreshold: must be in (0, 1], got %v", p.KVCacheUtilThreshold))
	}
	return errors.Join(errs...)
}

// ProbabilisticAdmitter is llm-d's probabilistic-admitter: it sheds
// sheddable requests (priority < 0) with a probability that rises steeply
// with the pool's load, instead of all of them at once when the pool is
// saturated; requests of priority >= 0 always pass.
//
// Formula: saturation = mean over the candidate endpoints of
// max(waiting queue / queueDepthThreshold, KV-cache usage /
// kvCacheUtilThreshold), an endpoint never scraped counting 1; a sheddable
// request is refused (429) with probability min(1, saturation^power × k).
// With the defaults about 1 in 10 at saturation 0.2 and every one from
// 0.34. No candidates: admitted (the scheduler then says there are none).
// The draw comes from the request's seeded random source, so a run is
// reproducible.
type ProbabilisticAdmitter struct {
	name   scheduler.TypedName
	params ProbabilisticParams
}

var _ scheduler.Admitter = (*ProbabilisticAdmitter)(nil)

// ProbabilisticAdmitterFactory builds a ProbabilisticAdmitter from config.
func ProbabilisticAdmitterFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := ProbabilisticParams{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8, Power: 5, K: 300}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &ProbabilisticAdmitter{name: scheduler.TypedName{Type: ProbabilisticAdmitterType, Name: name}, params: p}, nil
}

// ProbabilisticAdmitterRegistration describes the plugin type for the registry.
func ProbabilisticAdmitterRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ProbabilisticAdmitterType,
		Factory: ProbabilisticAdmitterFactory,
		Params:  ProbabilisticParams{},
		Summary: "Sheds sheddable requests (priority < 0) with probability min(1, saturation^power × k), saturation being the pool's mean of max(queue/queueDepthThreshold, KV usage/kvCacheUtilThreshold).",
	}
}

// TypedName implements scheduler.Plugin.
func (a *ProbabilisticAdmitter) TypedName() scheduler.TypedName { return a.name }

// Admit implements scheduler.Admitter.
func (a *ProbabilisticAdmitter) Admit(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) error {
	if req == nil || req.Priority >= 0 || len(eps) == 0 {
		return nil
	}
	sat := a.saturation(eps)
	p := min(1, math.Pow(sat, a.params.Power)*a.params.K)
	if p <= 0 || state == nil || state.Rand.Float64() >= p {
		return nil
	}
	return fmt.Errorf("%w: sheddable request (priority %d) shed by %s: pool saturation %.2f, shed probability %.2f",
		scheduler.ErrRejected, req.Priority, a.name.String(), sat, p)
}

// saturation is the candidates' mean load against the thresholds.
func (a *ProbabilisticAdmitter) saturation(eps []*endpoint.Endpoint) float64 {
	var sum float64
	for _, e := range eps {
		m := e.Metrics()
		if m == nil || m.UpdateTime.IsZero() {
			sum++ // never scraped: assume the worst, as llm-d does for missing metrics
			continue
		}
		sum += max(float64(m.WaitingQueueSize)/a.params.QueueDepthThreshold, m.KVCacheUsagePercent/a.params.KVCacheUtilThreshold)
	}
	return sum / float64(len(eps))
}
