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
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// PrefillBacklogType is the type name of PrefillBacklog.
const PrefillBacklogType = "prefill-backlog-scorer"

// PrefillBacklogParams configures PrefillBacklog.
type PrefillBacklogParams struct {
	PrefixMatchInfoProducerName string   `json:"prefixMatchInfoProducerName" doc:"the plugin whose prefix matches tell which part of the prompt each endpoint holds" default:"approx-prefix-cache-producer"`
	BaseTokens                  int      `json:"baseTokens" doc:"tokens added to every endpoint's cost before the ratio is taken, so that differences of a few tokens between nearly idle endpoints stay small" default:"512"`
	RequestTimeout              Duration `json:"requestTimeout" doc:"requests with no first response byte after this long are assumed answered (Go duration or seconds)" default:"2m"`
}

func (p *PrefillBacklogParams) validate() error {
	var errs []error
	if p.PrefixMatchInfoProducerName == "" {
		errs = append(errs, errors.New("prefixMatchInfoProducerName: must name a plugin"))
	}
	if p.BaseTokens < 1 {
		errs = append(errs, fmt.Errorf("baseTokens: must be >= 1, got %d", p.BaseTokens))
	}
	if p.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("requestTimeout: must be > 0, got %s", p.RequestTimeout))
	}
	return errors.Join(errs...)
}

// PrefillBacklog prefers the endpoint where the request's first token is
// expected soonest, reckoned in tokens of prefill: the part of this prompt
// the endpoint does not hold, plus the uncached parts of what this EPP has
// sent it that has not begun to answer. It weighs prefix affinity and load
// in one currency, so a long cached prefix is left only for a backlog
// longer than re-reading it.
//
// Inputs: the prefix matches of its source (how much of the prompt each
// endpoint holds) and its own books of requests routed and not yet
// answered. A request enters the books at PreRequest with its uncached
// tokens on its target, and leaves at its first non-empty response body
// chunk (the first token, when streaming; the whole answer otherwise), at
// its end, or after requestTimeout. Parameters:
// prefixMatchInfoProducerName (approx-prefix-cache-producer), baseTokens
// (512), requestTimeout (2m).
//
// Formula, with P the prompt's estimated tokens (bytes/4), h the tokens the
// endpoint holds (its matched blocks × block size), b the endpoint's books
// and c = b + max(0, P − h) + baseTokens: score = min(c over candidates)/c.
// A ratio, not min-max: twice the expected wait halves the score, and a few
// tokens more never swing the scorer's whole weight.
//
// Why: request counts cannot tell a 30,000-token prefill from a 60-token
// chat turn, so on a few servers each running a handful of long agent
// requests the default profile's load signals are coarse. Measured in the
// fleet simulation (agent-sessions, 4 servers, 6 paired seeds not used to
// choose the weights), added to the default profile at weight 1 with
// token-load-scorer at weight 1 (queueThresholdTokens 100000, as in
// config/agents.yaml): throughput +6.8 % and TTFT p90 −47 % over the QPS
// ladder; on 8 servers +3.1 % and −20 %; short shared prompts within a few
// per cent (long prompts shared by groups past saturation: −3.6 % on one
// seed set, +0.1 % on another). Not in the default profile, which stays
// upstream's; at weight 3 it spreads prefix groups where the cache is tight
// (gsp −14 % at its knee). docs/deploy.md has the numbers; weigh it on your traffic with
// epp simulate --compare. The books see only this EPP's requests; others'
// show in the scraped queue that queue-scorer reads.
type PrefillBacklog struct {
	inflight.Counter // the response hooks, the sweep, the state dump and reload inheritance
	name             scheduler.TypedName
	params           PrefillBacklogParams
	source           prefix.Source
}

var (
	_ scheduler.ScoreWriter      = (*PrefillBacklog)(nil)
	_ scheduler.Resolver         = (*PrefillBacklog)(nil)
	_ scheduler.PreRequest       = (*PrefillBacklog)(nil) // the Counter's, weighing with weigh
	_ scheduler.ResponseHeaders  = (*PrefillBacklog)(nil)
	_ scheduler.ResponseChunk    = (*PrefillBacklog)(nil)
	_ scheduler.ResponseComplete = (*PrefillBacklog)(nil)
	_ scheduler.Runnable         = (*PrefillBacklog)(nil)
	_ scheduler.StateDumper      = (*PrefillBacklog)(nil)
	_ scheduler.Inheritor        = (*PrefillBacklog)(nil)
)

