package engine

import (
	"cmp"
	"slices"
	"time"
)

// KV transfer for prefill/decode disaggregation, after vLLM's NixlConnector
// on the decode side. A RemotePrefill request is admitted like any other
// (same queue order, same KV-cache check, local prefix-cache hits taken), but
// instead of computing its prompt it pulls the uncached rest of the prompt's
// KV from the prefiller:
//
//	transfer = KVTransferOverhead + uncached prompt tokens · KVTransferPerToken
//
// While pulling it holds its blocks but no seat in the batch, and other
// requests keep running (vLLM's WAITING_FOR_REMOTE_KVS; it still counts as
// waiting). When the KV lands the request returns to the queue (its head
// under FCFS, its rank's place under Priority) with every prompt token but
// the last computed: its first iteration computes that one token and
// samples the first output token, as vLLM does. So its TTFT is queueing + transfer + one iteration, never a prefill. It
// reports prompt − 1 cached tokens, as vLLM does. The pull happens once: a
// request preempted later recomputes locally.
//
// A P2P pull (Request.PullTokens, after vLLM's OffloadingConnector pulling
// from a peer's tier) is the same pull cut short: the tokens from the local
// hit to PullTokens, at the same price, after which the request computes
// the rest of its prompt as usual (PrefillOverhead included). It reports
// its local hit plus the pulled tokens as cached, as vLLM counts external
// hits; no pull starts when the local hit already covers PullTokens.

// startTransfer begins pulling the KV of slot's prompt beyond its local
// prefix-cache hit (s.computed tokens), at the start of the iteration being
// scheduled.
func (e *Engine) startTransfer(slot int32) {
	s := &e.seqs[slot]
	if s.remote {
		s.pullTo = s.prompt - 1
		e.stats.kvTransfers++
		e.stats.kvTransferTokens += uint64(s.prompt - s.computed)
	} else {
		e.stats.p2pPulls++
		e.stats.p2pPullTokens += uint64(s.pullTo - s.computed)
	}
	n := max(s.prompt-s.computed, 0)
	if !s.remote {
		n = s.pullTo - s.computed
	}
	s.state = stateTransferring
	perToken := e.cfg.KVTransferPerToken
	if s.perToken > 0 {
		perToken = s.perToken
	}
	s.readyAt = e.stepStart + e.cfg.KVTransferOverhead + time.Duration(n)*perToken
	s.started = true
	s.cached = s.pullTo
	e.transfers = append(e.transfers, slot)
}

// firstLanding is the earliest end of a transfer in flight.
func (e *Engine) firstLanding() time.Duration {
	t := e.seqs[e.transfers[0]].readyAt
	for _, slot := range e.transfers[1:] {
		t = min(t, e.seqs[slot].readyAt)
	}
	return t
}

// land moves the transfers that ended by t back to the waiting queue (its
// head under FCFS, earliest first with ties in start order; their ranks'
// places under Priority), each with its prompt but the last token
// computed.
func (e *Engine) land(t time.Duration) {
	var landed []int32
	kept := e.transfers[:0]
	for _, slot := range e.transfers {
		if e.seqs[slot].readyAt <= t {
			landed = append(landed, slot)
		} else {
			kept = append(kept, slot)
		}
	}
	e.transfers = kept
	if len(landed) == 0 {
		return
	}
	slices.SortStableFunc(landed, func(a, b int32) int {
		return cmp.Compare(e.seqs[a].readyAt, e.seqs[b].readyAt)
	})
	for i := len(landed) - 1; i >= 0; i-- {
		s := &e.seqs[landed[i]]
		s.state, s.landed, s.remote, s.inQueue = stateWaiting, true, false, true
		s.computed, s.pullTo = s.pullTo, 0
		e.waiting.pushFront(landed[i], s.rank)
	}
	e.stalled = false
}

// dropWaiting forgets a waiting or transferring request: it leaves the
// waiting count and gives back what it holds (blocks and an adapter seat
// once admitted, a waiting adapter count before).
func (e *Engine) dropWaiting(slot int32) {
	s := &e.seqs[slot]
	e.numWaiting--
	if s.state == stateTransferring {
		e.transfers = slices.DeleteFunc(e.transfers, func(x int32) bool { return x == slot })
	}
	held := s.state == stateTransferring || s.landed
	s.landed = false
	switch {
	case held:
		e.kv.release(s.blocks)
		s.blocks = s.blocks[:0]
		if s.lora != noLoRA {
			e.lora.running[s.lora]--
		}
	case s.lora != noLoRA:
		e.lora.waiting[s.lora]--
	}
}
