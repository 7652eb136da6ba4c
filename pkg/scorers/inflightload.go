package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/scheduler"
)

// InFlightLoadType is the type name of InFlightLoad.
const InFlightLoadType = "inflight-load-producer"

// defaultOutputEstimate is llm-d's estimate for a request whose output
// length nothing predicts (its "unknown" bucket): OpenEPP has no
// output-length classifier, so every request gets it.
const defaultOutputEstimate = 1000

// InFlightLoadParams configures InFlightLoad, in llm-d's shape.
type InFlightLoadParams struct {
	AddEstimatedOutputTokens bool `json:"addEstimatedOutputTokens" doc:"also count an estimate of each request's output (1000 tokens, capped by its max_tokens and maxEstimatedOutputTokens) until it ends" default:"false"`
	// IncludeOutputTokens is the older llm-d name of AddEstimatedOutputTokens.
	IncludeOutputTokens         bool     `json:"includeOutputTokens" doc:"older llm-d name of addEstimatedOutputTokens" default:"false"`
	MaxEstimatedOutputTokens    int      `json:"maxEstimatedOutputTokens" doc:"cap on one request's estimated output tokens; 0 = no cap" default:"0"`
	PrefixMatchInfoProducerName string   `json:"prefixMatchInfoProducerName" doc:"the plugin whose prefix matches discount the part of a prompt its endpoint holds; when the default is not configured, whole prompts count" default:"approx-prefix-cache-producer"`
	RequestTimeout              Duration `json:"requestTimeout" doc:"requests still unfinished after this long are assumed finished (Go duration or seconds; OpenEPP extension)" default:"2m"`
}

func (p *InFlightLoadParams) validate() error {
	var errs []error
	if p.MaxEstimatedOutputTokens < 0 {
		errs = append(errs, fmt.Errorf("maxEstimatedOutputTokens: must be >= 0, got %d", p.MaxEstimatedOutputTokens))
	}
	if p.PrefixMatchInfoProducerName == "" {
		errs = append(errs, errors.New("prefixMatchInfoProducerName: must name a plugin"))
	}
	if p.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("requestTimeout: must be > 0, got %s", p.RequestTimeout))
	}
	return errors.Join(errs...)
}

// InFlightLoad is llm-d's inflight-load-producer: books of the requests
// this EPP has in flight on each endpoint and of the prompt tokens they
// still have to prefill there, which prefix-cache-affinity-filter's load
// gate reads (and any plugin naming it in inFlightLoadProducerName).
//
// A request enters at PreRequest on its target, weighing the part of its
// prompt (bytes/4) the target does not hold by the prefix producer's match;
// a disaggregated one weighs that on its prefill endpoint (counted there as
// a request until its first chunk) and only its output estimate on its
// decode endpoint.
// Its prompt tokens leave at its first non-empty response chunk (the first
// token when streaming, the whole answer otherwise): the prefill is done.
// The request itself leaves at its end, or after requestTimeout. With
// addEstimatedOutputTokens it also weighs an output estimate until it ends:
// 1,000 tokens (llm-d's estimate when nothing predicts the length), capped
// by its max_tokens and by maxEstimatedOutputTokens.
type InFlightLoad struct {
	inflight.Counter // the lifecycle hooks, the sweep, the state dump and reload inheritance
	name             scheduler.TypedName
	params           InFlightLoadParams
	output           bool
	source           prefix.Source // nil: whole prompts count
	// gauges serve the books as llm-d's inflight_requests and
	// inflight_tokens while the instance runs; nil without a registry.
	gauges *inflight.LoadGauges
	pool   func() []*endpoint.Endpoint
}

var (
	_ scheduler.Resolver         = (*InFlightLoad)(nil)
	_ scheduler.PreRequest       = (*InFlightLoad)(nil)
	_ scheduler.ResponseHeaders  = (*InFlightLoad)(nil)
	_ scheduler.ResponseChunk    = (*InFlightLoad)(nil)
	_ scheduler.ResponseComplete = (*InFlightLoad)(nil)
	_ scheduler.Runnable         = (*InFlightLoad)(nil)
	_ scheduler.StateDumper      = (*InFlightLoad)(nil)
	_ scheduler.Inheritor        = (*InFlightLoad)(nil)
)

