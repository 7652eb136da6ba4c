package precise

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/logevery"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ProducerType is the type name of Producer.
const ProducerType = "precise-prefix-cache-producer"

// Producer is llm-d's precise-prefix-cache-producer: per request it
// hashes the token IDs a token-producer got from the model server's
// tokenizer into blocks of the engine's block size, and gives every
// candidate the number of leading blocks its KV cache holds according to
// the index (a *prefix.Match, read by prefix-cache-scorer with
// prefixMatchInfoProducerName naming this plugin).
//
// The index is fed by the model servers' KV events (vLLM
// --kv-events-config): by default the EPP binds kvEventsConfig.zmqEndpoint
// and every server publishes to it under the topic
// kv@<server address>@<model> (the address as host:port or, when one
// endpoint has that IP, the IP alone); with discoverPods the EPP instead
// connects to every endpoint of the pool at podDiscoveryConfig.socketPort,
// plus its data-parallel rank (its port's place among the pool's endpoints
// on its IP), where vLLM's ranks publish.
// Lost events (a gap in a stream's sequence numbers), a cache reset, or an
// endpoint leaving the pool make the index forget that server's blocks: it
// underestimates until new events refill it, rather than believe blocks
// that may be gone. Only device-memory (GPU) blocks are tracked; CPU
// offload tiers are counted and skipped, and so are a hybrid model's cache
// groups other than full attention (sliding window, mamba). A LoRA
// adapter's blocks are matched when the request's model is an adapter name
// the events carried (vLLM's lora_name); events with only a lora_id never
// match. A request's cache_salt matches only blocks stored under the same
// salt (vLLM's extra_keys); blocks from a multimodal item on never match a
// request, whose images the EPP cannot hash as the engine does.
//
// With speculativeIndexing, a request's blocks count as held by its target
// (and its prefill target) for speculativeTTL after it is sent, bridging
// the time until the server's own events arrive; with replica sync the
// other EPP replicas count them too.
//
// Metrics: openepp_precise_prefix_events_total{plugin,outcome} (stored,
// removed, cleared, orphan, other_tier, malformed, unknown, gap,
// disconnected, undecodable, unknown_source), openepp_precise_prefix_index_blocks
// {plugin}, openepp_precise_prefix_subscriptions{plugin} and
// openepp_precise_prefix_match_ratio{plugin} (best match / prompt blocks).
type Producer struct {
	name      scheduler.TypedName
	params    Params
	index     *Index
	tokens    TokenSource
	log       logr.Logger
	clock     scheduler.Clock
	endpoints func() []*endpoint.Endpoint
	metrics   *producerMetrics
	warned    logevery.Throttle
	// openSubscriptions counts the event subscriptions open now.
	openSubscriptions atomic.Int64
	// eventsAddr is the address bound for events, once bound.
	eventsAddr atomic.Pointer[string]
	// publisher hears speculative entries for replica sync (share.go).
	publisher atomic.Pointer[prefix.Publisher]
}

var (
	_ scheduler.Producer   = (*Producer)(nil)
	_ scheduler.PreRequest = (*Producer)(nil)
	_ scheduler.Runnable   = (*Producer)(nil)
	_ scheduler.Resolver   = (*Producer)(nil)
	_ scheduler.Inheritor  = (*Producer)(nil)
	_ prefix.Source        = (*Producer)(nil)
	_ prefix.Occupancy     = (*Producer)(nil)
)

// ProducerRegistration describes the plugin type for the registry.
func ProducerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ProducerType,
		Factory: ProducerFactory,
		Params:  Params{},
		Summary: "Exact prefix-cache index from the model servers' KV events (vLLM over ZeroMQ), matched on token-producer's token IDs; feeds prefix-cache-scorer.",
	}
}

// ProducerFactory builds a Producer from its parameters.
func ProducerFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewProducer(name, p, h)
}

