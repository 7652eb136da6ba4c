package engine

import (
	"container/list"
	"fmt"
	"time"
)

// Media is one multimodal item of a prompt (an image, audio clip or
// video) whose placeholder tokens occupy Request.Tokens[Offset:Offset+Tokens].
// ID names the item across requests: equal IDs are the same item, whose
// encoder output the engine's encoder cache can reuse.
type Media struct {
	ID             uint64
	Offset, Tokens int
}

// The encoder model, as vLLM runs a multimodal model: before an iteration
// computes any uncached placeholder token of an item, the item's encoder
// output must exist. An item whose output is in the encoder cache costs
// nothing (and becomes most recently used); otherwise the iteration runs the
// encoder, lasting EncodePerToken × the item's placeholder tokens longer,
// and the output enters the cache (least recently used items are evicted
// until it fits; one larger than the cache is not kept). Each sequence
// encodes an item at most once per prefill; a prefix-cache hit covering
// every placeholder of an item needs no encoder output at all. An engine
// with EncodePerToken 0 prices nothing but still counts hits and misses.

// encoderCache is the per-server LRU of encoder outputs, sized in
// placeholder tokens.
type encoderCache struct {
	capacity, used int
	lru            *list.List // of encoded, front = most recently used
	items          map[uint64]*list.Element
	hits, misses   uint64
}

type encoded struct {
	id     uint64
	tokens int
}

func newEncoderCache(capacity int) *encoderCache {
	return &encoderCache{capacity: capacity, lru: list.New(), items: make(map[uint64]*list.Element)}
}

// need looks item m up; it reports whether the item must be encoded, and
// caches it when it must (and fits).
func (c *encoderCache) need(m Media) bool {
	if el, ok := c.items[m.ID]; ok {
		c.lru.MoveToFront(el)
		c.hits++
		return false
	}
	c.misses++
	if m.Tokens > c.capacity {
		return true
	}
	for c.used+m.Tokens > c.capacity {
		el := c.lru.Back()
		old := el.Value.(encoded)
		c.lru.Remove(el)
		delete(c.items, old.id)
		c.used -= old.tokens
	}
	c.items[m.ID] = c.lru.PushFront(encoded{id: m.ID, tokens: m.Tokens})
	c.used += m.Tokens
	return true
}

// encodeFor returns the placeholder tokens the encoder must process before
// sequence s computes tokens [s.computed, s.computed+n), and marks the items
// it passes as handled.
func (e *Engine) encodeFor(s *seq, n int) int {
	tokens := 0
	end := s.computed + n
	for ; s.mediaNext < len(s.media) && s.media[s.mediaNext].Offset < end; s.mediaNext++ {
		m := s.media[s.mediaNext]
		if m.Offset+m.Tokens <= s.computed {
			continue // every placeholder served from the prefix cache
		}
		if e.enc.need(m) {
			tokens += m.Tokens
		}
	}
	return tokens
}

// encodeCost prices an iteration's encoder work.
func (c *Config) encodeCost(tokens int) time.Duration {
	return time.Duration(tokens) * c.EncodePerToken
}

// checkMedia validates a request's items: in the prompt, in order, not
// overlapping.
func checkMedia(req Request) error {
	prev := 0
	for i, m := range req.Media {
		if m.Tokens < 1 || m.Offset < prev || m.Offset+m.Tokens > len(req.Tokens) {
			return fmt.Errorf("media[%d] at %d+%d: must have tokens >= 1, lie within the %d-token prompt, "+
				"in order and not overlapping: %w", i, m.Offset, m.Tokens, len(req.Tokens), ErrInvalidRequest)
		}
		prev = m.Offset + m.Tokens
	}
	return nil
}

// copyMedia keeps a request's items in a slot, reusing its slice.
func copyMedia(dst, src []Media) []Media {
	return append(dst[:0], src...)
}
