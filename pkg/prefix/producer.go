package prefix

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ProducerType is the type name of Producer.
const ProducerType = "approx-prefix-cache-producer"

// PrefillProfile is the profile whose target, when it ran, also gets the
// prompt's blocks recorded: in disaggregated serving the prefill endpoint
// computes (and caches) the prompt's KV blocks. Upstream hard-codes the
// same name.
const PrefillProfile = scheduler.DefaultPrefillProfile

// DefaultPurgeInterval is how often Start forgets endpoints that left the
// pool (upstream's period).
const DefaultPurgeInterval = 2 * time.Minute

// Producer is the approx-prefix-cache-producer: an approximate prefix-cache
// index fed by the EPP's own routing decisions.
//
// For each request, Produce cuts the raw prompt bytes (the JSON of the
// prompt field) into blocks of blockSizeTokens×4 bytes, at most
// maxPrefixBlocksToMatch blocks (and maxPrefixTokensToMatch tokens when set),
// chains their xxhash64 hashes from a seed of the target model and
// cache_salt (with hashTools, the tool definitions too, where the chat
// template renders them: AppendBlockHashesWith), and matches them against the index: every endpoint gets the
// number of leading blocks it is believed to hold. The result is a *Match in
// State, read through the Source interface (prefix-cache-scorer). PreRequest
// then records the blocks for the primary target and, when a prefill profile
// ran (Result.PrefillProfile, else one named "prefill"), for its target,
// which computed the prompt too; ResponseHeaders records them for a fallback
// target the proxy reports having used instead. Each endpoint keeps at most
// lruCapacityPerServer blocks, least recently routed first out.
//
// Auto-tuning (autoTune, default on): the block size is the CacheBlockSize
// that every candidate reporting one agrees on. Candidates reporting none, or
// less than 16 tokens (SGLang's default page is 1 token, which would make the
// index 16 times larger and slower), are ignored; any disagreement, or no
// usable report, falls back to blockSizeTokens. An endpoint's capacity is its
// reported KV cache size in tokens (CacheBlockSize×CacheNumBlocks) divided by
// the block size in use, capped at 2^20 blocks, or lruCapacityPerServer when
// it reports none.
//
// Start purges endpoints that left the pool every two minutes (Purge). Metrics, when
// the handle has a Registerer: inference_extension_prefix_indexer_size
// (gauge) and inference_extension_prefix_indexer_hit_ratio (histogram),
// labelled plugin=<instance name>.
type Producer struct {
	name       scheduler.TypedName
	params     Params
	index      *Index
	log        logr.Logger
	endpoints  func() []*endpoint.Endpoint
	hits       hitObservers
	purgeEvery time.Duration
	// publisher, when set, hears the insertions of this replica's own
	// decisions (replica sync).
	publisher atomic.Pointer[Publisher]
	// lastBlockSize is the block size Produce last used, for Export.
	lastBlockSize atomic.Int64
	// ignoreTools hashes prompts without their tool definitions, as GIE
	// v1.5.0 does: unless hashTools, and always under
	// --upstream-compatible-scoring; see AppendBlockHashesWith.
	ignoreTools bool
	// registerer is where the index-size gauge lives, re-registered when
	// Inherit swaps the index.
	registerer prometheus.Registerer
}

var (
	_ scheduler.Producer        = (*Producer)(nil)
	_ scheduler.PreRequest      = (*Producer)(nil)
	_ scheduler.ResponseHeaders = (*Producer)(nil)
	_ scheduler.Runnable        = (*Producer)(nil)
	_ Source                    = (*Producer)(nil)
	_ scheduler.Inheritor       = (*Producer)(nil)
)

// ProducerRegistration describes the plugin type for the registry.
func ProducerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ProducerType,
		Factory: ProducerFactory,
		Params:  Params{},
		Summary: "Approximate prefix-cache index of routed prompts (chained block hashes, per-endpoint LRU); feeds prefix-cache-scorer.",
	}
}

// record is what Produce leaves in State for Match and PreRequest. Records of
// several producer instances chain through next under one key.
type record struct {
	owner  *Producer
	next   *record
	match  Match
	hashes []uint64
	// fallbacks are the targets after the primary, kept by PreRequest so a
	// response served by one of them can be recorded (see ResponseHeaders).
	fallbacks []*endpoint.Endpoint
}

var recordKey = scheduler.NewKey[*record]("approx-prefix-cache")

