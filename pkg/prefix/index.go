package prefix

import (
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/openepp/openepp/pkg/endpoint"
)

// DefaultShards is the number of lock domains of an index built with
// IndexOptions{}. Sixteen keeps write-lock collisions rare at the request
// rates one EPP replica sees while leaving each shard's share of a default
// 31,250-block LRU (about 1,950 blocks) large enough to behave like the
// whole.
const DefaultShards = 16

// maxWindow bounds the blocks a match processes under one set of shard read
// locks, and so how long it can hold inserts up.
const maxWindow = 64

// maxShards bounds IndexOptions.Shards (a match tracks shards in a uint64).
const maxShards = 64

// Beyond its first exactBlocks blocks a match probes only every
// sampleStride-th block (and the last). A probe walks every endpoint
// holding the block, so a long prefix held by the whole pool, such as the
// system prompt and tools every agent request starts with, would cost
// blocks × endpoints steps: 4.5 ms at 1,600 blocks and 50 holders. Sampled,
// a match costs at most exactBlocks + (n − exactBlocks)/sampleStride probes
// and credits an endpoint up to its last sampled block, 256 tokens apart
// with 16-token blocks. Every block is still inserted, so the index's LRU
// keeps the servers' own accounting, and the positions probed depend only
// on the block index, so a longer prompt probes what a shorter one with
// the same head recorded. Prompts within exactBlocks (GIE's whole window)
// are matched exactly, as before.
const (
	exactBlocks  = 256
	sampleStride = 16
)

// maxSlots bounds the endpoints an index tracks at once; Insert ignores
// further endpoints until Purge frees the slots of departed ones.
const maxSlots = 1 << 20

// IndexOptions configures an Index.
type IndexOptions struct {
	// Shards is the number of lock domains, a power of two (0 means
	// DefaultShards). Each endpoint's LRU is split evenly across shards, so
	// eviction is exact LRU with 1 shard and approximately LRU otherwise.
	Shards int
}

// Index is the approximate prefix-cache index: for each endpoint, a bounded
// LRU set of block hashes, plus the reverse map hash → endpoints. It is safe
// for concurrent use. See the package documentation for the layout and costs.
type Index struct {
	shards []*shard
	shift  uint // hash >> shift selects the shard

	slots atomic.Pointer[slotTable]
	// slotMu serialises changes to slots; taken before any shard lock.
	slotMu     sync.Mutex
	free       []int32 // slots ready for reuse
	quarantine []int32 // slots freed by the last purge, reusable after the next

	scratch sync.Pool // *matchScratch
}

// matchScratch is per-Match working memory, pooled so that a match
// allocates only its result.
type matchScratch struct {
	counts  []int32 // leading blocks found so far, by slot
	probes  []int32 // block indices a match probes, ascending
	touched []int32 // slots with a non-zero count
	starts  []int32 // Insert: per-shard group bounds, then fill cursors
	order   []int32 // Insert: block indices grouped by shard
	slots   []int32 // Occupancy: each endpoint's slot, or none
}

