package prefix

import (
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Match is what a producer found for one request: how many leading prompt
// blocks each endpoint is believed to hold.
//
// Endpoints are identified by address (Endpoint.HostPortHash), not by
// pointer: the datastore hands out a new *Endpoint when a pod's labels
// change, but the model server and its KV cache stay the same. The hash
// rather than the string because every scorer looks up every candidate.
type Match struct {
	// TotalBlocks is the number of blocks the prompt was cut into (after any
	// cap on blocks to match).
	TotalBlocks int
	// BlockSizeTokens is the block size used, in tokens.
	BlockSizeTokens int
	// matched holds only endpoints with at least one matching block, by
	// HostPortHash.
	matched map[uint64]int
	// present has a bit per matched hash (a one-hash Bloom filter): most
	// candidates hold nothing, and a bit test turns them away before the
	// map lookup.
	present [8]uint64
}

// presence is the word and bit of present for hash h.
func presence(h uint64) (word int, bit uint64) { return int(h>>6) & 7, 1 << (h & 63) }

// NewMatch returns an empty match for a prompt of total blocks.
func NewMatch(total, blockSizeTokens int) *Match {
	return &Match{TotalBlocks: total, BlockSizeTokens: blockSizeTokens}
}

// Set records that e holds the first blocks blocks of the prompt.
func (m *Match) Set(e *endpoint.Endpoint, blocks int) {
	if blocks <= 0 || e == nil {
		return
	}
	if m.matched == nil {
		m.matched = make(map[uint64]int, 4)
	}
	m.matched[e.HostPortHash] = blocks
	w, b := presence(e.HostPortHash)
	m.present[w] |= b
}

// Grow makes room for n matched endpoints, so a producer that knows how many
// it will Set allocates the map once.
func (m *Match) Grow(n int) {
	if m.matched == nil && n > 0 {
		m.matched = make(map[uint64]int, n)
	}
}

// Len returns how many endpoints hold at least one block.
func (m *Match) Len() int { return len(m.matched) }

// Blocks returns how many leading blocks e holds (0 if none).
func (m *Match) Blocks(e *endpoint.Endpoint) int {
	if e == nil || len(m.matched) == 0 {
		return 0
	}
	if w, b := presence(e.HostPortHash); m.present[w]&b == 0 {
		return 0
	}
	return m.matched[e.HostPortHash]
}

// Any reports whether any endpoint holds at least one block ("warm").
func (m *Match) Any() bool { return len(m.matched) > 0 }

// Ratio is Blocks(e)/TotalBlocks, 0 for an empty prompt.
func (m *Match) Ratio(e *endpoint.Endpoint) float64 {
	if m.TotalBlocks == 0 {
		return 0
	}
	return float64(m.Blocks(e)) / float64(m.TotalBlocks)
}

// Source is implemented by plugins that produce a Match for each request
// (the approximate producer; a precise KV-event producer later).
type Source interface {
	scheduler.Plugin
	// Match returns the match produced for the request owning state.
	Match(state *scheduler.State) (*Match, bool)
}

// MatchOf is src's match for the request owning state; nil without a
// source, a state or a match.
func MatchOf(src Source, state *scheduler.State) *Match {
	if src == nil || state == nil {
		return nil
	}
	if m, ok := src.Match(state); ok {
		return m
	}
	return nil
}

// Uncached is the part of a prompt of promptTokens tokens that e does not
// hold: all of it for a nil match.
func (m *Match) Uncached(promptTokens int, e *endpoint.Endpoint) int {
	if m == nil {
		return promptTokens
	}
	return max(0, promptTokens-m.Blocks(e)*m.BlockSizeTokens)
}

// Lookup finds the plugin called name in h's configuration (a
// prefixMatchInfoProducerName parameter) as a Source.
func Lookup(h *scheduler.Handle, name string) (Source, error) {
	p, ok := h.Plugin(name)
	if !ok {
		return nil, fmt.Errorf("prefixMatchInfoProducerName: no plugin named %q in the config", name)
	}
	src, ok := p.(Source)
	if !ok {
		return nil, fmt.Errorf("prefixMatchInfoProducerName: plugin %q (type %q) does not produce prefix matches", name, p.TypedName().Type)
	}
	return src, nil
}

// LookupOptional is Lookup for plugins that work without a prefix source:
// when the default producer (ProducerType) is named and not configured, it
// returns no source and no error; a source named explicitly must exist.
func LookupOptional(h *scheduler.Handle, name string) (Source, error) {
	if h == nil {
		return nil, nil
	}
	if _, ok := h.Plugin(name); !ok && name == ProducerType {
		return nil, nil
	}
	return Lookup(h, name)
}
