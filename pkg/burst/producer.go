package burst

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Type is the plugin type name.
const Type = "burst-prefix-cache-producer"

// Outcomes counted in openepp_burst_requests_total.
const (
	outcomePlaced   = "placed"    // the window placed it with others
	outcomeAlone    = "alone"     // its prompt shared too little with the window's others
	outcomeNoPrompt = "no_prompt" // no full block to hash: it does not wait
	outcomeCanceled = "canceled"  // the request ended while its window was open
)

// Producer is llm-d's burst-prefix-cache-producer (see the package doc). It
// hashes each request's prompt into chained blocks of blockSizeTokens × 4
// bytes, as GIE's approximate producer does (equal text is equal tokens,
// and identity is what it groups by), holds the request until its window
// closes (windowDurationMs after the window's first request, or when
// maxBatchSize requests are in), places the window's requests jointly
// (assign), and answers each request's prefix match: its whole prompt on
// the endpoint it was placed on and nothing elsewhere, for a
// prefix-cache-scorer naming it to score. A request sharing nothing with
// its window gets an empty match and the other scorers decide.
//
// While it waits it calls the state's OnWait, so flow control can release
// the next queued request instead of waiting for this one's scheduling.
type Producer struct {
	name     scheduler.TypedName
	params   Params
	outcomes *prometheus.CounterVec

	mu      sync.Mutex
	open    *window
	planned map[string]*entry // by request ID: entries PlanBatch placed ahead
}

// window is the requests collecting towards one joint placement.
type window struct {
	entries []*entry
	sealed  chan struct{}
	timer   *time.Timer
	done    bool
}

var (
	_ scheduler.Producer = (*Producer)(nil)
	_ scheduler.Batcher  = (*Producer)(nil)
	_ prefix.Source      = (*Producer)(nil)
)

// Registration describes the plugin type for the registry.
func Registration() scheduler.Registration {
	return scheduler.Registration{
		Type:    Type,
		Factory: Factory,
		Params:  Params{},
		Summary: "Holds requests for a short window and places those sharing a prompt together (RL rollout samples, best-of-N, fan-out), so each prompt is prefilled once; a prefix-cache-scorer naming it scores the placement.",
	}
}

// Factory builds a Producer from its parameters.
func Factory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return New(name, p, h.MetricsRegisterer())
}

// New returns a producer; reg may be nil (no metrics).
func New(name string, p Params, reg prometheus.Registerer) (*Producer, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	outcomes, err := promreg.Outcomes(reg, "openepp_burst_requests_total",
		"Requests burst-prefix-cache-producer handled, by outcome: placed (with others of its window), alone (sharing too little with them), no_prompt (no full block: it did not wait), canceled (ended while its window was open).")
	if err != nil {
		return nil, err
	}
	return &Producer{name: scheduler.TypedName{Type: Type, Name: name}, params: p, planned: map[string]*entry{}, outcomes: outcomes}, nil
}

// TypedName implements scheduler.Plugin.
func (p *Producer) TypedName() scheduler.TypedName { return p.name }

// Window implements scheduler.Batcher.
func (p *Producer) Window() time.Duration { return p.params.window() }

// record is one producer's match for one request; producers chain theirs.
type record struct {
	owner *Producer
	match *prefix.Match
	next  *record
}

var recordKey = scheduler.NewKey[*record]("burst-prefix-cache")

// Match implements prefix.Source.
func (p *Producer) Match(state *scheduler.State) (*prefix.Match, bool) {
	if state == nil {
		return nil, false
	}
	for r, _ := recordKey.Get(state); r != nil; r = r.next {
		if r.owner == p {
			return r.match, r.match != nil
		}
	}
	return nil, false
}

// Produce implements scheduler.Producer; see the type's comment.
func (p *Producer) Produce(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) {
	var id string
	if req != nil {
		id = req.ID
	}
	e := p.takePlanned(id) // placed (and hashed) by PlanBatch
	if e == nil {
		e = &entry{id: id, hashes: p.hash(req), eps: eps}
		if len(e.hashes) == 0 {
			p.count(outcomeNoPrompt)
			return
		}
		w := p.join(e)
		if state != nil && state.OnWait != nil {
			state.OnWait()
		}
		select {
		case <-w.sealed:
		case <-ctx.Done():
			p.count(outcomeCanceled)
			return
		}
	}
	m := prefix.NewMatch(len(e.hashes), p.params.BlockSizeTokens)
	if e.assigned != nil {
		m.Set(e.assigned, len(e.hashes))
		p.count(outcomePlaced)
	} else {
		p.count(outcomeAlone)
	}
	if state != nil {
		head, _ := recordKey.Get(state)
		recordKey.Set(state, &record{owner: p, match: m, next: head})
	}
}

// hash is req's chained prompt blocks (tools where the template renders
// them), seeded by its model and cache_salt.
func (p *Producer) hash(req *scheduler.Request) []uint64 {
	if req == nil || req.Body == nil {
		return nil
	}
	b := req.Body
	return prefix.AppendBlockHashesWith(nil, prefix.Seed(req.Model, b.CacheSalt), b.Prompt, b.ToolsAt, b.Tools,
		p.params.BlockSizeTokens*prefix.CharsPerToken, p.params.maxBlocks())
}

// join adds e to the open window, opening one if needed; a full window
// closes at once.
func (p *Producer) join(e *entry) *window {
	p.mu.Lock()
	w := p.open
	if w == nil {
		w = &window{sealed: make(chan struct{})}
		p.open = w
		w.timer = time.AfterFunc(p.params.window(), func() { p.seal(w) })
	}
	w.entries = append(w.entries, e)
	full := p.params.MaxBatchSize > 0 && len(w.entries) >= p.params.MaxBatchSize
	p.mu.Unlock()
	if full {
		p.seal(w)
	}
	return w
}

// seal closes w: no request joins it any more, its requests are placed
// and released.
func (p *Producer) seal(w *window) {
	p.mu.Lock()
	if p.open == w {
		p.open = nil
	}
	if w.done {
		p.mu.Unlock()
		return
	}
	w.done = true
	p.mu.Unlock()
	w.timer.Stop()
	assign(w.entries, &p.params)
	close(w.sealed)
}

// PlanBatch implements scheduler.Batcher: it places reqs as one window, so
// that their Produce calls answer at once. Entries a previous plan left
// unclaimed are dropped.
func (p *Producer) PlanBatch(reqs []*scheduler.Request, eps []*endpoint.Endpoint) {
	entries := make([]*entry, 0, len(reqs))
	for _, r := range reqs {
		if h := p.hash(r); len(h) > 0 && r.ID != "" {
			entries = append(entries, &entry{id: r.ID, hashes: h, eps: eps})
		}
	}
	assign(entries, &p.params)
	p.mu.Lock()
	clear(p.planned)
	for _, e := range entries {
		p.planned[e.id] = e
	}
	p.mu.Unlock()
}

func (p *Producer) takePlanned(id string) *entry {
	if id == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.planned[id]
	delete(p.planned, id)
	return e
}

func (p *Producer) count(outcome string) {
	if p.outcomes != nil {
		p.outcomes.WithLabelValues(p.name.Name, outcome).Inc()
	}
}
