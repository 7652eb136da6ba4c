package engine

import (
	"slices"
	"time"
)

// plan summarizes an iteration's work for its duration.
type plan struct {
	prefillTokens int
	decodeSeqs    int
	newPrefill    bool
	loraLoads     int // adapters read from disk into the host cache
	loraActs      int // adapters copied from the host cache into a GPU slot
	encodeTokens  int // placeholder tokens the encoder processes
}

// startStep schedules the next iteration at start, or marks the engine idle
// when there is nothing to run.
func (e *Engine) startStep(start time.Duration) {
	start = max(start, e.lora.busyUntil) // an adapter load holds the loop
	e.stamp++
	e.stepStart = start
	p := e.schedule()
	if len(e.batch) == 0 {
		e.busy = false
		e.stalled = e.numWaiting > len(e.transfers)
		return
	}
	d := e.duration(p)
	e.lora.load.add(p.loraLoads, e.cfg.LoRALoadDelay)
	e.lora.activate.add(p.loraActs, e.cfg.LoRAActivateDelay)
	e.busy = true
	e.stepEnd = start + d
	e.stats.busy += d
	e.stats.iterations++
	for _, b := range e.batch {
		e.seqs[b.slot].inStep = true
	}
}

// schedule fills e.batch the way vLLM v1's scheduler does: running
// sequences first, then waiting ones in order.
func (e *Engine) schedule() plan {
	var p plan
	e.batch = e.batch[:0]
	budget := e.cfg.MaxNumBatchedTokens
	preempted := false
	for i := 0; i < len(e.running) && budget > 0; i++ {
		slot := e.running[i]
		s := &e.seqs[slot]
		n := min(s.total()-s.computed, budget)
		ok, victims := e.reserve(slot, s.computed+n)
		preempted = preempted || victims
		if !ok {
			break // slot preempted itself; it was the tail
		}
		e.addToBatch(slot, n, &p)
		budget -= n
	}
	if !preempted {
		e.admitWaiting(budget, &p)
	}
	return p
}

// admitWaiting starts waiting requests, in queue order, while budget,
// sequence slots and KV blocks last. A request whose adapter cannot get a
// slot is skipped, not blocking those behind it; one that does not fit in
// the KV cache stops admission (under either policy).
func (e *Engine) admitWaiting(budget int, p *plan) {
	for budget > 0 && len(e.running) < e.cfg.MaxNumSeqs && e.waiting.len() > 0 {
		slot := e.waiting.popFront()
		s := &e.seqs[slot]
		s.inQueue = false
		if s.state == stateCancelled {
			e.releaseIfIdle(slot)
			continue
		}
		ok, stop := e.admit(slot, p)
		if stop {
			e.waiting.pushFront(slot, s.rank)
			s.inQueue = true
			break
		}
		if !ok {
			e.skipped = append(e.skipped, slot)
			continue
		}
		if s.state == stateTransferring {
			continue // holds its blocks; joins a batch when its KV lands
		}
		n := min(s.total()-s.computed, budget)
		e.addToBatch(slot, n, p)
		budget -= n
	}
	for i := len(e.skipped) - 1; i >= 0; i-- {
		s := &e.seqs[e.skipped[i]]
		e.waiting.pushFront(e.skipped[i], s.rank)
		s.inQueue = true
	}
	e.skipped = e.skipped[:0]
}

// admit moves a waiting request to running: it takes the cached prefix,
// allocates blocks for the rest of its known tokens and acquires its
// adapter. A RemotePrefill request starts its KV transfer instead, and one
// whose KV has landed just takes a seat. stop means the KV cache cannot
// hold it; !ok && !stop means its adapter has no slot.
func (e *Engine) admit(slot int32, p *plan) (ok, stop bool) {
	s := &e.seqs[slot]
	if s.landed {
		s.landed = false
		e.seat(slot)
		p.newPrefill = p.newPrefill || s.computed < s.prompt-1
		return true, false
	}
	total := s.total()
	// At least one token is always computed, so the last block of a fully
	// cached prompt is recomputed (as vLLM does) to produce logits.
	hits, idle := e.kv.lookup(s.hashes, (total-1)/e.cfg.BlockSize)
	need := e.kv.blocksFor(total) - hits
	if need+idle > e.kv.free() {
		return false, true
	}
	if s.lora != noLoRA {
		granted, loaded, activated := e.lora.acquire(s.lora, e.stamp)
		if !granted {
			return false, false
		}
		if loaded {
			p.loraLoads++
		}
		if activated {
			p.loraActs++
		}
		e.lora.waiting[s.lora]--
		e.lora.running[s.lora]++
	}
	s.blocks = e.kv.acquireHits(s.blocks[:0], s.hashes, hits)
	s.blocks = e.allocate(s.blocks, need)
	s.computed = hits * e.cfg.BlockSize
	s.published = hits
	e.stats.prefixQueries += uint64(total)
	e.stats.prefixHits += uint64(s.computed)
	if s.remote || s.pullTo > s.computed {
		e.startTransfer(slot)
		return true, false
	}
	if !s.started {
		s.started = true
		s.cached = s.computed
	}
	e.seat(slot)
	p.newPrefill = true
	return true, false
}