// NewIndex returns an empty index.
func NewIndex(opts IndexOptions) (*Index, error) {
	n := opts.Shards
	if n == 0 {
		n = DefaultShards
	}
	if n < 1 || n > maxShards || n&(n-1) != 0 {
		return nil, fmt.Errorf("prefix index: shards must be a power of two in [1, %d], got %d", maxShards, n)
	}
	ix := &Index{shards: make([]*shard, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
	for i := range ix.shards {
		ix.shards[i] = newShard()
	}
	ix.slots.Store(&slotTable{byEP: map[*endpoint.Endpoint]int32{}, byAddr: map[string]int32{}})
	ix.scratch.New = func() any { return &matchScratch{} }
	return ix, nil
}

// shardIndex selects the shard from the hash's top bits; the table inside
// the shard uses the low bits, so the two choices are independent.
func (ix *Index) shardIndex(h uint64) int {
	return int(h >> ix.shift & uint64(len(ix.shards)-1))
}

func (ix *Index) shardOf(h uint64) *shard { return ix.shards[ix.shardIndex(h)] }

// Match reports, for every endpoint, how many leading blocks of hashes it
// holds: the count stops at the endpoint's first missing block, because a
// model server can reuse a cached block only when all blocks before it are
// cached too (past exactBlocks, at its first missing sampled block). It
// costs one table probe per probed block plus one step per (endpoint,
// block) hit, and stops early once no endpoint holds the next block.
func (ix *Index) Match(hashes []uint64, blockSizeTokens int) *Match {
	m := NewMatch(len(hashes), blockSizeTokens)
	ix.matchInto(m, hashes)
	return m
}

func (ix *Index) matchInto(m *Match, hashes []uint64) {
	snap := ix.slots.Load()
	sc := ix.scratch.Get().(*matchScratch)
	if len(sc.counts) < len(snap.bySlot) {
		sc.counts = make([]int32, len(snap.bySlot))
	}
	counts := sc.counts[:len(snap.bySlot)]
	probes := sc.probesFor(len(hashes))
	// Windows of 1, 1, 2, 4, … probes, up to maxWindow: a cold prompt costs
	// one probe, and a long match takes each shard's lock only a few times.
	for lo := 0; lo < len(probes); {
		hi := min(len(probes), max(1, min(2*lo, lo+maxWindow)))
		if !ix.matchWindow(hashes, probes, lo, hi, counts, sc) {
			break
		}
		lo = hi
	}
	m.Grow(len(sc.touched))
	for _, slot := range sc.touched {
		if e := snap.bySlot[slot]; e != nil {
			m.Set(e, int(counts[slot]))
		}
		counts[slot] = 0
	}
	sc.touched = sc.touched[:0]
	ix.scratch.Put(sc)
}

// probesFor returns the block indices a match of n blocks probes: every one
// of the first exactBlocks, then every sampleStride-th, then the last.
func (sc *matchScratch) probesFor(n int) []int32 {
	p := sc.probes[:0]
	for i := range min(n, exactBlocks) {
		p = append(p, int32(i))
	}
	for i := exactBlocks + sampleStride - 1; i < n; i += sampleStride {
		p = append(p, int32(i))
	}
	if n > exactBlocks && p[len(p)-1] != int32(n-1) {
		p = append(p, int32(n-1))
	}
	sc.probes = p
	return p
}

// matchWindow advances the counts over probes lo..hi-1, holding the read
// locks of their shards for the whole window. Taking one lock per shard
// rather than one per block saves atomic operations, which would also keep
// the CPU from overlapping the cache misses of consecutive probes.
// Deadlock-free: readers lock in ascending shard order, and writers never
// hold more than one shard lock.
func (ix *Index) matchWindow(hashes []uint64, probes []int32, lo, hi int, counts []int32, sc *matchScratch) bool {
	var mask uint64
	for _, i := range probes[lo:hi] {
		mask |= 1 << ix.shardIndex(fixHash(hashes[i]))
	}
	for m := mask; m != 0; m &= m - 1 {
		ix.shards[bits.TrailingZeros64(m)].mu.RLock()
	}
	defer func() {
		for m := mask; m != 0; m &= m - 1 {
			ix.shards[bits.TrailingZeros64(m)].mu.RUnlock()
		}
	}()
	for k := lo; k < hi; k++ {
		i, before := probes[k], int32(0)
		if k > 0 {
			before = probes[k-1] + 1
		}
		if !ix.advance(fixHash(hashes[i]), i, before, counts, sc) {
			return false
		}
	}
	return true
}

// advance sets to i+1 the count of every endpoint that holds h and was
// credited with the before blocks up to the previous probe, reporting
// whether any did. Caller holds h's shard's read lock.
func (ix *Index) advance(h uint64, i, before int32, counts []int32, sc *matchScratch) bool {
	s := ix.shardOf(h)
	one, pairs := s.holders(h)
	if one != none {
		return credit(s.at(one).slot, i, before, counts, sc)
	}
	advanced := false
	for k := 0; k < len(pairs); k += 2 {
		if credit(pairs[k], i, before, counts, sc) {
			advanced = true
		}
	}
	return advanced
}

// credit sets slot's count to i+1 if it was before, reporting whether it did.
func credit(slot, i, before int32, counts []int32, sc *matchScratch) bool {
	if int(slot) >= len(counts) || counts[slot] != before {
		return false
	}
	counts[slot] = i + 1
	if before == 0 {
		sc.touched = append(sc.touched, slot)
	}
	return true
}

// Insert records that e now holds the blocks of hashes, keeping at most
// capacity blocks for e (the least recently used go first). Blocks are
// inserted last to first, so block 0 ends up most recent and an endpoint's
// LRU evicts the tails of prompts before their heads, which keeps leading
// matches intact, as model servers' own prefix caches do.
//
// The blocks are grouped by shard and each shard is locked once; since LRU
// order is kept per shard, the order across shards does not matter.
func (ix *Index) Insert(e *endpoint.Endpoint, hashes []uint64, capacity int) {
	if e == nil || len(hashes) == 0 {
		return
	}
	slot, ok := ix.slotFor(e)
	if !ok {
		return
	}
	c := min(max(capacity, 1), 1<<30)
	per := int32((c + len(ix.shards) - 1) / len(ix.shards))
	sc := ix.scratch.Get().(*matchScratch)
	starts, order := sc.groupByShard(ix, hashes)
	for si, s := range ix.shards {
		if starts[si] == starts[si+1] {
			continue
		}
		s.mu.Lock()
		for _, i := range order[starts[si]:starts[si+1]] {
			s.insert(slot, fixHash(hashes[i]), per)
		}
		s.mu.Unlock()
	}
	ix.scratch.Put(sc)
}

// groupByShard counting-sorts the block indices of hashes by shard, each
// shard's blocks last to first: shard s's blocks are
// order[starts[s]:starts[s+1]].
func (sc *matchScratch) groupByShard(ix *Index, hashes []uint64) (starts, order []int32) {
	n := len(ix.shards)
	sc.starts = slices.Grow(sc.starts[:0], 2*n+1)[:2*n+1]
	clear(sc.starts)
	starts, next := sc.starts[:n+1], sc.starts[n+1:]
	for _, h := range hashes {
		starts[ix.shardIndex(fixHash(h))+1]++
	}
	for i := range n {
		starts[i+1] += starts[i]
	}
	copy(next, starts[:n])
	sc.order = slices.Grow(sc.order[:0], len(hashes))[:len(hashes)]
	for i := len(hashes) - 1; i >= 0; i-- {
		si := ix.shardIndex(fixHash(hashes[i]))
		sc.order[next[si]] = int32(i)
		next[si]++
	}
	return starts, sc.order
}

// Len returns the number of cached (endpoint, block) entries.
func (ix *Index) Len() int {
	n := 0
	for _, s := range ix.shards {
		n += s.len()
	}
	return n
}

// Endpoints returns how many endpoints (addresses) the index tracks.
func (ix *Index) Endpoints() int { return len(ix.slots.Load().byAddr) }