// NewProducer returns a producer with an empty index; h may be nil.
func NewProducer(name string, p Params, h *scheduler.Handle) (*Producer, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if h == nil {
		h = &scheduler.Handle{Log: logr.Discard()}
	}
	mem := p.IndexerConfig.KVBlockIndexConfig.InMemoryConfig
	pr := &Producer{
		name: scheduler.TypedName{Type: ProducerType, Name: name}, params: p,
		index: NewIndex(IndexOptions{MaxKeys: mem.Size, MaxHolders: mem.PodCacheSize, HashSeed: p.TokenProcessorConfig.HashSeed}),
		log:   h.Log.WithValues("plugin", name), clock: h.Clock, endpoints: h.Endpoints,
	}
	if pr.clock == nil {
		pr.clock = scheduler.RealClock{}
	}
	m, err := newProducerMetrics(h.Registerer, name, pr.index)
	if err != nil {
		return nil, err
	}
	pr.metrics = m
	return pr, nil
}

// TypedName implements scheduler.Plugin.
func (p *Producer) TypedName() scheduler.TypedName { return p.name }

// FollowsEndpoints implements scheduler.EndpointExtractor: with
// discoverPods it follows the pool itself.
func (p *Producer) FollowsEndpoints() {}

// Index returns the producer's index (the fleet simulation feeds it).
func (p *Producer) Index() *Index { return p.index }

// Resolve implements scheduler.Resolver: find the token source.
func (p *Producer) Resolve(h *scheduler.Handle) error {
	pl, ok := h.Plugin(p.params.TokenProducerName)
	if !ok {
		return fmt.Errorf("tokenProducerName: no plugin named %q; precise matching needs the model's token IDs: add a token-producer with backend vllm", p.params.TokenProducerName)
	}
	ts, ok := pl.(TokenSource)
	if !ok {
		return fmt.Errorf("tokenProducerName: plugin %q (type %q) produces no token IDs", p.params.TokenProducerName, pl.TypedName().Type)
	}
	if !ts.Exact() {
		return fmt.Errorf("tokenProducerName: %q estimates tokens (backend estimate); precise matching needs the model's token IDs: set its backend to vllm", p.params.TokenProducerName)
	}
	p.tokens = ts
	return nil
}

// SetTokenSource replaces the token source (the fleet simulation
// tokenizes in process).
func (p *Producer) SetTokenSource(ts TokenSource) { p.tokens = ts }

// Inherit implements scheduler.Inheritor: a reloaded config keeps what the
// previous instance learned, if its hashing is the same.
func (p *Producer) Inherit(prev scheduler.Plugin) {
	if old, ok := prev.(*Producer); ok && old.params.TokenProcessorConfig.HashSeed == p.params.TokenProcessorConfig.HashSeed {
		p.index = old.index
		p.metrics.watch(p.index)
	}
}

// record is what Produce leaves in State; records of several instances
// chain through next under one key.
type record struct {
	owner *Producer
	next  *record
	match prefix.Match
	keys  []uint64
}

var recordKey = scheduler.NewKey[*record]("precise-prefix-cache")

func (p *Producer) find(state *scheduler.State) *record {
	r, _ := recordKey.Get(state)
	for ; r != nil; r = r.next {
		if r.owner == p {
			return r
		}
	}
	return nil
}

// Produce implements scheduler.Producer.
func (p *Producer) Produce(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) {
	r := p.find(state)
	if r == nil {
		head, _ := recordKey.Get(state)
		r = &record{owner: p, next: head}
		recordKey.Set(state, r)
	}
	bs := p.index.BlockSize(eps, p.params.TokenProcessorConfig.BlockSize)
	r.match = prefix.Match{BlockSizeTokens: bs}
	r.keys = r.keys[:0]
	if p.tokens == nil || req == nil {
		return
	}
	tokens, ok := p.tokens.Tokens(ctx, state, req, eps)
	if !ok {
		return
	}
	lora, salt := "", ""
	if req.Model != "" && p.index.IsLora(req.Model) {
		lora = req.Model
	}
	if req.Body != nil {
		salt = req.Body.CacheSalt
	}
	r.keys = AppendKeys(r.keys, p.index.Root(lora, salt), tokens, bs, p.params.MaxPrefixBlocksToMatch)
	r.match.TotalBlocks = len(r.keys)
	p.index.Match(&r.match, r.keys, eps, p.clock.Now().UnixNano())
	if p.metrics != nil && len(r.keys) > 0 {
		best := 0
		for _, e := range eps {
			best = max(best, r.match.Blocks(e))
		}
		p.metrics.ratio.Observe(float64(best) / float64(len(r.keys)))
	}
}

