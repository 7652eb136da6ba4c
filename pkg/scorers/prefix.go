package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// PrefixCacheType is the type name of PrefixCache.
const PrefixCacheType = "prefix-cache-scorer"

// Defaults of the prefix-cache-scorer's own parameters.
const (
	defaultPrefixSource           = prefix.ProducerType
	defaultMatchLengthScaleTokens = 8192
	defaultColdRequestSpread      = 1.0
	defaultLoadBoundFactor        = 4.0
	defaultLoadBoundSlack         = 32
	maxLoadBoundFactor            = 1 << 20
	maxLoadBoundSlack             = 1 << 30
)

// maxSourceChain bounds how many scorers may delegate to one another before
// reaching a producer; longer chains are treated as cycles.
const maxSourceChain = 16

// PrefixCacheParams configures PrefixCache.
//
// Besides its own three parameters it accepts the approx-prefix-cache-
// producer's (autoTune through blockSize, with the same names, defaults and
// checks) because the config loader creates that producer from the scorer's
// parameters when a config names only the scorer. The scorer validates them
// but does not use them: they take effect only through that auto-created
// producer.
type PrefixCacheParams struct {
	PrefixMatchInfoProducerName string  `json:"prefixMatchInfoProducerName" doc:"instance name of the plugin that produces prefix matches (a prefix.Source)" default:"approx-prefix-cache-producer"`
	MatchLengthWeight           float64 `json:"matchLengthWeight" doc:"weight w in [0, 1] of the absolute matched length against the matched ratio" default:"0.0"`
	MatchLengthScaleTokens      int     `json:"matchLengthScaleTokens" doc:"matched tokens at which the length term saturates" default:"8192"`
	ColdRequestSpread           float64 `json:"coldRequestSpread" doc:"score range in [0, 1] that spreads prompts no endpoint holds over the endpoints holding the fewest blocks (0: all score 0, as upstream)" default:"1.0"`
	LoadBoundFactor             float64 `json:"loadBoundFactor" doc:"affinity is discounted on an endpoint whose waiting queue exceeds this factor × (shortest candidate queue + loadBoundSlack); 0 turns the bound off, as upstream" default:"4.0"`
	LoadBoundSlack              int     `json:"loadBoundSlack" doc:"waiting requests added to the shortest queue before the load bound applies" default:"32"`

	AutoTune               bool `json:"autoTune" doc:"for the auto-created approx-prefix-cache-producer: take block size and capacity from the servers' reported KV cache" default:"true"`
	BlockSizeTokens        int  `json:"blockSizeTokens" doc:"for the auto-created approx-prefix-cache-producer: tokens per hashed block (×4 bytes)" default:"16"`
	MaxPrefixBlocksToMatch int  `json:"maxPrefixBlocksToMatch" doc:"for the auto-created approx-prefix-cache-producer: leading blocks hashed and matched (GIE v1.5.0: 256, the default under --upstream-compatible-scoring)" default:"2048"`
	MaxPrefixTokensToMatch int  `json:"maxPrefixTokensToMatch" doc:"for the auto-created approx-prefix-cache-producer: token cap on the blocks; 0 means none" default:"0"`
	LRUCapacityPerServer   int  `json:"lruCapacityPerServer" doc:"for the auto-created approx-prefix-cache-producer: blocks remembered per endpoint" default:"31250"`
	BlockSize              int  `json:"blockSize,omitempty" doc:"for the auto-created approx-prefix-cache-producer: deprecated block size in characters" default:""`
	HashTools              bool `json:"hashTools" doc:"for the auto-created approx-prefix-cache-producer: count the requests' tool definitions (OpenEPP extension, off)" default:"false"`
}

