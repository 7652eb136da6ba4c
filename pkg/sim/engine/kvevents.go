package engine

// KV events: the prefix-cache changes vLLM publishes for KV-cache-aware
// routers (vllm/distributed/kv_events.py), reported to a listener so the
// simulator can feed an exact-index router the same stream a real server
// would. BlocksStored stands for vLLM's BlockStored, BlocksRemoved for
// BlockRemoved and AllBlocksCleared for AllBlocksCleared; the medium is
// always the GPU. Only prompt blocks are ever cached (the engine has no
// output token IDs), so only prompt blocks appear.

// KVEventListener receives the engine's prefix-cache changes in the order
// they happen. The engine calls it synchronously from Step, never from
// Submit or Cancel, so it runs on whatever goroutine steps the engine and
// must not call back into the engine. Slices passed to it belong to the
// engine and may be reused once the call returns: a listener that keeps
// them must copy them.
type KVEventListener interface {
	// BlocksStored reports consecutive full blocks of one sequence that
	// became cached in one iteration: hashes are their chained hashes (the
	// engine's own, each folding in every token up to the block, the
	// model, the adapter and the cache salt), tokens their
	// len(hashes)·blockSize tokens concatenated. parent is the hash of the
	// sequence's block before the first one; hasParent is false at the
	// start of a prompt. lora names the adapter, "" for the base model.
	// salt is the request's cache_salt when the run starts the prompt
	// (hasParent false), since the salt keys the prompt's first block only
	// (later blocks inherit it through their parent); "" otherwise and for
	// an unsalted request.
	BlocksStored(parent uint64, hasParent bool, hashes []uint64, tokens []uint32, blockSize int, lora, salt string)
	// BlocksRemoved reports cached blocks whose hash was dropped because
	// their block was reused for other data (LRU eviction); one call covers
	// every eviction of one allocation.
	BlocksRemoved(hashes []uint64)
	// AllBlocksCleared reports that the whole prefix cache was dropped.
	// The engine has no cache reset today, so it is never called; it is
	// part of the contract so listeners handle vLLM's full event set.
	AllBlocksCleared()
}

// SetKVEventListener makes the engine report its prefix-cache changes to l;
// nil stops reporting. Without a listener, reporting costs nothing: the
// engine keeps no tokens and builds no events. A listener must be set
// before the first Submit, so that it sees the cache from empty and every
// sequence keeps the tokens BlocksStored needs; setting one later panics.
func (e *Engine) SetKVEventListener(l KVEventListener) {
	if l != nil && len(e.seqs) > 0 {
		panic("engine: SetKVEventListener after the first Submit")
	}
	e.kvEvents = l
	e.kv.recordEvictions = l != nil
}

// allocate is kvCache.allocate that reports the cached blocks it evicted.
func (e *Engine) allocate(dst []int32, n int) []int32 {
	dst = e.kv.allocate(dst, n)
	if len(e.kv.evicted) > 0 {
		e.kvEvents.BlocksRemoved(e.kv.evicted)
		e.kv.evicted = e.kv.evicted[:0]
	}
	return dst
}

// publishReporting publishes s's blocks from s.published up to full and
// reports each run of blocks that became cached as one BlocksStored. A
// block another sequence published first (the same prefix computed
// concurrently) is not stored again, so it ends a run.
func (e *Engine) publishReporting(s *seq, full int) {
	run := -1 // first block of the run being built, if any
	for j := s.published; j < full; j++ {
		if e.kv.publish(s.blocks[j], s.hashes[j]) {
			if run < 0 {
				run = j
			}
			continue
		}
		if run >= 0 {
			e.reportStored(s, run, j)
			run = -1
		}
	}
	if run >= 0 {
		e.reportStored(s, run, full)
	}
}

// reportStored reports blocks [from, to) of s as stored.
func (e *Engine) reportStored(s *seq, from, to int) {
	var parent uint64
	if from > 0 {
		parent = s.hashes[from-1]
	}
	var lora, salt string
	if s.lora != noLoRA {
		lora = e.lora.names[s.lora]
	}
	if from == 0 {
		salt = s.salt
	}
	bs := e.cfg.BlockSize
	e.kvEvents.BlocksStored(parent, from > 0, s.hashes[from:to], s.tokens[from*bs:to*bs], bs, lora, salt)
}
