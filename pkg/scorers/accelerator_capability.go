package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/logevery"
	"github.com/openepp/openepp/pkg/scheduler"
)

// AcceleratorCapabilityType is the type name of AcceleratorCapability.
const AcceleratorCapabilityType = "accelerator-capability-aware"

// AcceleratorCapabilityLabel is the default pod label holding the "min-max"
// range of request tokens an endpoint's accelerator suits.
const AcceleratorCapabilityLabel = "llm-d.ai/accelerator-capability-range"

// acWarnEvery is how often malformed labels are logged: the endpoint stays
// out of rotation, so the line repeats while the label is wrong.
const acWarnEvery = 30 * time.Second

// AcceleratorCapabilityParams configures AcceleratorCapability (llm-d's
// parameters).
type AcceleratorCapabilityParams struct {
	Label           string `json:"label" doc:"endpoint label holding the \"min-max\" range of request tokens an endpoint suits" default:"llm-d.ai/accelerator-capability-range"`
	EnableFiltering bool   `json:"enableFiltering" doc:"also drop endpoints whose range does not hold the request, or whose label is malformed (unlabelled ones stay)" default:"false"`
}

func (p *AcceleratorCapabilityParams) validate() error {
	if strings.TrimSpace(p.Label) == "" {
		return errors.New("label: must not be empty")
	}
	return nil
}

// AcceleratorCapability routes requests by size to the accelerators
// labelled for it (llm-d's accelerator-capability-aware), for pools of
// mixed GPUs or MIG slices: small requests to small slices, large ones to
// whole GPUs.
//
// Inputs: the request's size n in tokens, the count a token-producer got
// for it when one ran (scheduler.PromptTokens), else the prompt bytes / 4
// estimate context-length-aware uses (0 without a body); and each
// endpoint's label (llm-d.ai/accelerator-capability-range), "min-max" with
// 0 <= min <= max, spaces around the numbers allowed. Parameters: label,
// enableFiltering (false).
//
// Score: context-length-aware's formula. With w = max − min, in range
// (min <= n <= max) 0.3 + 0.7 × (0.7/(1 + w/10000) + 0.3 × (max − n)/w),
// and 1 when w = 0, so in (0.3, 1], higher for tighter ranges and more
// headroom; out of range 0.3/(1 + d/1000) with d the distance to the
// nearer bound, so in [0, 0.3); no label 0.5; a malformed label 0.
//
// Filter, with enableFiltering: keep the endpoints whose range holds n and
// those without the label (so labels can be rolled out pod by pod); drop
// those with a malformed label. Unlike context-length-aware, a malformed
// label counts against the endpoint, as in llm-d, so it is logged at most
// every 30s for as long as it is seen.
type AcceleratorCapability struct {
	name   scheduler.TypedName
	label  rangeLabel
	filter bool
	log    logr.Logger
	clock  scheduler.Clock
	warned logevery.Throttle
}

var (
	_ scheduler.ScoreWriter = (*AcceleratorCapability)(nil)
	_ scheduler.Filter      = (*AcceleratorCapability)(nil)
)

// NewAcceleratorCapability validates p and returns the plugin called name;
// h (may be nil) gives the logger and clock of the malformed-label lines.
func NewAcceleratorCapability(name string, p AcceleratorCapabilityParams, h *scheduler.Handle) (*AcceleratorCapability, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &AcceleratorCapability{
		name:  scheduler.TypedName{Type: AcceleratorCapabilityType, Name: name},
		label: newRangeLabel(p.Label), filter: p.EnableFiltering,
		log: handleLog(h).WithValues("plugin", name), clock: handleClock(h),
	}, nil
}

// AcceleratorCapabilityFactory builds an AcceleratorCapability from config.
func AcceleratorCapabilityFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := AcceleratorCapabilityParams{Label: AcceleratorCapabilityLabel}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewAcceleratorCapability(name, p, h)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// AcceleratorCapabilityRegistration describes the plugin type for the
// registry.
func AcceleratorCapabilityRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: AcceleratorCapabilityType, Factory: AcceleratorCapabilityFactory, Params: AcceleratorCapabilityParams{},
		Summary: "Prefers endpoints whose llm-d.ai/accelerator-capability-range label holds the request's tokens (token-producer's count, " +
			"else bytes/4): in range (0.3, 1] (tighter higher), out of range [0, 0.3) by distance, unlabelled 0.5, malformed 0; " +
			"enableFiltering also drops out-of-range and malformed endpoints.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *AcceleratorCapability) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *AcceleratorCapability) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *AcceleratorCapability) ScoreInto(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	n := requestTokens(state, req)
	var bad malformed
	for i, e := range eps {
		r := s.label.read(e)
		switch {
		case !r.has:
			out[i] = rangeUnlabeled
		case !r.ok:
			out[i] = 0
			bad.add(e)
		default:
			out[i] = rangeScore(n, r.lo, r.hi)
		}
	}
	s.warn(bad)
}

// Filter implements scheduler.Filter: with enableFiltering, keep the
// endpoints whose range holds the request and the unlabelled ones.
func (s *AcceleratorCapability) Filter(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if !s.filter {
		return eps
	}
	n := requestTokens(state, req)
	var bad malformed
	out := make([]*endpoint.Endpoint, 0, len(eps))
	for _, e := range eps {
		r := s.label.read(e)
		if r.has && !r.ok {
			bad.add(e)
			continue
		}
		if !r.has || (n >= r.lo && n <= r.hi) {
			out = append(out, e)
		}
	}
	s.warn(bad)
	if len(out) == len(eps) {
		return eps
	}
	return out
}

// malformed collects one call's endpoints with a malformed label, so a
// call logs one line however many it saw.
type malformed struct {
	first *endpoint.Endpoint
	n     int
}

func (m *malformed) add(e *endpoint.Endpoint) {
	if m.n == 0 {
		m.first = e
	}
	m.n++
}

// warn logs a call's malformed labels, at most every acWarnEvery.
func (s *AcceleratorCapability) warn(m malformed) {
	if m.n == 0 || !s.warned.Allow(s.clock.Now(), acWarnEvery) {
		return
	}
	s.log.Info("warning: malformed accelerator-capability label; the endpoint scores 0 and is filtered out when filtering "+
		"(want \"min-max\", 0 <= min <= max; logged at most every 30s)",
		"endpoint", m.first.String(), "label", s.label.name, "value", m.first.Labels[s.label.name], "malformed", m.n)
}
