package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// NoHitLRUType is the type name of NoHitLRU.
const NoHitLRUType = "no-hit-lru-scorer"

// NoHitLRUParams configures NoHitLRU.
type NoHitLRUParams struct {
	PrefixPluginName string `json:"prefixPluginName" doc:"plugin whose prefix matches tell cold requests from warm ones (a prefix-cache-scorer or approx-prefix-cache-producer)" default:"prefix-cache-scorer"`
	// PrefixPluginType is checked only when set: upstream uses it to find
	// the plugin, OpenEPP finds it by name and accepts any prefix source.
	PrefixPluginType string `json:"prefixPluginType" doc:"if set, the type the named plugin must have" default:""`
	LRUSize          int    `json:"lruSize" doc:"endpoints remembered in the cold-request LRU" default:"1024"`
}

func (p *NoHitLRUParams) validate() error {
	var errs []error
	if strings.TrimSpace(p.PrefixPluginName) == "" {
		errs = append(errs, errors.New("prefixPluginName: must not be empty"))
	}
	if p.LRUSize < 1 {
		errs = append(errs, fmt.Errorf("lruSize: must be >= 1, got %d", p.LRUSize))
	}
	return errors.Join(errs...)
}

// NoHitLRU spreads cold requests, those whose prompt prefix no endpoint is
// believed to hold, over the endpoints that took a cold request longest ago
// (or never). A cold request creates new KV blocks wherever it lands; sending
// consecutive ones to the same endpoint would fill one cache while others sit
// idle, and would let one endpoint's cache become the place every prefix
// lives, which the prefix scorer then reinforces.
//
// Inputs: the prefix.Match of the request from the plugin named
// prefixPluginName (resolved in Resolve; a missing or unsuitable plugin is
// a configuration error), and its own LRU of endpoints (lruSize, 1024) that
// received cold requests, updated in PreRequest for cold requests only. A
// request without a match counts as cold, as upstream.
//
// Formula: warm request (some endpoint holds at least one block) → 0.5 for
// every candidate, leaving placement to the affinity scorers. Cold request →
// candidates that never took a cold request (or were evicted from the LRU)
// score 1; the k others, ranked r = 0 (least recent) … k−1 (most recent)
// among the candidates, score (k − r)/(k + 1), in (0, 1).
type NoHitLRU struct {
	name   scheduler.TypedName
	params NoHitLRUParams
	source prefix.Source // set by Resolve, before any request
	// pool names the endpoints in DumpState (nil: addresses are shown).
	pool func() []*endpoint.Endpoint

	// book is shared with the instance a reload builds (Inherit): the
	// scorer resolves a reference, so every reload rebuilds it.
	book *noHitBook
}

// noHitBook is the LRU of endpoints that took cold requests.
type noHitBook struct {
	mu  sync.RWMutex
	lru recency
}

var (
	_ scheduler.ScoreWriter = (*NoHitLRU)(nil)
	_ scheduler.PreRequest  = (*NoHitLRU)(nil)
	_ scheduler.Resolver    = (*NoHitLRU)(nil)
	_ scheduler.StateDumper = (*NoHitLRU)(nil)
	_ scheduler.Inheritor   = (*NoHitLRU)(nil)
)

// NewNoHitLRU validates p and returns a no-hit LRU scorer; it is usable
// once Resolve (or SetSource) has given it a prefix source.
func NewNoHitLRU(name string, p NoHitLRUParams) (*NoHitLRU, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &NoHitLRU{
		name:   scheduler.TypedName{Type: NoHitLRUType, Name: name},
		params: p,
		book:   &noHitBook{lru: recency{capacity: p.LRUSize, index: map[string]*recent{}}},
	}, nil
}

// NoHitLRUFactory builds a NoHitLRU from config.
func NoHitLRUFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := NoHitLRUParams{PrefixPluginName: "prefix-cache-scorer", LRUSize: 1024}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewNoHitLRU(name, p)
	if err != nil {
		return nil, err
	}
	if h != nil {
		s.pool = h.Endpoints
	}
	return s, nil
}

// NoHitLRURegistration describes the plugin type for the registry.
func NoHitLRURegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    NoHitLRUType,
		Factory: NoHitLRUFactory,
		Params:  NoHitLRUParams{},
		Summary: "Sends cold (no prefix hit) requests to the endpoints least recently given one; warm requests 0.5.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *NoHitLRU) TypedName() scheduler.TypedName { return s.name }

// Resolve implements scheduler.Resolver: it finds the prefix source.
func (s *NoHitLRU) Resolve(h *scheduler.Handle) error {
	name := s.params.PrefixPluginName
	p, ok := h.Plugin(name)
	if !ok {
		return fmt.Errorf("prefixPluginName: no plugin named %q in the configuration; %s needs a prefix-cache-scorer or approx-prefix-cache-producer", name, NoHitLRUType)
	}
	if want := s.params.PrefixPluginType; want != "" && p.TypedName().Type != want {
		return fmt.Errorf("prefixPluginType: plugin %q has type %q, want %q", name, p.TypedName().Type, want)
	}
	src, ok := p.(prefix.Source)
	if !ok {
		return fmt.Errorf("prefixPluginName: plugin %q (type %q) does not provide prefix matches", name, p.TypedName().Type)
	}
	s.source = src
	return nil
}

// Inherit implements scheduler.Inheritor: every reload rebuilds the scorer
// (it resolves its prefix source), and the new instance keeps the LRU of
// cold picks, at its own lruSize (a smaller one drops the least recent
// entries at the next cold pick).
func (s *NoHitLRU) Inherit(prev scheduler.Plugin) {
	old, ok := prev.(*NoHitLRU)
	if !ok || old.book == s.book {
		return
	}
	b := old.book
	b.mu.Lock()
	b.lru.capacity = s.params.LRUSize
	b.mu.Unlock()
	s.book = b
}

