package engine

import "github.com/openepp/openepp/pkg/indexlist"

// kvCache is a paged KV cache with automatic prefix caching in the manner of
// vLLM v1's block pool:
//   - a full block computed for a prompt is published under a chained hash
//     (its parent's hash plus its own tokens), so a later request whose
//     prompt starts with the same tokens can reuse it;
//   - blocks are reference counted; a block nobody references goes to the
//     tail of a free queue but keeps its hash, so it can still be hit;
//   - allocation takes never-used blocks first, then the head of the free
//     queue, i.e. the least recently freed block, dropping its hash (LRU
//     eviction of unreferenced cached blocks).
//
// Blocks are materialized lazily, so a preset with ten million blocks costs
// memory only for the blocks actually touched.
type kvCache struct {
	numBlocks int
	blockSize int

	// fresh is the number of blocks ever handed out; blocks with an ID ≥
	// fresh are free and empty and are not in the free queue.
	fresh int32

	ref  []int32  // reference count per block
	hash []uint64 // published hash per block; 0 means none
	// freeQueue holds the unreferenced blocks handed out before, oldest
	// release first: the next to be reused (and lose its cached hash).
	freeQueue indexlist.List

	cached map[uint64]int32 // published hash → block

	evictions uint64 // cached blocks whose hash was dropped on reuse

	// With recordEvictions set (a KV event listener is attached), evict
	// appends each dropped hash to evicted for the engine to report.
	recordEvictions bool
	evicted         []uint64
}

func newKVCache(numBlocks, blockSize int) *kvCache {
	return &kvCache{
		numBlocks: numBlocks, blockSize: blockSize,
		cached: make(map[uint64]int32),
	}
}

// free is the number of blocks an allocation may take: never-used blocks
// plus unreferenced ones, cached or not.
func (c *kvCache) free() int { return c.numBlocks - int(c.fresh) + c.freeQueue.Len() }

// used is the number of referenced blocks, the numerator of vLLM's
// kv_cache_usage_perc.
func (c *kvCache) used() int { return c.numBlocks - c.free() }

// blocksFor returns how many blocks hold n tokens.
func (c *kvCache) blocksFor(n int) int { return (n + c.blockSize - 1) / c.blockSize }

// lookup returns how many leading blocks of hashes are cached (at most
// limit) and how many of those are currently unreferenced, i.e. would leave
// the free pool if taken.
func (c *kvCache) lookup(hashes []uint64, limit int) (hits, idle int) {
	for _, h := range hashes[:min(limit, len(hashes))] {
		b, ok := c.cached[h]
		if !ok {
			break
		}
		hits++
		if c.ref[b] == 0 {
			idle++
		}
	}
	return hits, idle
}

// acquireHits references the first n cached blocks of hashes (as found by
// lookup) and appends their IDs to dst.
func (c *kvCache) acquireHits(dst []int32, hashes []uint64, n int) []int32 {
	for _, h := range hashes[:n] {
		b := c.cached[h]
		if c.ref[b] == 0 {
			c.freeQueue.Remove(b)
		}
		c.ref[b]++
		dst = append(dst, b)
	}
	return dst
}

// allocate appends n newly referenced blocks to dst; the caller has checked
// free() ≥ n.
func (c *kvCache) allocate(dst []int32, n int) []int32 {
	for range n {
		var b int32
		if int(c.fresh) < c.numBlocks {
			b = c.fresh
			c.fresh++
			c.ref = append(c.ref, 0)
			c.hash = append(c.hash, 0)
			c.freeQueue.Grow(int(c.fresh))
		} else {
			b = c.freeQueue.Front()
			c.freeQueue.Remove(b)
			c.evict(b)
		}
		c.ref[b] = 1
		dst = append(dst, b)
	}
	return dst
}

// release drops one reference from each block, last block first, so that
// when a request ends its tail blocks are evicted before its prefix blocks
// (which other requests are more likely to share).
func (c *kvCache) release(blocks []int32) {
	for i := len(blocks) - 1; i >= 0; i-- {
		b := blocks[i]
		c.ref[b]--
		if c.ref[b] == 0 {
			c.freeQueue.PushBack(b)
		}
	}
}

// publish records block b as holding the block with hash h, unless another
// block already holds it (two requests computed the same prefix at once; the
// first one wins, the duplicate stays unpublished). It reports whether h
// became cached.
func (c *kvCache) publish(b int32, h uint64) bool {
	if c.hash[b] != 0 {
		return false
	}
	if _, dup := c.cached[h]; dup {
		return false
	}
	c.hash[b] = h
	c.cached[h] = b
	return true
}

// evict drops the published hash of block b.
func (c *kvCache) evict(b int32) {
	h := c.hash[b]
	if h == 0 {
		return
	}
	if c.cached[h] == b {
		delete(c.cached, h)
		if c.recordEvictions {
			c.evicted = append(c.evicted, h)
		}
	}
	c.hash[b] = 0
	c.evictions++
}

// Hashing: 64-bit FNV-1a over 32-bit token IDs, chained through the parent
// block's hash and finished with a SplitMix64 mix so that consecutive blocks
// spread over the map. Hash 0 is reserved for "no hash".
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	if h == 0 {
		h = 1
	}
	return h
}

// rootHash is the parent hash of a prompt's first block; it folds in the
// model and adapter names, so blocks of different adapters never match.
func rootHash(model, lora string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(model); i++ {
		h = (h ^ uint64(model[i])) * fnvPrime64
	}
	h = (h ^ 0xff) * fnvPrime64
	for i := 0; i < len(lora); i++ {
		h = (h ^ uint64(lora[i])) * fnvPrime64
	}
	return mix64(h)
}

// saltRoot folds a request's cache_salt into its root hash, so that its
// first block, and through the chain every later one, differs from those
// of an unsalted prompt and of any other salt. vLLM puts the salt among
// the first block's extra keys instead, to the same effect. No salt keeps
// the root as it is, so unsalted prompts hash as they always did.
func saltRoot(root uint64, salt string) uint64 {
	if salt == "" {
		return root
	}
	h := (root ^ 0xfe) * fnvPrime64 // a separator rootHash never uses
	for i := 0; i < len(salt); i++ {
		h = (h ^ uint64(salt[i])) * fnvPrime64
	}
	return mix64(h)
}

// appendBlockHashes appends the chained hashes of every full block of
// tokens to dst.
func appendBlockHashes(dst []uint64, root uint64, tokens []uint32, blockSize int) []uint64 {
	parent := root
	for start := 0; start+blockSize <= len(tokens); start += blockSize {
		h := parent
		for _, t := range tokens[start : start+blockSize] {
			h = (h ^ uint64(t)) * fnvPrime64
		}
		parent = mix64(h)
		dst = append(dst, parent)
	}
	return dst
}