func (p *PrefixCacheParams) validate() error {
	var errs []error
	if p.PrefixMatchInfoProducerName == "" {
		errs = append(errs, errors.New("prefixMatchInfoProducerName: must not be empty"))
	}
	if !(p.MatchLengthWeight >= 0 && p.MatchLengthWeight <= 1) {
		errs = append(errs, fmt.Errorf("matchLengthWeight: must be in [0, 1], got %v", p.MatchLengthWeight))
	}
	if p.MatchLengthScaleTokens < 1 {
		errs = append(errs, fmt.Errorf("matchLengthScaleTokens: must be >= 1, got %d", p.MatchLengthScaleTokens))
	}
	if !(p.ColdRequestSpread >= 0 && p.ColdRequestSpread <= 1) {
		errs = append(errs, fmt.Errorf("coldRequestSpread: must be in [0, 1], got %v", p.ColdRequestSpread))
	}
	if !(p.LoadBoundFactor == 0 || p.LoadBoundFactor >= 1 && p.LoadBoundFactor <= maxLoadBoundFactor) {
		errs = append(errs, fmt.Errorf("loadBoundFactor: must be 0 (off) or in [1, %g], got %v", float64(maxLoadBoundFactor), p.LoadBoundFactor))
	}
	if p.LoadBoundSlack < 1 || p.LoadBoundSlack > maxLoadBoundSlack {
		errs = append(errs, fmt.Errorf("loadBoundSlack: must be in [1, %d], got %d", maxLoadBoundSlack, p.LoadBoundSlack))
	}
	return errors.Join(errs...)
}

// PrefixCache prefers endpoints that already hold a long prefix of the
// request's prompt in their KV cache, so the prompt's prefill is mostly
// skipped there.
//
// Inputs: the prefix.Match that the plugin named prefixMatchInfoProducerName
// produced for the request (approx-prefix-cache-producer by default; any
// prefix.Source works, including another prefix-cache-scorer). With b the
// endpoint's leading matched blocks, B the prompt's blocks, t = b × block size
// in tokens, S = matchLengthScaleTokens and w = matchLengthWeight:
//
//	score = w·min(1, t/S)² + (1−w)·b/B
//
// With the default w = 0 this is upstream's matched-block ratio. Every
// endpoint scores 0 when there is no match information (no producer output,
// or a prompt shorter than one block).
//
// Load bound (OpenEPP): a cached prefix saves its prefill, but waiting
// behind a much longer queue than elsewhere costs more than recomputing
// it, and affinity that never yields sends an ever larger share of a hot
// prefix to one server (prefix-only routing collapses this way, and so does
// upstream's default config once every server's KV cache is busy and the
// load scorers' range no longer outweighs affinity's). With q the
// endpoint's waiting queue, minQ the shortest among the candidates,
// f = loadBoundFactor (default 4) and k = loadBoundSlack (default 32):
//
//	L = f·(minQ + k);  score ×= L/q when q > L
//
// so affinity holds while an endpoint's queue is within f times the
// shortest (plus slack) and fades beyond. f = 0 turns the bound off. In the
// fleet simulation this kept the long-context agentic workload (10 prefixes
// on 8 servers) from collapsing onto the servers holding two of them:
// throughput +18–43 % and no failed requests past saturation, at no cost to
// the canonical shared-prefix workload.
//
// A cold request, one whose prompt no endpoint holds any block of, is where
// a new prefix gets placed, and upstream scores it 0 everywhere, leaving the
// choice to the load scorers' stale metrics. OpenEPP instead spreads cold
// requests over the endpoints believed to hold the fewest blocks (the
// source's prefix.Occupancy, i.e. the approximate index's per-endpoint LRU
// length), as SGLang's cache-aware router sends them to the smallest tree:
// with o the endpoint's blocks, minO and maxO over the candidates and
// c = coldRequestSpread (default 1),
//
//	cold score = c·(maxO − o)/(maxO − minO), or 0 for all when maxO = minO.
//
// This keeps prefix ownership, and so the load of shared-prefix traffic,
// even across endpoints (load-based placement leaves some servers with a
// quarter more prefix groups than others); once every endpoint's index is
// full it has no effect. In the fleet simulation (pkg/fleet) it alone
// raised the canonical shared-prefix workload's throughput past saturation
// by 9–20 % and cut its TTFT p90 by 5–12 %, with the default config. c = 0
// restores upstream's zeros. A request for a LoRA adapter (see
// adapterRequest) is not spread: spreading an adapter's requests by
// occupancy made every server load it, and on the many-lora workload the
// default config's TTFT p90 at 10 QPS was twice llm-d's baseline (1.0 s vs
// 0.5 s); left to the load scorers it is 0.75 s.
//
// PrefixCache is itself a prefix.Source (it hands on its producer's match)
// and prefix.Occupancy, so scorers such as no-hit-lru-scorer can refer to
// it by name.
type PrefixCache struct {
	name   scheduler.TypedName
	params PrefixCacheParams
	source prefix.Source
}

