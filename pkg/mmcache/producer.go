package mmcache

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ProducerType is the type name of Producer.
const ProducerType = "mm-embeddings-cache-producer"

// purgeInterval is how often Start forgets endpoints that left the pool.
const purgeInterval = 2 * time.Minute

// Producer is llm-d's mm-embeddings-cache-producer. Per request, Produce
// hashes the request's distinct multimodal items (AppendItems) and gives
// every candidate its match: the share of those items its LRU holds
// (Match, read by mm-embeddings-cache-scorer). Every item weighs 1: llm-d
// weighs an item by its placeholder token count when its tokenizer reports
// multimodal metadata, which OpenEPP's token-producer does not.
//
// PreRequest records the items as the most recently used of the target's
// LRU and, when a prefill profile ran, of its target's too, which encoded
// them as well. Each endpoint's LRU holds at most cacheSizeInMBPerServer
// MiB of the EPP's memory (entryBytes per item), least recently routed
// first out: it is the EPP's memory of its own routing, not the server's
// encoder cache, which is usually much smaller. With replica sync the
// replicas share what they record (share.go). Start forgets endpoints
// that left the pool every two minutes.
type Producer struct {
	name      scheduler.TypedName
	params    ProducerParams
	capacity  int
	store     *store
	log       logr.Logger
	endpoints func() []*endpoint.Endpoint
	// publisher hears this replica's own records (replica sync).
	publisher atomic.Pointer[prefix.Publisher]
	tel       *telemetry // nil: not counted
}

var (
	_ scheduler.Producer    = (*Producer)(nil)
	_ scheduler.PreRequest  = (*Producer)(nil)
	_ scheduler.Runnable    = (*Producer)(nil)
	_ scheduler.Inheritor   = (*Producer)(nil)
	_ scheduler.StateDumper = (*Producer)(nil)
	_ prefix.Sharer         = (*Producer)(nil)
)

// ProducerRegistration describes the plugin type for the registry.
func ProducerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ProducerType,
		Factory: ProducerFactory,
		Params:  ProducerParams{},
		Summary: "Hashes each request's images, audio and video (by URL or inline data) and remembers per endpoint, in an LRU, the items recently routed there; feeds mm-embeddings-cache-scorer.",
	}
}

// ProducerFactory builds a Producer from its parameters.
func ProducerFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultProducerParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewProducer(name, p, h)
}

// NewProducer returns a producer with empty LRUs; h may be nil.
func NewProducer(name string, p ProducerParams, h *scheduler.Handle) (*Producer, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if h == nil {
		h = &scheduler.Handle{Log: logr.Discard()}
	}
	typed := scheduler.TypedName{Type: ProducerType, Name: name}
	tel, err := newTelemetry(h.MetricsRegisterer(), typed)
	if err != nil {
		return nil, err
	}
	return &Producer{
		name: typed, params: p, capacity: p.capacityItems(),
		store: newStore(), log: h.Log.WithValues("plugin", name), endpoints: h.Endpoints, tel: tel,
	}, nil
}

// TypedName implements scheduler.Plugin.
func (p *Producer) TypedName() scheduler.TypedName { return p.name }

// Inherit implements scheduler.Inheritor: a reload keeps what the EPP
// remembers of its routing; a new cacheSizeInMBPerServer applies to each
// endpoint at its next record.
func (p *Producer) Inherit(prev scheduler.Plugin) {
	if old, ok := prev.(*Producer); ok {
		p.store = old.store
	}
}

// Match is what Produce found for one request: how many distinct items it
// references and how many of them each endpoint's LRU holds.
type Match struct {
	// Items is the number of distinct items (the total weight, one each).
	Items int
	// matched holds only endpoints holding at least one item, by HostPort.
	matched map[string]int
}

// Held returns how many of the request's items e is believed to hold.
func (m *Match) Held(e *endpoint.Endpoint) int {
	if m == nil || e == nil {
		return 0
	}
	return m.matched[e.HostPort]
}

// Fraction is Held(e)/Items, in [0, 1]; 0 for a request without items.
func (m *Match) Fraction(e *endpoint.Endpoint) float64 {
	if m == nil || m.Items == 0 {
		return 0
	}
	return float64(m.Held(e)) / float64(m.Items)
}

// record is what Produce leaves in State; records of several instances
// chain through next under one key.
type record struct {
	owner *Producer
	next  *record
	items []uint64
	match Match
}

var recordKey = scheduler.NewKey[*record]("mm-embeddings-cache")

func (p *Producer) find(state *scheduler.State) *record {
	if state == nil {
		return nil
	}
	r, _ := recordKey.Get(state)
	for ; r != nil; r = r.next {
		if r.owner == p {
			return r
		}
	}
	return nil
}

// Produce implements scheduler.Producer. A request without items leaves
// no record (and allocates nothing): every candidate's match is then 0.
func (p *Producer) Produce(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) {
	r := p.find(state)
	if r != nil {
		r.items, r.match = r.items[:0], Match{}
	}
	if req == nil {
		return
	}
	items := AppendItems(nil, req.Body)
	if len(items) == 0 {
		return
	}
	if r == nil {
		head, _ := recordKey.Get(state)
		r = &record{owner: p, next: head}
		recordKey.Set(state, r)
	}
	r.items, r.match.Items = items, len(items)
	p.tel.queried(items)
	best := 0
	for _, e := range eps {
		if n, by := p.store.count(e.HostPort, items); n > 0 {
			if r.match.matched == nil {
				r.match.matched = make(map[string]int, len(eps))
			}
			r.match.matched[e.HostPort] = n
			p.tel.held(e, by)
			best = max(best, n)
		}
	}
	p.tel.matched(best, len(items))
	if l := p.log.V(2); l.Enabled() {
		l.Info("multimodal items matched", "requestID", req.ID, "items", len(items), "endpointsMatched", len(r.match.matched))
	}
}

// Match returns the match Produce found for the request owning state.
func (p *Producer) Match(state *scheduler.State) (*Match, bool) {
	if r := p.find(state); r != nil {
		return &r.match, true
	}
	return nil, false
}

// PreRequest implements scheduler.PreRequest: the target, and the prefill
// target when a prefill profile ran, now hold the request's items.
func (p *Producer) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	r := p.find(state)
	if r == nil || len(r.items) == 0 || result == nil {
		return
	}
	primary, prefill := result.Servers()
	for _, e := range [...]*endpoint.Endpoint{primary, prefill} {
		if e != nil {
			p.remember(e.HostPort, r.items)
		}
	}
}

// Purge forgets the endpoints that left the pool and returns how many.
func (p *Producer) Purge() int {
	if p.endpoints == nil {
		return 0
	}
	n := p.store.purge(p.endpoints())
	if n > 0 {
		p.log.V(1).Info("forgot endpoints that left the pool", "endpoints", n)
	}
	return n
}

// Start implements scheduler.Runnable: purge periodically until ctx ends.
func (p *Producer) Start(ctx context.Context) error {
	t := time.NewTicker(purgeInterval)
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