// seat makes a waiting request running: last under FCFS, in rank order
// under Priority, so that the tail is the policy's preemption victim.
func (e *Engine) seat(slot int32) {
	s := &e.seqs[slot]
	s.state = stateRunning
	e.numWaiting--
	if !e.waiting.byRank {
		e.running = append(e.running, slot)
		return
	}
	at, _ := slices.BinarySearchFunc(e.running, s.rank, func(x int32, r rank) int {
		return e.seqs[x].rank.compare(r)
	})
	e.running = slices.Insert(e.running, at, slot)
}

// reserve makes sure slot has blocks for tokens tokens, preempting running
// sequences from the tail while the cache is short (the most recently
// started under FCFS, the highest ranked under Priority). The running loop
// serves sequences from the head, so a victim never has a share of this
// iteration yet. ok is false when slot itself had to be preempted;
// preempted reports whether anyone was.
func (e *Engine) reserve(slot int32, tokens int) (ok, preempted bool) {
	s := &e.seqs[slot]
	need := e.kv.blocksFor(tokens) - len(s.blocks)
	for need > e.kv.free() {
		victim := e.running[len(e.running)-1]
		e.preempt(victim)
		preempted = true
		if victim == slot {
			return false, true
		}
	}
	if need > 0 {
		s.blocks = e.allocate(s.blocks, need)
	}
	return true, preempted
}

// preempt returns a running sequence to the queue (its head under FCFS, its
// rank's place under Priority), freeing its blocks (recompute preemption).
func (e *Engine) preempt(slot int32) {
	s := &e.seqs[slot]
	e.removeRunning(slot)
	e.kv.release(s.blocks)
	s.blocks = s.blocks[:0]
	s.computed, s.published, s.mediaNext = 0, 0, 0
	s.state = stateWaiting
	s.inQueue = true
	e.waiting.pushFront(slot, s.rank)
	e.numWaiting++
	if s.lora != noLoRA {
		e.lora.waiting[s.lora]++
	}
	e.stats.preemptions++
}

func (e *Engine) addToBatch(slot int32, n int, p *plan) {
	s := &e.seqs[slot]
	if n == 1 && s.gen > 0 && s.computed == s.total()-1 {
		p.decodeSeqs++
	} else {
		p.prefillTokens += n
	}
	if s.mediaNext < len(s.media) {
		p.encodeTokens += e.encodeFor(s, n)
	}
	e.batch = append(e.batch, entry{slot: slot, n: int32(n)})
}

// duration prices an iteration.
func (e *Engine) duration(p plan) time.Duration {
	c := &e.cfg
	d := c.StepOverhead + time.Duration(p.prefillTokens)*c.PrefillPerToken +
		time.Duration(p.decodeSeqs)*c.DecodePerSeq
	if p.newPrefill {
		d += c.PrefillOverhead
	}
	f := 1.0
	if c.LoadFactor > 1 && c.MaxNumSeqs > 1 {
		f += (c.LoadFactor - 1) * float64(len(e.batch)-1) / float64(c.MaxNumSeqs-1)
	}
	if e.rng != nil {
		f *= 1 + min(max(e.rng.NormFloat64()*c.Jitter, -0.7), 0.7)
	}
	if f != 1 {
		d = time.Duration(float64(d) * f)
	}
	d += time.Duration(p.loraLoads)*c.LoRALoadDelay + time.Duration(p.loraActs)*c.LoRAActivateDelay +
		c.encodeCost(p.encodeTokens)
	return max(d, minStep)
}

// finishStep applies the iteration in flight: computed tokens advance,
// completed prompt blocks are published to the prefix cache, and every
// sequence that caught up emits a token.
func (e *Engine) finishStep() {
	e.busy = false
	for _, b := range e.batch {
		s := &e.seqs[b.slot]
		s.inStep = false
		if s.state != stateRunning {
			e.releaseIfIdle(b.slot) // cancelled while in flight
			continue
		}
		s.computed += int(b.n)
		e.publish(s)
		if s.computed < s.total() {
			continue
		}
		if s.gen == 0 {
			e.stats.promptTokens += uint64(s.prompt)
		}
		s.gen++
		e.stats.generationTokens++
		done := s.gen >= s.maxTokens
		e.events = append(e.events, Event{ID: s.id, Time: e.stepEnd, Token: s.gen, Cached: s.cached, Done: done})
		if done {
			e.finish(b.slot)
		}
	}
	e.batch = e.batch[:0]
}

func (e *Engine) publish(s *seq) {
	full := min(s.computed/e.cfg.BlockSize, len(s.hashes))
	if e.kvEvents != nil {
		e.publishReporting(s, full)
	} else {
		for j := s.published; j < full; j++ {
			e.kv.publish(s.blocks[j], s.hashes[j])
		}
	}
	s.published = max(s.published, full)
}

func (e *Engine) finish(slot int32) {
	s := &e.seqs[slot]
	e.removeRunning(slot)
	e.kv.release(s.blocks)
	s.blocks = s.blocks[:0]
	delete(e.byID, s.id)
	s.state = stateCancelled // terminal; releaseIfIdle frees the slot
	e.stats.finished++
	e.releaseIfIdle(slot)
}