// NewInFlightLoad validates p and returns the producer; Resolve finds its
// prefix source. h supplies the clock, logger and pool (any may be unset).
func NewInFlightLoad(name string, p InFlightLoadParams, h *scheduler.Handle) (*InFlightLoad, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	s := &InFlightLoad{
		name: scheduler.TypedName{Type: InFlightLoadType, Name: name}, params: p,
		output: p.AddEstimatedOutputTokens || p.IncludeOutputTokens,
	}
	s.Counter = inflight.NewCounter(h, name, time.Duration(p.RequestTimeout), s.weigh)
	if reg := h.MetricsRegisterer(); reg != nil && h.Endpoints != nil { // a nil h has no registerer
		g, err := promreg.Shared(reg, inflight.NewLoadGauges())
		if err != nil {
			return nil, err
		}
		s.gauges, s.pool = g, h.Endpoints
	}
	// Disaggregated: the prompt is prefilled on the prefill endpoint, the
	// decode endpoint carries the output only (as llm-d charges them).
	s.ChargePrefill(s.uncachedPrompt, func(_ *scheduler.State, req *scheduler.Request, _ *endpoint.Endpoint) int {
		return s.outputEstimate(req)
	})
	return s, nil
}

// InFlightLoadFactory builds an InFlightLoad from config.
func InFlightLoadFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := InFlightLoadParams{PrefixMatchInfoProducerName: defaultPrefixSource, RequestTimeout: Duration(defaultRequestTimeout)}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewInFlightLoad(name, p, h)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// InFlightLoadRegistration describes the plugin type for the registry.
func InFlightLoadRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    InFlightLoadType,
		Factory: InFlightLoadFactory,
		Params:  InFlightLoadParams{},
		Summary: "Keeps this EPP's in-flight requests and their not yet prefilled (uncached) prompt tokens per endpoint, for prefix-cache-affinity-filter's load gate.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *InFlightLoad) TypedName() scheduler.TypedName { return s.name }

// Start implements scheduler.Runnable: the books are swept and, while the
// instance runs (after a reload has handed it its predecessor's books),
// served as gauges.
func (s *InFlightLoad) Start(ctx context.Context) error {
	if s.gauges != nil {
		s.gauges.Add(s.name.Name, s, s.Tracker(), s.pool)
		defer s.gauges.Remove(s.name.Name, s)
	}
	return s.Counter.Start(ctx)
}

// Resolve implements scheduler.Resolver: it finds the prefix source. The
// default source may be absent (then no discount, as when nothing matched);
// a source named explicitly must exist.
func (s *InFlightLoad) Resolve(h *scheduler.Handle) error {
	src, err := prefix.LookupOptional(h, s.params.PrefixMatchInfoProducerName)
	s.source = src
	return err
}

// weigh is the Counter's estimate: the request's uncached prompt tokens on
// its target, plus its output estimate when counted.
func (s *InFlightLoad) weigh(state *scheduler.State, req *scheduler.Request, target *endpoint.Endpoint) int {
	return s.uncachedPrompt(state, req, target) + s.outputEstimate(req)
}

// uncachedPrompt is the part of the request's prompt target does not hold.
func (s *InFlightLoad) uncachedPrompt(state *scheduler.State, req *scheduler.Request, target *endpoint.Endpoint) int {
	if req == nil || req.Body == nil {
		return 0
	}
	return prefix.MatchOf(s.source, state).Uncached(req.Body.EstimatedPromptTokens(), target)
}

// outputEstimate is what the request's output weighs in the books.
func (s *InFlightLoad) outputEstimate(req *scheduler.Request) int {
	if !s.output || req == nil || req.Body == nil {
		return 0
	}
	out := defaultOutputEstimate
	if c := s.params.MaxEstimatedOutputTokens; c > 0 {
		out = min(out, c)
	}
	if c := req.Body.MaxTokens; c > 0 {
		out = min(out, c)
	}
	return out
}

// ResponseChunk releases the prompt tokens (and a prefill endpoint's
// request) at the first non-empty chunk, keeping the output estimate (if
// any) until the request ends.
func (s *InFlightLoad) ResponseChunk(_ context.Context, state *scheduler.State, req *scheduler.Request, resp *scheduler.Response, chunk []byte) {
	if firstChunk(resp, chunk) {
		s.Tracker().SetTokens(state, s.outputEstimate(req))
		s.Tracker().ReleasePrefill(state)
	}
}