// NewPrefillBacklog validates p and returns a prefill-backlog scorer reading
// matches from source (nil: Resolve finds it by name). h supplies the clock,
// logger and pool (any of them may be unset).
func NewPrefillBacklog(name string, p PrefillBacklogParams, source prefix.Source, h *scheduler.Handle) (*PrefillBacklog, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	s := &PrefillBacklog{name: scheduler.TypedName{Type: PrefillBacklogType, Name: name}, params: p, source: source}
	s.Counter = inflight.NewCounter(h, name, time.Duration(p.RequestTimeout), s.weigh)
	// Disaggregated: the prefill endpoint carries the prefill backlog.
	s.ChargePrefill(s.weigh, nil)
	return s, nil
}

// PrefillBacklogFactory builds a PrefillBacklog from config.
func PrefillBacklogFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := PrefillBacklogParams{PrefixMatchInfoProducerName: defaultPrefixSource, BaseTokens: defaultBaseTokens, RequestTimeout: Duration(defaultRequestTimeout)}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewPrefillBacklog(name, p, nil, h)
}

// defaultBaseTokens: 512 and 2,048 did alike on agent sessions in the fleet
// simulation; 8,192 kept less than half of the gain.
const defaultBaseTokens = 512

// PrefillBacklogRegistration describes the plugin type for the registry.
func PrefillBacklogRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    PrefillBacklogType,
		Factory: PrefillBacklogFactory,
		Params:  PrefillBacklogParams{},
		Summary: "Prefers the endpoint with the least prefill ahead of the request's first token: its uncached prompt tokens there plus the uncached tokens of what this EPP sent it that has not begun to answer, as a ratio to the best. For long prompts on a few servers.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *PrefillBacklog) TypedName() scheduler.TypedName { return s.name }

// Resolve implements scheduler.Resolver: it finds the match source.
func (s *PrefillBacklog) Resolve(h *scheduler.Handle) error {
	if h == nil {
		return errors.New("prefixMatchInfoProducerName: no plugin handle to resolve it with")
	}
	name := s.params.PrefixMatchInfoProducerName
	src, err := prefix.Lookup(h, name)
	if err != nil {
		if _, ok := h.Plugin(name); !ok && name == defaultPrefixSource {
			// Unlike prefix-cache-scorer, this scorer does not bring its
			// producer along; say how to add one.
			return fmt.Errorf("%w (list a prefix-cache-scorer, which adds one, or `- type: %s`)", err, prefix.ProducerType)
		}
		return err
	}
	s.source = src
	return nil
}

// Score implements scheduler.Scorer.
func (s *PrefillBacklog) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *PrefillBacklog) ScoreInto(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	if len(eps) == 0 {
		return
	}
	s.Tracker().Tokens(eps, out)
	m, prompt := s.match(state, req)
	best := math.Inf(1)
	for i, e := range eps {
		out[i] += float64(m.Uncached(prompt, e) + s.params.BaseTokens)
		best = min(best, out[i])
	}
	for i, c := range out {
		out[i] = unitClamp(best / c)
	}
}

// match returns the request's prefix match (nil when there is none) and its
// estimated prompt tokens.
func (s *PrefillBacklog) match(state *scheduler.State, req *scheduler.Request) (*prefix.Match, int) {
	prompt := 0
	if req != nil && req.Body != nil {
		prompt = req.Body.EstimatedPromptTokens()
	}
	return prefix.MatchOf(s.source, state), prompt
}

// weigh is the Counter's estimate: the request's uncached tokens on the
// endpoint it is sent to.
func (s *PrefillBacklog) weigh(state *scheduler.State, req *scheduler.Request, target *endpoint.Endpoint) int {
	m, prompt := s.match(state, req)
	return m.Uncached(prompt, target)
}

// ResponseChunk releases the request at its first non-empty body chunk:
// its prefill is done. Later chunks cost one comparison.
func (s *PrefillBacklog) ResponseChunk(_ context.Context, state *scheduler.State, _ *scheduler.Request, resp *scheduler.Response, chunk []byte) {
	if firstChunk(resp, chunk) {
		s.Tracker().Finish(state)
	}
}

// firstChunk reports whether chunk is the response's first non-empty body
// chunk: the first token when streaming, the whole answer otherwise.
func firstChunk(resp *scheduler.Response, chunk []byte) bool {
	return len(chunk) > 0 && resp.BodyBytes == len(chunk)
}
