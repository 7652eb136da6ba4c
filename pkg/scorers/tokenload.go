package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TokenLoadType is the type name of TokenLoad.
const TokenLoadType = "token-load-scorer"

// TokenLoadParams configures TokenLoad. queueThresholdTokens is upstream's
// scorer parameter; outputRatio and maxEstimatedOutputTokens are those of
// llm-d's inflight-load-producer, whose bookkeeping this scorer does itself.
type TokenLoadParams struct {
	QueueThresholdTokens int `json:"queueThresholdTokens" doc:"in-flight tokens at which an endpoint scores 0" default:"4194304"`
	// OutputRatio estimates a request's output tokens from its input tokens.
	OutputRatio float64 `json:"outputRatio" doc:"estimated output tokens per input token" default:"1.5"`
	// MaxEstimatedOutputTokens caps the output estimate; 0 means no cap.
	MaxEstimatedOutputTokens int      `json:"maxEstimatedOutputTokens" doc:"cap on the estimated output tokens of one request; 0 = no cap" default:"0"`
	RequestTimeout           Duration `json:"requestTimeout" doc:"in-flight requests older than this are assumed finished (Go duration or seconds)" default:"2m"`
	// InFlightLoadProducerName is llm-d's: the producer whose books to read.
	InFlightLoadProducerName string `json:"inFlightLoadProducerName" doc:"read the in-flight tokens of this plugin (llm-d's inflight-load-producer: prompt tokens not yet prefilled) instead of the scorer's own books; empty = its own books (the estimate above, GIE v1.5.0's)" default:""`
}

func (p *TokenLoadParams) validate() error {
	var errs []error
	if p.QueueThresholdTokens < 1 {
		errs = append(errs, fmt.Errorf("queueThresholdTokens: must be >= 1, got %d", p.QueueThresholdTokens))
	}
	if !(p.OutputRatio >= 0) || math.IsInf(p.OutputRatio, 0) {
		errs = append(errs, fmt.Errorf("outputRatio: must be a finite number >= 0, got %v", p.OutputRatio))
	}
	if p.MaxEstimatedOutputTokens < 0 {
		errs = append(errs, fmt.Errorf("maxEstimatedOutputTokens: must be >= 0, got %d", p.MaxEstimatedOutputTokens))
	}
	if p.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("requestTimeout: must be > 0, got %s", p.RequestTimeout))
	}
	return errors.Join(errs...)
}

// TokenLoad prefers endpoints with fewer tokens in flight from this EPP, a
// finer load signal than request counts when prompt sizes vary widely.
//
// Inputs: its own in-flight token totals, kept through the request hooks as
// ActiveRequests keeps request counts. A request is estimated at PreRequest
// as input = prompt bytes/4 (rounded up) plus output = input × outputRatio,
// capped by maxEstimatedOutputTokens (when > 0) and by the request's
// max_tokens (when set); once the response reports usage, the estimate is
// replaced by prompt + completion tokens; the tokens are released with the
// request. A disaggregated request also charges its prefill endpoint its
// prompt tokens until the first response chunk. Parameters:
// queueThresholdTokens (4194304), outputRatio (1.5), maxEstimatedOutputTokens
// (0 = no cap), requestTimeout (2m). Given inFlightLoadProducerName
// (llm-d), it reads that plugin's tokens instead.
//
// Formula, with t the endpoint's in-flight tokens:
// score = 1 − min(1, t/queueThresholdTokens).
type TokenLoad struct {
	inflight.Counter // the lifecycle hooks and the sweep
	name             scheduler.TypedName
	params           TokenLoadParams
	external         *inflight.Tracker // inFlightLoadProducerName's books, when named
}