var (
	_ scheduler.ScoreWriter = (*PrefixCache)(nil)
	_ scheduler.Resolver    = (*PrefixCache)(nil)
	_ prefix.Source         = (*PrefixCache)(nil)
	_ prefix.Occupancy      = (*PrefixCache)(nil)
	_ scheduler.StateDumper = (*PrefixCache)(nil)
)

// NewPrefixCache returns a prefix-cache scorer reading matches from source;
// with a nil source, Resolve finds it by name.
func NewPrefixCache(name string, p PrefixCacheParams, source prefix.Source) *PrefixCache {
	return &PrefixCache{name: scheduler.TypedName{Type: PrefixCacheType, Name: name}, params: p, source: source}
}

// DefaultPrefixCacheParams returns the defaults, the producer's included.
func DefaultPrefixCacheParams() PrefixCacheParams {
	p := PrefixCacheParams{
		PrefixMatchInfoProducerName: defaultPrefixSource, MatchLengthScaleTokens: defaultMatchLengthScaleTokens,
		ColdRequestSpread: defaultColdRequestSpread, LoadBoundFactor: defaultLoadBoundFactor, LoadBoundSlack: defaultLoadBoundSlack,
	}
	p.setProducer(prefix.DefaultParams())
	return p
}

// setProducer copies the producer's parameters into p.
func (p *PrefixCacheParams) setProducer(pp prefix.Params) {
	p.AutoTune, p.BlockSizeTokens, p.BlockSize = pp.AutoTune, pp.BlockSizeTokens, pp.BlockSize
	p.MaxPrefixBlocksToMatch, p.MaxPrefixTokensToMatch = pp.MaxPrefixBlocksToMatch, pp.MaxPrefixTokensToMatch
	p.LRUCapacityPerServer, p.HashTools = pp.LRUCapacityPerServer, pp.HashTools
}

// PrefixCacheFactory builds a PrefixCache from config. The producer's
// parameters are checked (and the deprecated blockSize converted) by
// prefix.DecodeParams, so a bad value is reported here as well as by the
// auto-created producer.
func PrefixCacheFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultPrefixCacheParams()
	if h != nil && h.UpstreamScoring {
		p.ColdRequestSpread, p.LoadBoundFactor = 0, 0
	}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	producer, err := prefix.DecodeParams(raw, h)
	if err != nil {
		return nil, err
	}
	p.setProducer(producer)
	if err := p.validate(); err != nil {
		return nil, err
	}
	return NewPrefixCache(name, p, nil), nil
}

// PrefixCacheRegistration describes the plugin type for the registry.
func PrefixCacheRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    PrefixCacheType,
		Factory: PrefixCacheFactory,
		Params:  PrefixCacheParams{},
		Summary: "Prefers endpoints holding a long prefix of the prompt: matched/total blocks (optionally blended with absolute matched length), faded on endpoints whose queue is far above the shortest; prompts no endpoint holds go where the fewest blocks are cached.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *PrefixCache) TypedName() scheduler.TypedName { return s.name }

// Resolve implements scheduler.Resolver: it finds the match source by name
// and refuses a chain of scorers that leads back to itself.
func (s *PrefixCache) Resolve(h *scheduler.Handle) error {
	if h == nil {
		return errors.New("prefixMatchInfoProducerName: no plugin handle to resolve it with")
	}
	name := s.params.PrefixMatchInfoProducerName
	src, err := prefix.Lookup(h, name)
	if err != nil {
		return err
	}
	next := src
	for range maxSourceChain {
		pc, ok := next.(*PrefixCache)
		if !ok {
			s.source = src
			return nil
		}
		if pc == s {
			break
		}
		if next, err = prefix.Lookup(h, pc.params.PrefixMatchInfoProducerName); err != nil {
			return fmt.Errorf("prefixMatchInfoProducerName: via %q: %w", pc.name.Name, err)
		}
	}
	return fmt.Errorf("prefixMatchInfoProducerName: %q leads back to %q; name a producer such as %q", name, s.name.Name, prefix.ProducerType)
}