// Match implements prefix.Source.
func (p *Producer) Match(state *scheduler.State) (*prefix.Match, bool) {
	if r := p.find(state); r != nil {
		return &r.match, true
	}
	return nil, false
}

// Occupancy implements prefix.Occupancy: the blocks each server's events
// say it holds.
func (p *Producer) Occupancy(eps []*endpoint.Endpoint, out []float64) {
	for i, e := range eps {
		out[i] = float64(p.index.Blocks(e.HostPort))
	}
}

// PreRequest implements scheduler.PreRequest: with speculative indexing,
// the target (and the prefill target) hold the request's blocks for now.
func (p *Producer) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	if !p.params.SpeculativeIndexing || result == nil {
		return
	}
	r := p.find(state)
	if r == nil || len(r.keys) == 0 {
		return
	}
	until := p.clock.Now().Add(time.Duration(p.params.SpeculativeTTL)).UnixNano()
	primary, prefill := result.Servers()
	for _, e := range [...]*endpoint.Endpoint{primary, prefill} {
		if e != nil {
			p.speculate(e.HostPort, r.keys, r.match.BlockSizeTokens, until)
		}
	}
}

// EventsAddr is the address the producer receives events on once it has
// bound kvEventsConfig.zmqEndpoint (its port resolved), else "".
func (p *Producer) EventsAddr() string {
	if a := p.eventsAddr.Load(); a != nil {
		return *a
	}
	return ""
}

// Ingest applies one batch of events from the server at hostPort.
func (p *Producer) Ingest(hostPort string, b *kvevents.Batch) {
	st := p.index.Apply(hostPort, b)
	p.metrics.count(st)
}

// Lost makes the index forget hostPort's blocks: its events were lost.
func (p *Producer) Lost(hostPort string) {
	p.index.Clear(hostPort)
	p.metrics.add("gap", 1)
}

// forgetGone drops servers that left the pool. An empty pool forgets
// nothing: more likely a gap in discovery than every server gone.
func (p *Producer) forgetGone() {
	if p.endpoints == nil {
		return
	}
	pool := p.endpoints()
	if len(pool) == 0 {
		return
	}
	in := make(map[string]bool, len(pool))
	for _, e := range pool {
		in[e.HostPort] = true
	}
	p.index.mu.RLock()
	var gone []string
	for hp := range p.index.servers {
		if !in[hp] {
			gone = append(gone, hp)
		}
	}
	p.index.mu.RUnlock()
	for _, hp := range gone {
		p.index.Forget(hp)
	}
}

// Start implements scheduler.Runnable: receive events, expire speculative
// entries and forget departed servers until ctx ends.
func (p *Producer) Start(ctx context.Context) error {
	go p.housekeep(ctx)
	return p.subscribe(ctx)
}

func (p *Producer) housekeep(ctx context.Context) {
	t := time.NewTicker(max(time.Duration(p.params.SpeculativeTTL), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.index.Expire(p.clock.Now().UnixNano())
			p.forgetGone()
		}
	}
}

// producerMetrics are the producer's Prometheus series.
type producerMetrics struct {
	events *prometheus.CounterVec
	ratio  prometheus.Observer
	subs   prometheus.Gauge
	plugin string
	blocks *indexGauge
}

func (m *producerMetrics) add(outcome string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.events.WithLabelValues(m.plugin, outcome).Add(float64(n))
}

func (m *producerMetrics) count(st ApplyStats) {
	m.add("stored", st.Stored)
	m.add("removed", st.Removed)
	m.add("cleared", st.Cleared)
	m.add("orphan", st.Orphans)
	m.add("other_tier", st.OtherTier)
	m.add("malformed", st.Malformed)
	m.add("unknown", st.Unknown)
	m.add("other_group", st.OtherGroup)
}

func (m *producerMetrics) setSubscriptions(n float64) {
	if m != nil {
		m.subs.Set(n)
	}
}

// subscriptions records how many event subscriptions are open.
func (p *Producer) subscriptions(n int64) {
	p.openSubscriptions.Store(n)
	p.metrics.setSubscriptions(float64(n))
}

func (m *producerMetrics) watch(ix *Index) {
	if m != nil && m.blocks != nil {
		m.blocks.ix.Store(ix)
	}
}