// NewProducer returns a producer with its own empty index. h may be nil
// (no logging, metrics or purging).
func NewProducer(name string, p Params, h *scheduler.Handle) (*Producer, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	ix, err := NewIndex(IndexOptions{})
	if err != nil {
		return nil, err
	}
	if h == nil {
		h = &scheduler.Handle{Log: logr.Discard()}
	}
	pr := &Producer{
		name: scheduler.TypedName{Type: ProducerType, Name: name}, params: p, index: ix,
		log: h.Log.WithValues("plugin", name), endpoints: h.Endpoints, purgeEvery: DefaultPurgeInterval,
		ignoreTools: !p.HashTools || h.UpstreamScoring, registerer: h.Registerer,
	}
	if pr.hits, err = registerMetrics(h.Registerer, name, ix); err != nil {
		return nil, err
	}
	if p.BlockSizeTokens < tinyBlockSizeTokens {
		pr.log.Info("warning: blockSizeTokens below 4 multiplies the index's CPU cost and, with autoTune, its memory", "blockSizeTokens", p.BlockSizeTokens)
	}
	if p.BlockSize != 0 {
		pr.log.Info("warning: parameter blockSize is deprecated, use blockSizeTokens", "blockSizeTokens", p.BlockSizeTokens)
	}
	return pr, nil
}

// ProducerFactory builds a Producer from config.
func ProducerFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p, err := DecodeParams(raw, h)
	if err != nil {
		return nil, err
	}
	pr, err := NewProducer(name, p, h)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", ProducerType, name, err)
	}
	return pr, nil
}

// TypedName implements scheduler.Plugin.
func (p *Producer) TypedName() scheduler.TypedName { return p.name }

// Inherit implements scheduler.Inheritor: a reload that changed the
// producer's parameters keeps the index, so routing keeps its prefix
// affinity instead of starting cold. The index is parameter-free: entries
// hashed under an old block size or tools setting stop matching and age
// out of the LRUs, and a smaller lruCapacityPerServer applies at each
// endpoint's next insertion. The old instance records its last requests
// into the same index.
func (p *Producer) Inherit(prev scheduler.Plugin) {
	old, ok := prev.(*Producer)
	if !ok || old.index == p.index {
		return
	}
	p.index = old.index
	p.lastBlockSize.Store(old.lastBlockSize.Load())
	hits, err := registerMetrics(p.registerer, p.name.Name, p.index)
	if err != nil {
		p.log.Error(err, "index metrics after a reload")
		return
	}
	p.hits = hits
}

// Index returns the producer's index.
func (p *Producer) Index() *Index { return p.index }

// Produce implements scheduler.Producer: hash the prompt once and match it.
func (p *Producer) Produce(_ context.Context, state *scheduler.State, req *scheduler.Request, endpoints []*endpoint.Endpoint) {
	bs := p.blockSizeTokens(endpoints)
	if p.lastBlockSize.Load() != int64(bs) { // stored only on change: no write sharing per request
		p.lastBlockSize.Store(int64(bs))
	}
	r := p.recordIn(state)
	r.match = Match{BlockSizeTokens: bs}
	r.hashes = p.hash(req, bs)
	r.match.TotalBlocks = len(r.hashes)
	p.index.matchInto(&r.match, r.hashes)
	if p.hits.ratio == nil && !p.log.V(2).Enabled() {
		return
	}
	best := 0
	for _, n := range r.match.matched {
		best = max(best, n)
	}
	if p.hits.ratio != nil && r.match.TotalBlocks > 0 {
		p.hits.ratio.Observe(float64(best) / float64(r.match.TotalBlocks))
		p.hits.bytes.Observe(float64(best * bs * CharsPerToken))
	}
	if l := p.log.V(2); l.Enabled() && req != nil {
		l.Info("prefix match", "requestID", req.ID, "blocks", r.match.TotalBlocks, "blockSizeTokens", bs,
			"endpointsMatched", r.match.Len(), "bestBlocks", best)
	}
}

// hash returns the prompt's block hashes for block size bs (nil for none).
func (p *Producer) hash(req *scheduler.Request, bs int) []uint64 {
	if req == nil || req.Body == nil {
		return nil
	}
	var tools []byte // rendered into the prompt by the chat template
	if !p.ignoreTools {
		tools = req.Body.Tools
	}
	blockBytes := bs * CharsPerToken
	n := min((len(req.Body.Prompt)+len(tools))/blockBytes, p.params.maxBlocks(bs))
	if n == 0 {
		return nil
	}
	return AppendBlockHashesWith(make([]uint64, 0, n), Seed(req.Model, req.Body.CacheSalt), req.Body.Prompt,
		req.Body.ToolsAt, tools, blockBytes, n)
}