// PrefixCacheState is what PrefixCache shows at /debug/plugins/state. The
// scorer keeps nothing between requests; the index it scores against is
// its source's, shown under the source's own name. JSON fields:
// prefixMatchInfoProducerName (the source's instance name, as configured)
// and sourceType (its plugin type; empty before Resolve).
type PrefixCacheState struct {
	PrefixMatchInfoProducerName string `json:"prefixMatchInfoProducerName"`
	SourceType                  string `json:"sourceType"`
}

// DumpState implements scheduler.StateDumper; it returns a
// PrefixCacheState, which says where the index's state is.
func (s *PrefixCache) DumpState() any {
	st := PrefixCacheState{PrefixMatchInfoProducerName: s.params.PrefixMatchInfoProducerName}
	if p, ok := s.source.(scheduler.Plugin); ok {
		st.SourceType = p.TypedName().Type
	}
	return st
}

// Match implements prefix.Source by handing on the source's match.
func (s *PrefixCache) Match(state *scheduler.State) (*prefix.Match, bool) {
	if s.source == nil {
		return nil, false
	}
	return s.source.Match(state)
}

// Score implements scheduler.Scorer.
func (s *PrefixCache) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter; out comes zeroed, so
// endpoints without a match are skipped.
func (s *PrefixCache) ScoreInto(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	m, ok := s.Match(state)
	if !ok || m == nil || m.TotalBlocks <= 0 {
		return
	}
	if !m.Any() {
		if !adapterRequest(req.Model, eps) {
			s.spreadCold(eps, out)
		}
		return
	}
	w := s.params.MatchLengthWeight
	scale := float64(s.params.MatchLengthScaleTokens)
	total := float64(m.TotalBlocks)
	limit := s.loadLimit(eps)
	for i, e := range eps {
		b := m.Blocks(e)
		if b == 0 {
			continue
		}
		v := (1 - w) * float64(b) / total
		if w > 0 {
			l := math.Min(1, float64(b)*float64(m.BlockSizeTokens)/scale)
			v += w * l * l
		}
		if q := float64(e.Metrics().WaitingQueueSize); q > limit {
			v *= limit / q
		}
		out[i] = unitClamp(v)
	}
}

// loadLimit is L of the load bound documented on PrefixCache; +Inf when the
// bound is off.
func (s *PrefixCache) loadLimit(eps []*endpoint.Endpoint) float64 {
	f := s.params.LoadBoundFactor
	if f == 0 || len(eps) == 0 {
		return math.Inf(1)
	}
	minQ := eps[0].Metrics().WaitingQueueSize
	for _, e := range eps[1:] {
		minQ = min(minQ, e.Metrics().WaitingQueueSize)
	}
	return f * float64(max(minQ, 0)+s.params.LoadBoundSlack)
}

// Occupancy implements prefix.Occupancy by asking the source; endpoints
// score 0 when the source cannot tell.
func (s *PrefixCache) Occupancy(eps []*endpoint.Endpoint, out []float64) {
	if o, ok := s.source.(prefix.Occupancy); ok {
		o.Occupancy(eps, out)
		return
	}
	fill(out[:len(eps)], 0)
}

// adapterRequest reports whether model is a LoRA adapter as the candidates'
// metrics tell: not the base model their residency gauges name, or an
// adapter with requests running or waiting somewhere. Its cold requests
// are not spread: where an adapter is loaded matters more than balancing
// prefix ownership, so they are left to the load and LoRA scorers.
func adapterRequest(model string, eps []*endpoint.Endpoint) bool {
	for _, e := range eps {
		m := e.Metrics()
		if m.BaseModel != "" {
			return m.BaseModel != model
		}
		if _, ok := m.ActiveModels[model]; ok {
			return true
		}
		if _, ok := m.WaitingModels[model]; ok {
			return true
		}
	}
	return false
}

// spreadCold fills out with the cold-request scores documented on
// PrefixCache.
func (s *PrefixCache) spreadCold(eps []*endpoint.Endpoint, out []float64) {
	c := s.params.ColdRequestSpread
	if c == 0 || len(eps) == 0 {
		return
	}
	s.Occupancy(eps, out)
	lo, hi := out[0], out[0]
	for _, v := range out[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	if !(hi > lo) {
		fill(out, 0)
		return
	}
	for i, v := range out {
		out[i] = unitClamp(c * (hi - v) / (hi - lo))
	}
}