var (
	_ scheduler.ScoreWriter      = (*TokenLoad)(nil)
	_ scheduler.Resolver         = (*TokenLoad)(nil)
	_ scheduler.PreRequest       = (*TokenLoad)(nil)
	_ scheduler.ResponseHeaders  = (*TokenLoad)(nil)
	_ scheduler.ResponseChunk    = (*TokenLoad)(nil)
	_ scheduler.ResponseComplete = (*TokenLoad)(nil)
	_ scheduler.Runnable         = (*TokenLoad)(nil)
	_ scheduler.StateDumper      = (*TokenLoad)(nil) // the Counter's inflight.State
	_ scheduler.Inheritor        = (*TokenLoad)(nil) // the Counter: in-flight books survive a reload
)

// NewTokenLoad validates p and returns a token-load scorer. h supplies the
// clock, logger and pool (any of them may be unset).
func NewTokenLoad(name string, p TokenLoadParams, h *scheduler.Handle) (*TokenLoad, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	s := &TokenLoad{name: scheduler.TypedName{Type: TokenLoadType, Name: name}, params: p}
	estimate := func(_ *scheduler.State, req *scheduler.Request, _ *endpoint.Endpoint) int { return s.estimate(req) }
	s.Counter = inflight.NewCounter(h, name, time.Duration(p.RequestTimeout), estimate)
	// Disaggregated: the prefill endpoint carries the prompt until the
	// first chunk; the decode endpoint the usual estimate.
	s.ChargePrefill(inflight.PromptTokens, estimate)
	return s, nil
}

// TokenLoadFactory builds a TokenLoad from config.
func TokenLoadFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := TokenLoadParams{QueueThresholdTokens: 4194304, OutputRatio: 1.5, RequestTimeout: Duration(defaultRequestTimeout)}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewTokenLoad(name, p, h)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// TokenLoadRegistration describes the plugin type for the registry.
func TokenLoadRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    TokenLoadType,
		Factory: TokenLoadFactory,
		Params:  TokenLoadParams{},
		Summary: "Prefers endpoints with fewer estimated tokens in flight: 1 − min(1, tokens/queueThresholdTokens).",
	}
}

// TypedName implements scheduler.Plugin.
func (s *TokenLoad) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *TokenLoad) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// Resolve implements scheduler.Resolver: it finds the books named by
// inFlightLoadProducerName, if any.
func (s *TokenLoad) Resolve(h *scheduler.Handle) error {
	if s.params.InFlightLoadProducerName == "" || h == nil {
		return nil
	}
	books, err := inflight.Lookup(h, s.params.InFlightLoadProducerName, InFlightLoadType)
	s.external = books
	return err
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *TokenLoad) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	books := s.Tracker()
	if s.external != nil {
		books = s.external
	}
	books.Tokens(eps, out)
	limit := float64(s.params.QueueThresholdTokens)
	for i, t := range out {
		out[i] = 1 - unitClamp(t/limit)
	}
}

// maxEstimate bounds a request's estimated output tokens whatever the ratio.
const maxEstimate = 1 << 40

// estimate is the request's expected input plus output tokens.
func (s *TokenLoad) estimate(req *scheduler.Request) int {
	if req == nil || req.Body == nil {
		return 0
	}
	in := req.Body.EstimatedPromptTokens()
	out := int(min(float64(in)*s.params.OutputRatio, maxEstimate)) // bounded so the conversion cannot overflow
	if c := s.params.MaxEstimatedOutputTokens; c > 0 {
		out = min(out, c)
	}
	if c := req.Body.MaxTokens; c > 0 {
		out = min(out, c)
	}
	return in + out
}

// ResponseChunk replaces the estimate with the reported usage as soon as
// the response carries it; chunks before that cost one field check.
func (s *TokenLoad) ResponseChunk(_ context.Context, state *scheduler.State, _ *scheduler.Request, resp *scheduler.Response, chunk []byte) {
	if firstChunk(resp, chunk) {
		s.Tracker().ReleasePrefill(state)
	}
	if resp.UsageKnown {
		s.Tracker().SetTokens(state, resp.Usage.PromptTokens+resp.Usage.CompletionTokens)
	}
}
