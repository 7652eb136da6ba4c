package fleet

import (
	"encoding/binary"
	"github.com/openepp/openepp/pkg/indexlist"
	"math/rand/v2"

	"github.com/cespare/xxhash/v2"

	"github.com/openepp/openepp/pkg/endpoint"
)

// upstreamRouter models the upstream EPP (GIE v1.5.0) running its default
// configuration, re-implemented here from the documented formulas
// (reference.md §4.4, performance.md §2.1 and §5.A) rather than from its
// code, so the comparison does not depend on OpenEPP's plugins:
//
//	total = 2·queue + 2·kv + 3·prefix, highest total wins, ties at random
//	queue  = (maxQ − q)/(maxQ − minQ) over the candidates; 1 when all equal
//	kv     = 1 − KV-cache utilization
//	prefix = matched blocks / prompt blocks
//
// queue and kv read the last scraped metrics. prefix comes from an
// approximate index of where this router sent prompts: the prompt bytes in
// blocks of 16 tokens × 4 bytes (autoTune reads the servers' 16-token KV
// blocks), at most 256 blocks, chained xxhash64 seeded with the model name;
// per server an LRU of block hashes holding as many blocks as the server's
// reported KV cache (autoTune), updated for the picked server after each
// decision. An endpoint's match counts its consecutive leading blocks. Where
// the documents leave a detail open the choice favours upstream: a
// request's first block is inserted last, so LRU eviction drops prompt
// tails before heads.
type upstreamRouter struct {
	baseRouter
	eps    []*endpoint.Endpoint
	rng    *rand.Rand
	lru    []*lruSet
	hashes []uint64
}

// Upstream v1.5.0 default weights and approximate-prefix defaults.
const (
	upstreamQueueWeight  = 2
	upstreamKVWeight     = 2
	upstreamPrefixWeight = 3
	upstreamBlockTokens  = 16
	upstreamCharsPerTok  = 4
	upstreamMaxBlocks    = 256
	upstreamDefaultLRU   = 31250
)

func newUpstreamRouter(eps []*endpoint.Endpoint, seed uint64) *upstreamRouter {
	r := &upstreamRouter{eps: eps, rng: newRand(seed), lru: make([]*lruSet, len(eps))}
	for i := range r.lru {
		r.lru[i] = newLRUSet()
	}
	return r
}

func (r *upstreamRouter) route(f *flight) (int, error) {
	r.hashes = upstreamHashes(r.hashes[:0], f.p.body.Model, f.p.body.Prompt)
	lo, hi := r.queueRange()
	best, ties, bestScore := 0, 0, 0.0
	for i := range r.eps {
		s := r.score(i, lo, hi)
		switch {
		case i == 0 || s > bestScore:
			best, ties, bestScore = i, 1, s
		case s == bestScore:
			ties++
			if r.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	capacity := upstreamCapacity(r.eps[best].Metrics())
	for j := len(r.hashes) - 1; j >= 0; j-- {
		r.lru[best].add(r.hashes[j], capacity)
	}
	return best, nil
}

// queueRange returns the smallest and largest scraped waiting queue.
func (r *upstreamRouter) queueRange() (lo, hi int) {
	for i, e := range r.eps {
		q := e.Metrics().WaitingQueueSize
		if i == 0 || q < lo {
			lo = q
		}
		if i == 0 || q > hi {
			hi = q
		}
	}
	return lo, hi
}

// score is server i's weighted total for the request hashed in r.hashes.
func (r *upstreamRouter) score(i, lo, hi int) float64 {
	m := r.eps[i].Metrics()
	queue := 1.0
	if hi > lo {
		queue = float64(hi-m.WaitingQueueSize) / float64(hi-lo)
	}
	kv := 1 - min(max(m.KVCacheUsagePercent, 0), 1)
	prefix := 0.0
	if len(r.hashes) > 0 {
		prefix = float64(r.lru[i].leading(r.hashes)) / float64(len(r.hashes))
	}
	return upstreamQueueWeight*queue + upstreamKVWeight*kv + upstreamPrefixWeight*prefix
}

// upstreamCapacity is the auto-tuned LRU size in blocks: the server's KV
// cache in tokens over the index block size.
func upstreamCapacity(m *endpoint.Metrics) int {
	if m.CacheBlockSize > 0 && m.CacheNumBlocks > 0 {
		return max(1, m.CacheBlockSize*m.CacheNumBlocks/upstreamBlockTokens)
	}
	return upstreamDefaultLRU
}

// upstreamHashes appends the chained hashes of prompt's complete blocks.
func upstreamHashes(dst []uint64, model string, prompt []byte) []uint64 {
	const blockBytes = upstreamBlockTokens * upstreamCharsPerTok
	n := min(len(prompt)/blockBytes, upstreamMaxBlocks)
	prev := xxhash.Sum64String(model)
	var buf [8]byte
	d := xxhash.New()
	for i := range n {
		d.Reset()
		binary.LittleEndian.PutUint64(buf[:], prev)
		_, _ = d.Write(buf[:])
		_, _ = d.Write(prompt[i*blockBytes : (i+1)*blockBytes])
		prev = d.Sum64()
		dst = append(dst, prev)
	}
	return dst
}

// lruSet is a set of block hashes with least-recently-added eviction.
type lruSet struct {
	pos   map[uint64]int32
	keys  []uint64
	order indexlist.List // front is the most recent
	free  []int32
}

func newLRUSet() *lruSet { return &lruSet{pos: map[uint64]int32{}} }

// leading counts how many of hashes, from the first, the set holds.
func (l *lruSet) leading(hashes []uint64) int {
	for i, h := range hashes {
		if _, ok := l.pos[h]; !ok {
			return i
		}
	}
	return len(hashes)
}

// add makes h the most recent entry, evicting the oldest beyond capacity.
func (l *lruSet) add(h uint64, capacity int) {
	if i, ok := l.pos[h]; ok {
		l.order.Remove(i)
		l.order.PushFront(i)
		return
	}
	for len(l.pos) >= capacity && l.order.Len() > 0 {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.pos, l.keys[old])
		l.free = append(l.free, old)
	}
	var i int32
	if n := len(l.free); n > 0 {
		i = l.free[n-1]
		l.free = l.free[:n-1]
		l.keys[i] = h
	} else {
		i = int32(len(l.keys))
		l.keys = append(l.keys, h)
		l.order.Grow(len(l.keys))
	}
	l.pos[h] = i
	l.order.PushFront(i)
}
