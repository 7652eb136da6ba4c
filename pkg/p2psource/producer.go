package p2psource

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Type is the plugin type name.
const Type = "p2p-source-producer"

// Header names the peer to pull the prompt's cached prefix from, as
// host:port; llm-d's routing sidecar reads it.
const Header = "x-kv-cache-source-host-port"

// Outcomes of one request, as counted in openepp_p2p_source_decisions_total.
const (
	outcomeHeader    = "header"          // a source was named
	outcomeNoMatch   = "no_match"        // no candidate holds a block of the prompt
	outcomeHolds     = "computing_holds" // the computing server is the source drawn
	outcomeBelow     = "below_delta"     // the source's lead is under minCachedTokenDelta
	outcomeNoCompute = "no_target"       // scheduling picked no server
)

// Producer is llm-d's p2p-source-producer.
//
// Once the servers are chosen (PreRequest), it reads the request's prefix
// match from the configured producer and draws a source among the
// candidates holding within one block of the longest cached prefix,
// weighted by 1/(1 + waiting queue), so pulls of a prefix several servers
// hold spread over them and avoid the busy ones. The draw is a hash of the
// request ID (the state's random source when the request has none), so a
// retried request draws the same source. It names the source in Header when
// it is not the server computing the prompt (the prefillProfileName
// profile's target when that profile ran, else the primary target) and
// holds at least minCachedTokenDelta more prompt tokens than it. A value
// the client sent is always stripped, so only the EPP names sources.
type Producer struct {
	name      scheduler.TypedName
	params    Params
	source    prefix.Source
	decisions *prometheus.CounterVec
}

var (
	_ scheduler.Producer   = (*Producer)(nil)
	_ scheduler.PreRequest = (*Producer)(nil)
	_ scheduler.Resolver   = (*Producer)(nil)
)

// Registration describes the plugin type for the registry.
func Registration() scheduler.Registration {
	return scheduler.Registration{
		Type:    Type,
		Factory: Factory,
		Params:  Params{},
		Summary: "Names, in x-kv-cache-source-host-port, a peer holding more of the prompt's cached prefix than the server computing it, so that server pulls the KV instead of recomputing it (llm-d's P2P KV-cache sharing).",
	}
}

// Factory builds a Producer from its parameters.
func Factory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return New(name, p, nil, h.MetricsRegisterer())
}

// New returns a producer reading matches from source; with a nil source,
// Resolve finds it by name. reg may be nil (no metrics).
func New(name string, p Params, source prefix.Source, reg prometheus.Registerer) (*Producer, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	decisions, err := promreg.Outcomes(reg, "openepp_p2p_source_decisions_total",
		"Requests p2p-source-producer decided on, by outcome: header (a source named), no_match (no candidate holds a block), computing_holds (the server computing the prompt is the source drawn), below_delta (the source's lead is under minCachedTokenDelta), no_target.")
	if err != nil {
		return nil, err
	}
	return &Producer{name: scheduler.TypedName{Type: Type, Name: name}, params: p, source: source, decisions: decisions}, nil
}

// TypedName implements scheduler.Plugin.
func (p *Producer) TypedName() scheduler.TypedName { return p.name }

// Resolve implements scheduler.Resolver: find the match source by name.
func (p *Producer) Resolve(h *scheduler.Handle) error {
	if p.source != nil {
		return nil
	}
	if p.params.PrefixMatchInfoProducerName == "" {
		return errors.New("prefixMatchInfoProducerName: not set, and the config does not hold exactly one prefix-cache " +
			"producer to read by default; name the approx-prefix-cache-producer or precise-prefix-cache-producer to read")
	}
	if h == nil {
		return errors.New("prefixMatchInfoProducerName: no plugin handle to resolve it with")
	}
	src, err := prefix.Lookup(h, p.params.PrefixMatchInfoProducerName)
	if err != nil {
		return err
	}
	p.source = src
	return nil
}

// pick is what one producer keeps of one request between Produce and
// PreRequest; several producers in a config each keep their own, chained.
type pick struct {
	owner *Producer
	eps   []*endpoint.Endpoint // the candidates
	next  *pick
}

