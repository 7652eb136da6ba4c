package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ContextLengthType is the type name of ContextLength.
const ContextLengthType = "context-length-aware"

// ContextLengthLabel is the default pod label holding the "min-max" range
// of prompt tokens an endpoint is meant for.
const ContextLengthLabel = "llm-d.ai/context-length-range"

// clMaxWarned is how many distinct malformed label values are logged.
const clMaxWarned = 64

// ContextLengthParams configures ContextLength (llm-d's parameters).
type ContextLengthParams struct {
	Label           string `json:"label" doc:"endpoint label holding the \"min-max\" token range an endpoint serves" default:"llm-d.ai/context-length-range"`
	EnableFiltering bool   `json:"enableFiltering" doc:"also drop endpoints whose range does not hold the prompt (unlabelled ones stay)" default:"false"`
	// ReusableTokensProducerName names llm-d's P2P source producer, which
	// OpenEPP does not have.
	ReusableTokensProducerName string `json:"reusableTokensProducerName" doc:"not supported (llm-d's p2p-source-producer); must be empty" default:""`
}

func (p *ContextLengthParams) validate() error {
	var errs []error
	if strings.TrimSpace(p.Label) == "" {
		errs = append(errs, errors.New("label: must not be empty"))
	}
	if p.ReusableTokensProducerName != "" {
		errs = append(errs, errors.New("reusableTokensProducerName: not supported (OpenEPP has no p2p-source-producer); remove it"))
	}
	return errors.Join(errs...)
}

// ContextLength routes prompts to the endpoints labelled for their length
// (llm-d's context-length-aware), e.g. short prompts to small-memory pods
// and long ones to long-context pods.
//
// Inputs: the prompt's token count n — a token-producer's count when one
// ran for the request (scheduler.PromptTokens, as llm-d's estimate prefers
// its tokenizer), else prompt bytes / 4 rounded up (the estimate the
// token-load scorer and the P/D decider use; 0 without a body) and each endpoint's label (llm-d.ai/context-length-range),
// "min-max" with 0 <= min <= max, spaces around the numbers allowed.
// Parameters: label, enableFiltering (false).
//
// Score, with w = max − min: in range (min <= n <= max),
// 0.3 + 0.7 × (0.7 / (1 + w/10000) + 0.3 × (max − n)/w), and 1 when w = 0,
// so in (0.3, 1], higher for tighter ranges and more headroom; out of
// range, 0.3 / (1 + d/1000) with d the distance to the nearer bound, so in
// [0, 0.3), higher for the nearer range; no label, 0.5. A malformed label
// counts as no label (llm-d scores it 0 and filters it out) and is logged
// once per distinct value: a typo on one pod should not take it out of
// rotation.
//
// Filter, with enableFiltering: keep the endpoints whose range holds n and
// those without a (valid) label; otherwise keep all.
type ContextLength struct {
	name   scheduler.TypedName
	label  rangeLabel
	filter bool
	log    logr.Logger

	mu     sync.Mutex
	warned map[string]bool // malformed label values already logged
}

var (
	_ scheduler.ScoreWriter = (*ContextLength)(nil)
	_ scheduler.Filter      = (*ContextLength)(nil)
)

// NewContextLength validates p and returns the scorer called name; log
// receives the malformed-label warnings.
func NewContextLength(name string, p ContextLengthParams, log logr.Logger) (*ContextLength, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &ContextLength{
		name: scheduler.TypedName{Type: ContextLengthType, Name: name}, label: newRangeLabel(p.Label), filter: p.EnableFiltering,
		log: log.WithValues("plugin", name), warned: map[string]bool{},
	}, nil
}

// ContextLengthFactory builds a ContextLength from config.
func ContextLengthFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := ContextLengthParams{Label: ContextLengthLabel}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewContextLength(name, p, handleLog(h))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ContextLengthRegistration describes the plugin type for the registry.
func ContextLengthRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: ContextLengthType, Factory: ContextLengthFactory, Params: ContextLengthParams{},
		Summary: "Prefers endpoints whose llm-d.ai/context-length-range label holds the prompt's tokens (token-producer's count, else bytes/4): in range (0.3, 1] " +
			"(tighter higher), out of range [0, 0.3) by distance, unlabelled 0.5; enableFiltering also drops out-of-range endpoints.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *ContextLength) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *ContextLength) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *ContextLength) ScoreInto(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	n := requestTokens(state, req)
	for i, e := range eps {
		lo, hi, ok := s.bounds(e)
		if !ok {
			out[i] = rangeUnlabeled
			continue
		}
		out[i] = rangeScore(n, lo, hi)
	}
}

// Filter implements scheduler.Filter: with enableFiltering, drop the
// endpoints whose range does not hold the prompt.
func (s *ContextLength) Filter(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if !s.filter {
		return eps
	}
	n := requestTokens(state, req)
	out := make([]*endpoint.Endpoint, 0, len(eps))
	for _, e := range eps {
		if lo, hi, ok := s.bounds(e); !ok || (n >= lo && n <= hi) {
			out = append(out, e)
		}
	}
	if len(out) == len(eps) {
		return eps
	}
	return out
}

// bounds reads e's range; ok is false without the label or when its value
// is malformed (logged once per value).
func (s *ContextLength) bounds(e *endpoint.Endpoint) (lo, hi int, ok bool) {
	r := s.label.read(e)
	if r.has && !r.ok {
		s.warn(e, e.Labels[s.label.name])
	}
	return r.lo, r.hi, r.ok
}

// warn logs a malformed label value the first time it is seen (up to
// clMaxWarned distinct values, so a churning pool cannot grow the set
// without bound).
func (s *ContextLength) warn(e *endpoint.Endpoint, v string) {
	s.mu.Lock()
	first := !s.warned[v] && len(s.warned) < clMaxWarned
	if first {
		s.warned[v] = true
	}
	s.mu.Unlock()
	if first {
		s.log.Info("warning: malformed context-length label, treated as absent (want \"min-max\", 0 <= min <= max)",
			"endpoint", e.String(), "label", s.label.name, "value", v)
	}
}