// SetSource sets the prefix source directly, for use without a config; call
// it before the scorer is used concurrently, as Resolve is.
func (s *NoHitLRU) SetSource(src prefix.Source) { s.source = src }

// cold reports whether no endpoint holds any of the request's prefix.
func (s *NoHitLRU) cold(state *scheduler.State) bool {
	if s.source == nil || state == nil {
		return true
	}
	m, ok := s.source.Match(state)
	return !ok || m == nil || !m.Any()
}

// Score implements scheduler.Scorer.
func (s *NoHitLRU) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *NoHitLRU) ScoreInto(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	if !s.cold(state) {
		fill(out, 0.5)
		return
	}
	b := s.book
	b.mu.RLock()
	b.lru.rank(eps, out)
	b.mu.RUnlock()
}

// PreRequest records a cold request's primary target as most recently used.
func (s *NoHitLRU) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	e := inflight.PrimaryTarget(result)
	if e == nil || !s.cold(state) {
		return
	}
	b := s.book
	b.mu.Lock()
	b.lru.touch(e.HostPort)
	b.mu.Unlock()
}

// NoHitLRUState is what NoHitLRU shows at /debug/plugins/state. JSON
// fields: prefixPluginName (where it learns whether a request is cold, as
// configured), lruSize (the most endpoints the LRU remembers), size (how
// many it remembers now), mostRecentFirst (the endpoints that took cold
// requests, by name, or by address for one not in the pool; the most recent
// first, at most scheduler.DumpLimit) and more (entries left out of
// mostRecentFirst, the least recent ones). A cold request prefers the
// candidates missing from the LRU, then those nearest its end.
type NoHitLRUState struct {
	PrefixPluginName string   `json:"prefixPluginName"`
	LRUSize          int      `json:"lruSize"`
	Size             int      `json:"size"`
	MostRecentFirst  []string `json:"mostRecentFirst"`
	More             int      `json:"more"`
}

// DumpState implements scheduler.StateDumper; it returns a NoHitLRUState.
func (s *NoHitLRU) DumpState() any {
	recent := make([]string, 0, min(s.params.LRUSize, scheduler.DumpLimit))
	b := s.book
	b.mu.RLock()
	size := len(b.lru.order)
	for i := size - 1; i >= 0 && len(recent) < cap(recent); i-- {
		recent = append(recent, b.lru.order[i].key)
	}
	b.mu.RUnlock()
	names := scheduler.NamesOf(s.pool)
	for i, hostPort := range recent {
		recent[i] = names.Name(hostPort)
	}
	return NoHitLRUState{
		PrefixPluginName: s.params.PrefixPluginName, LRUSize: s.params.LRUSize,
		Size: size, MostRecentFirst: recent, More: size - len(recent),
	}
}

// recency is a bounded LRU of endpoints with dense positions: order[0] is the
// least recently used and every entry knows its index, so ranking candidates
// needs no sort. A touch costs O(size), paid once per cold request.
type recency struct {
	capacity int
	order    []*recent
	index    map[string]*recent
}

type recent struct {
	key string
	pos int
}

// touch makes key the most recently used, evicting the least recently used
// entry when full.
func (r *recency) touch(key string) {
	if n, ok := r.index[key]; ok {
		from, last := n.pos, len(r.order)-1
		copy(r.order[from:], r.order[from+1:])
		r.order[last] = n
		r.renumber(from)
		return
	}
	if len(r.order) >= r.capacity { // more than one over after a reload shrank it
		drop := len(r.order) - r.capacity + 1
		for _, n := range r.order[:drop] {
			delete(r.index, n.key)
		}
		r.order = append(r.order[:0], r.order[drop:]...)
		r.renumber(0)
	}
	n := &recent{key: key, pos: len(r.order)}
	r.order = append(r.order, n)
	r.index[key] = n
}

func (r *recency) renumber(from int) {
	for i := from; i < len(r.order); i++ {
		r.order[i].pos = i
	}
}

// rankWords is how many 64-bit words of positions rank handles without
// allocating: the default lruSize of 1024.
const rankWords = 16

// rank writes the cold-request score of each endpoint into out (see
// NoHitLRU). It marks the candidates' LRU positions in a bitmap, so a
// candidate's rank among the candidates is a popcount of the marks before it.
func (r *recency) rank(eps []*endpoint.Endpoint, out []float64) {
	if len(r.order) == 0 {
		fill(out, 1)
		return
	}
	words := (len(r.order) + 63) / 64
	var marksBuf [rankWords]uint64
	var cumBuf [rankWords]int
	marks, cum := marksBuf[:], cumBuf[:]
	if words > rankWords {
		marks, cum = make([]uint64, words), make([]int, words)
	}
	used := 0
	for i, e := range eps {
		n, ok := r.index[e.HostPort]
		if !ok {
			out[i] = -1
			continue
		}
		marks[n.pos/64] |= 1 << (n.pos % 64)
		out[i] = float64(n.pos)
		used++
	}
	for w := 1; w < words; w++ {
		cum[w] = cum[w-1] + bits.OnesCount64(marks[w-1])
	}
	for i, v := range out {
		if v < 0 {
			out[i] = 1
			continue
		}
		pos := int(v)
		below := cum[pos/64] + bits.OnesCount64(marks[pos/64]&(1<<(pos%64)-1))
		out[i] = float64(used-below) / float64(used+1)
	}
}