var pickKey = scheduler.NewKey[*pick]("p2p-source")

func (p *Producer) find(state *scheduler.State) *pick {
	if state == nil {
		return nil
	}
	r, _ := pickKey.Get(state)
	for ; r != nil; r = r.next {
		if r.owner == p {
			return r
		}
	}
	return nil
}

// Produce implements scheduler.Producer: it keeps the candidates. The
// draw waits for PreRequest, as producers run in config order and the
// prefix producer read may come later in the list (the loader appends the
// one it creates).
func (p *Producer) Produce(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) {
	if p.source == nil || state == nil {
		return
	}
	if r := p.find(state); r != nil {
		r.eps = eps
		return
	}
	head, _ := pickKey.Get(state)
	pickKey.Set(state, &pick{owner: p, eps: eps, next: head})
}

// draw picks the source among eps; nil when no candidate holds a block.
func (p *Producer) draw(m *prefix.Match, eps []*endpoint.Endpoint, req *scheduler.Request, state *scheduler.State) *endpoint.Endpoint {
	best := 0
	for _, e := range eps {
		best = max(best, m.Blocks(e))
	}
	if best == 0 {
		return nil
	}
	total := 0.0
	for _, e := range eps {
		if eligible(m, e, best) {
			total += weight(e)
		}
	}
	u := unit(req, state) * total
	var src *endpoint.Endpoint
	for _, e := range eps {
		if !eligible(m, e, best) {
			continue
		}
		src = e
		if u -= weight(e); u < 0 {
			break
		}
	}
	return src
}

// eligible: e holds within one block of the longest cached prefix.
func eligible(m *prefix.Match, e *endpoint.Endpoint, best int) bool {
	b := m.Blocks(e)
	return b > 0 && b >= best-1
}

// weight favours sources with short queues: a pull takes its server's
// memory bandwidth, if not its compute.
func weight(e *endpoint.Endpoint) float64 {
	return 1 / (1 + float64(max(e.Metrics().WaitingQueueSize, 0)))
}

// unit is a uniform number in [0, 1) derived from the request ID.
func unit(req *scheduler.Request, state *scheduler.State) float64 {
	if req == nil || req.ID == "" {
		return state.Rand.Float64()
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(req.ID))
	x := h.Sum64()
	// FNV's low bits mix poorly for short keys; fold them before use.
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return float64(x>>11) / (1 << 53)
}

// PreRequest implements scheduler.PreRequest; see the type's comment.
func (p *Producer) PreRequest(_ context.Context, state *scheduler.State, req *scheduler.Request, result *scheduler.Result) {
	if result == nil {
		return
	}
	result.RemoveHeader(Header)
	r := p.find(state)
	if r == nil {
		return
	}
	var src *endpoint.Endpoint
	m, ok := p.source.Match(state)
	if ok && m != nil && m.Any() {
		src = p.draw(m, r.eps, req, state)
	}
	computing := p.computing(result)
	switch {
	case src == nil:
		p.count(outcomeNoMatch)
	case computing == nil:
		p.count(outcomeNoCompute)
	case computing.HostPort == src.HostPort:
		p.count(outcomeHolds)
	case (m.Blocks(src)-m.Blocks(computing))*m.BlockSizeTokens < p.params.MinCachedTokenDelta:
		p.count(outcomeBelow)
	default:
		result.SetHeader(Header, src.HostPort)
		p.count(outcomeHeader)
	}
}

// computing is the server that will compute the prompt: the prefill
// profile's target when that profile ran apart from the primary one, else
// the primary target.
func (p *Producer) computing(result *scheduler.Result) *endpoint.Endpoint {
	if pr := result.Profiles[p.params.PrefillProfileName]; p.params.PrefillProfileName != result.Primary && pr != nil && len(pr.Targets) > 0 {
		return pr.Targets[0]
	}
	if t := result.Targets(); len(t) > 0 {
		return t[0]
	}
	return nil
}

func (p *Producer) count(outcome string) {
	if p.decisions != nil {
		p.decisions.WithLabelValues(p.name.Name, outcome).Inc()
	}
}