// blockSizeTokens applies the auto-tuning rule documented on Producer.
func (p *Producer) blockSizeTokens(eps []*endpoint.Endpoint) int {
	if !p.params.AutoTune {
		return p.params.BlockSizeTokens
	}
	agreed := 0
	for _, e := range eps {
		bs := e.Metrics().CacheBlockSize
		if bs < minAutoTunedBlockSizeTokens {
			continue
		}
		if agreed != 0 && bs != agreed {
			return p.params.BlockSizeTokens
		}
		agreed = bs
	}
	if agreed == 0 || agreed > maxBlockSizeTokens {
		return p.params.BlockSizeTokens
	}
	return agreed
}

// capacity is e's LRU capacity in blocks of bs tokens.
func (p *Producer) capacity(e *endpoint.Endpoint, bs int) int {
	if p.params.AutoTune {
		m := e.Metrics()
		if m.CacheBlockSize > 0 && m.CacheNumBlocks > 0 {
			if m.CacheNumBlocks > math.MaxInt/m.CacheBlockSize {
				return maxAutoTunedCapacity
			}
			return min(max(m.CacheBlockSize*m.CacheNumBlocks/bs, 1), maxAutoTunedCapacity)
		}
	}
	return p.params.LRUCapacityPerServer
}

// recordIn returns this producer's record in state, adding it if absent.
func (p *Producer) recordIn(state *scheduler.State) *record {
	if r := p.find(state); r != nil {
		return r
	}
	head, _ := recordKey.Get(state)
	r := &record{owner: p, next: head}
	recordKey.Set(state, r)
	return r
}

func (p *Producer) find(state *scheduler.State) *record {
	r, _ := recordKey.Get(state)
	for ; r != nil; r = r.next {
		if r.owner == p {
			return r
		}
	}
	return nil
}

// Match implements Source.
func (p *Producer) Match(state *scheduler.State) (*Match, bool) {
	if r := p.find(state); r != nil {
		return &r.match, true
	}
	return nil, false
}

// PreRequest implements scheduler.PreRequest: record the prompt's blocks for
// the endpoint that will serve the request and for the prefill endpoint.
// Fallback targets are recorded only if the proxy reports that one served
// (ResponseHeaders).
func (p *Producer) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	r := p.find(state)
	if r == nil || len(r.hashes) == 0 || result == nil {
		return
	}
	var primary *endpoint.Endpoint
	if t := result.Targets(); len(t) > 0 {
		primary = t[0]
		p.insert(primary, r.hashes, r.match.BlockSizeTokens)
		r.fallbacks = t[1:]
	}
	if pf := result.PrefillTarget(); pf != nil && pf != primary {
		p.insert(pf, r.hashes, r.match.BlockSizeTokens)
	}
}

// ResponseHeaders implements scheduler.ResponseHeaders: when the proxy
// reports (x-gateway-destination-endpoint-served) that a fallback target
// served the request, that endpoint computed the prompt's KV blocks, so
// they are recorded for it too. The primary keeps its entries: it may hold
// the blocks from earlier requests, and its LRU ages them out otherwise.
func (p *Producer) ResponseHeaders(_ context.Context, state *scheduler.State, _ *scheduler.Request, resp *scheduler.Response) {
	r := p.find(state)
	if r == nil || len(r.fallbacks) == 0 || resp == nil {
		return
	}
	served := strings.TrimSpace(resp.Served)
	for _, e := range r.fallbacks {
		if e.HostPort == served {
			p.insert(e, r.hashes, r.match.BlockSizeTokens)
			r.fallbacks = nil // once per request, whatever later messages say
			return
		}
	}
}

// Purge forgets endpoints no longer in the pool and returns how many. An
// empty pool purges nothing: it is more likely a gap in discovery (a
// restarting watch, an unreadable endpoints file) than every server gone,
// and the index is bounded anyway.
func (p *Producer) Purge() int {
	if p.endpoints == nil {
		return 0
	}
	pool := p.endpoints()
	if len(pool) == 0 {
		return 0
	}
	n := p.index.Purge(pool)
	if n > 0 {
		p.log.V(1).Info("forgot endpoints that left the pool", "endpoints", n)
	}
	return n
}

// Start implements scheduler.Runnable: purge periodically until ctx ends.
func (p *Producer) Start(ctx context.Context) error {
	if p.endpoints == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(p.purgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.Purge()
		}
	}
}
