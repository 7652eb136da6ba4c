// Package engine models one vLLM-like model server at the granularity of
// engine iterations, deterministically and without wall-clock time: the
// caller passes "now" in and asks when the next thing happens, so the same
// code serves a real-time HTTP simulator and a discrete-event fleet
// simulation driving thousands of engines.
//
// One iteration lasts
//
//	(β0 + β1·prefill tokens + β2·decoding seqs + [new prefill]·PrefillOverhead)
//	  · loadFactor(seqs) · jitter + adapter loads·LoRALoadDelay
//	  + adapter activations·LoRAActivateDelay
//	  + encoded placeholder tokens·EncodePerToken
//
// and produces one output token for every sequence whose known tokens are
// all computed by its end. Scheduling follows vLLM v1: running sequences
// first (one token each when decoding, a chunk of their prompt when
// prefilling), then waiting requests in queue order while fewer than
// MaxNumSeqs run, the MaxNumBatchedTokens budget lasts and the KV cache can
// hold the whole prompt. A decode that needs a block when none is free
// preempts a running sequence, which returns to the queue and later
// recomputes its prompt and the tokens it had produced.
//
// Config.Policy is vLLM's --scheduling-policy. Under FCFS (the default)
// the queue is first come first served, Request.Priority is ignored, and
// the victim is the most recently started sequence, put back at the head
// of the queue. Under Priority the queue is ordered by (Request.Priority,
// arrival), lower first; a preempted, skipped or landed request keeps its
// place in that order, and the victim is the running sequence with the
// highest (Priority, arrival), as in vLLM. As there, a request that cannot
// get blocks stops admission and never preempts a running one. One
// simplification: the running sequences are kept sorted by (Priority,
// arrival), so the victim is always the last of them and never one already
// given a share of this iteration; vLLM keeps them in start order, so when
// the token budget runs short (long prefills) it serves an earlier-started
// less urgent sequence before a later-started more urgent one, where this
// engine serves the more urgent one first.
//
// A RemotePrefill request (P/D disaggregation) pulls its prompt's KV from
// a prefiller beside the batch instead of computing it (transfer.go). A
// prompt's multimodal items are encoded, or found in the encoder cache, by
// the iteration that first computes their placeholders (encoder.go).
//
// An Engine is not safe for concurrent use; it starts no goroutines and
// never sleeps. A KVEventListener hears its prefix-cache changes, as vLLM's
// KV events report them (kvevents.go).
package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Errors returned by Submit, wrapped with the request ID.
var (
	// ErrInvalidRequest: empty prompt, max tokens < 1, duplicate ID, or an
	// adapter on an engine with no LoRA slots.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrTooLong: prompt plus output exceed MaxModelLen or the KV cache.
	ErrTooLong = errors.New("request too long")
	// ErrQueueFull: the waiting queue holds MaxWaiting requests.
	ErrQueueFull = errors.New("waiting queue full")
)

// minStep keeps virtual time moving even when every cost is zero.
const minStep = time.Microsecond

// Request is one generation request.
type Request struct {
	// ID identifies the request in events and Cancel; unique among the
	// requests the engine currently holds.
	ID uint64
	// Tokens is the prompt. The engine reads it during Submit only.
	Tokens []uint32
	// MaxTokens is the number of tokens to generate (the simulator always
	// generates exactly this many).
	MaxTokens int
	// LoRA names the adapter; "" is the base model.
	LoRA string
	// CacheSalt is vLLM's cache_salt: requests share prefix-cache blocks
	// only when their salts are equal ("" is no salt), so a tenant's
	// prompts cannot be probed for by timing another's.
	CacheSalt string
	// RemotePrefill marks a P/D decode request (kv_transfer_params
	// do_remote_prefill): a prefill server computed the prompt's KV, and
	// this engine pulls it instead of computing it. See transfer.go.
	RemotePrefill bool
	// PullTokens is a P2P KV pull (llm-d's p2p-source-producer names a
	// peer in x-kv-cache-source-host-port; its routing sidecar asks the
	// engine to pull from it): a peer holds the KV of the prompt's first
	// PullTokens tokens, so the engine pulls what its own prefix cache
	// lacks of them and computes only the rest. 0 pulls nothing; it is cut
	// to prompt − 1 (one token is always computed) and ignored with
	// RemotePrefill, which pulls everything. See transfer.go.
	PullTokens int
	// TransferPerToken, when positive, prices this request's pull (P/D or
	// P2P) instead of Config.KVTransferPerToken: a transfer across nodes
	// costs more than one over NVLink.
	TransferPerToken time.Duration
	// Media are the prompt's multimodal items, in prompt order; see
	// encoder.go.
	Media []Media
	// Priority is vLLM's request priority: under the Priority policy a
	// lower value starts earlier and is preempted later; ties go by
	// arrival. FCFS ignores it.
	Priority int
}

// Event reports one output token.
type Event struct {
	ID uint64
	// Time is the end of the iteration that produced the token.
	Time time.Duration
	// Token is the 1-based index of the token; 1 marks time to first token.
	Token int
	// Cached is the number of prompt tokens served from the prefix cache
	// when the request was first scheduled (usage.prompt_tokens_details);
	// for a RemotePrefill request, every prompt token but the last, as
	// vLLM counts pulled tokens as computed.
	Cached int
	// Done marks the request's last token; the engine has forgotten it.
	Done bool
}

type seqState uint8

const (
	stateFree seqState = iota
	stateWaiting
	stateRunning
	stateTransferring // blocks held, KV being pulled from a prefiller
	stateCancelled
)

// seq is the engine's state for one request, kept in a reusable slot.
type seq struct {
	id        uint64
	prompt    int
	maxTokens int
	gen       int // tokens produced
	computed  int // tokens whose KV is computed
	cached    int // prefix-cache hit at first scheduling, in tokens
	published int // leading blocks published to the prefix cache
	lora      int32
	salt      string // cache_salt, reported with the prompt's first blocks
	rank      rank   // queue order under the Priority policy
	state     seqState
	inQueue   bool          // slot is in the waiting deque (possibly cancelled)
	inStep    bool          // slot is in the iteration in flight
	started   bool          // scheduled at least once
	remote    bool          // prompt KV still to be pulled from a prefiller
	pullTo    int           // a P2P pull's end (tokens), while still to be pulled
	perToken  time.Duration // the pull's price per token
	landed    bool          // pulled KV arrived; blocks held, waiting for a seat
	readyAt   time.Duration
	hashes    []uint64
	blocks    []int32
	// tokens are the prompt's full-block tokens, kept only while a KV
	// event listener needs them for BlocksStored.
	tokens []uint32
	// media are the prompt's items; those before mediaNext are handled
	// (encoded, found in the encoder cache or covered by the prefix cache).
	media     []Media
	mediaNext int
}

func (s *seq) total() int { return s.prompt + s.gen }

// entry is one sequence's share of an iteration.
type entry struct {
	slot int32
	n    int32
}

// Engine is one simulated model server.
type Engine struct {
	cfg      Config
	kv       *kvCache
	lora     *adapters
	baseRoot uint64
	rng      *rand.Rand // nil without jitter

	seqs       []seq
	freeSlots  []int32
	byID       map[uint64]int32
	waiting    waitQueue
	numWaiting int
	arrivals   uint64 // requests submitted, for ranks
	// running is in start order (FCFS) or rank order (Priority); either
	// way the tail is preempted first.
	running []int32

	// transfers are the slots pulling KV, in start order; stalled means
	// the last scheduling pass started nothing although requests wait
	// (their blocks are held by transfers), so the next event is a landing.
	transfers []int32
	stalled   bool

	now       time.Duration
	busy      bool
	stepStart time.Duration
	stepEnd   time.Duration
	stamp     uint64 // iteration counter, for adapter LRU
	batch     []entry
	skipped   []int32
	events    []Event
	scratch   []uint64

	kvEvents KVEventListener // nil: no prefix-cache events
	enc      *encoderCache

	stats counters
}

type counters struct {
	promptTokens, generationTokens uint64
	prefixQueries, prefixHits      uint64
	preemptions, finished          uint64
	cancelled, iterations          uint64
	kvTransfers, kvTransferTokens  uint64
	p2pPulls, p2pPullTokens        uint64
	busy                           time.Duration
}

// New returns an idle engine at time 0.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	e := &Engine{
		cfg:      cfg,
		kv:       newKVCache(cfg.NumBlocks, cfg.BlockSize),
		lora:     newAdapters(cfg),
		baseRoot: rootHash(cfg.Model, ""),
		byID:     make(map[uint64]int32),
		running:  make([]int32, 0, cfg.MaxNumSeqs),
		batch:    make([]entry, 0, cfg.MaxNumSeqs),
		events:   make([]Event, 0, cfg.MaxNumSeqs),
		enc:      newEncoderCache(cfg.EncoderCacheTokens),
		waiting:  waitQueue{byRank: cfg.Policy == Priority},
	}
	if cfg.Jitter > 0 {
		e.rng = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	}
	return e, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Submit queues req at time now. It fails, leaving the engine unchanged,
// for a request that could never run or when the queue is full. An idle
// engine becomes due at now, so event loops must re-read NextEventTime.
func (e *Engine) Submit(req Request, now time.Duration) error {
	if err := e.check(req); err != nil {
		return fmt.Errorf("submit request %d: %w", req.ID, err)
	}
	e.advance(now)
	slot := e.newSlot()
	s := &e.seqs[slot]
	lora, root := int32(noLoRA), e.baseRoot
	if req.LoRA != "" {
		lora = e.lora.intern(req.LoRA, e.cfg.Model)
		root = e.lora.roots[lora]
		e.lora.waiting[lora]++
	}
	root = saltRoot(root, req.CacheSalt)
	e.arrivals++
	*s = seq{
		id: req.ID, prompt: len(req.Tokens), maxTokens: req.MaxTokens, lora: lora, salt: req.CacheSalt,
		rank:  rank{priority: req.Priority, arrival: e.arrivals},
		state: stateWaiting, inQueue: true, remote: req.RemotePrefill,
		pullTo: min(req.PullTokens, len(req.Tokens)-1), perToken: req.TransferPerToken,
		hashes: appendBlockHashes(s.hashes[:0], root, req.Tokens, e.cfg.BlockSize),
		blocks: s.blocks[:0], tokens: s.tokens[:0], media: copyMedia(s.media, req.Media),
	}
	if e.kvEvents != nil {
		s.tokens = append(s.tokens, req.Tokens[:len(s.hashes)*e.cfg.BlockSize]...)
	}
	e.byID[req.ID] = slot
	e.waiting.pushBack(slot, s.rank)
	e.numWaiting++
	e.stalled = false
	return nil
}

func (e *Engine) check(req Request) error {
	switch {
	case len(req.Tokens) == 0:
		return fmt.Errorf("empty prompt: %w", ErrInvalidRequest)
	case req.MaxTokens < 1:
		return fmt.Errorf("max tokens %d < 1: %w", req.MaxTokens, ErrInvalidRequest)
	case req.LoRA != "" && e.cfg.MaxLoRAs == 0:
		return fmt.Errorf("adapter %q on an engine without LoRA slots: %w", req.LoRA, ErrInvalidRequest)
	case req.LoRA != "" && e.lora.slotless(req.LoRA):
		return fmt.Errorf("adapter %q: pinned adapters hold all %d GPU slots: %w", req.LoRA, e.cfg.MaxLoRAs, ErrInvalidRequest)
	case req.TransferPerToken < 0 || req.PullTokens < 0:
		return fmt.Errorf("negative pull (%d tokens at %v a token): %w", req.PullTokens, req.TransferPerToken, ErrInvalidRequest)
	}
	if err := checkMedia(req); err != nil {
		return err
	}
	if _, dup := e.byID[req.ID]; dup {
		return fmt.Errorf("duplicate ID: %w", ErrInvalidRequest)
	}
	total := len(req.Tokens) + req.MaxTokens
	if e.cfg.MaxModelLen > 0 && total > e.cfg.MaxModelLen {
		return fmt.Errorf("%d prompt + %d output tokens > max model len %d: %w",
			len(req.Tokens), req.MaxTokens, e.cfg.MaxModelLen, ErrTooLong)
	}
	if e.kv.blocksFor(total) > e.cfg.NumBlocks {
		return fmt.Errorf("%d tokens need more than the %d KV blocks: %w", total, e.cfg.NumBlocks, ErrTooLong)
	}
	if e.cfg.MaxWaiting > 0 && e.numWaiting >= e.cfg.MaxWaiting {
		return fmt.Errorf("%d waiting: %w", e.numWaiting, ErrQueueFull)
	}
	return nil
}

// Cancel forgets request id (a client went away), freeing its blocks. It
// reports whether the engine held the request.
func (e *Engine) Cancel(id uint64) bool {
	slot, ok := e.byID[id]
	if !ok {
		return false
	}
	s := &e.seqs[slot]
	switch s.state {
	case stateWaiting, stateTransferring:
		e.dropWaiting(slot)
	case stateRunning:
		e.removeRunning(slot)
		e.kv.release(s.blocks)
		s.blocks = s.blocks[:0]
	}
	delete(e.byID, id)
	s.state = stateCancelled
	e.stats.cancelled++
	e.stalled = false
	e.releaseIfIdle(slot)
	return true
}

// NextEventTime returns when Step next has something to do: the end of the
// iteration in flight, the current time when the engine is idle with
// requests to start, or else the end of the first KV transfer. ok is false
// when the engine holds no requests.
func (e *Engine) NextEventTime() (t time.Duration, ok bool) {
	if e.busy {
		return e.stepEnd, true
	}
	if !e.stalled && (e.numWaiting > len(e.transfers) || len(e.running) > 0) {
		return e.now, true
	}
	if len(e.transfers) > 0 {
		return max(e.firstLanding(), e.now), true
	}
	return 0, false
}

// Step advances the engine to now: if the iteration in flight has ended it
// emits that iteration's tokens, then it starts the next iteration (at the
// previous one's end, back to back, or at now when idle). It returns the
// events of the finished iteration; the slice is reused by the next call.
// Calling Step before NextEventTime is harmless and returns nothing.
func (e *Engine) Step(now time.Duration) []Event {
	e.events = e.events[:0]
	e.advance(now)
	start := e.now
	if e.busy {
		if now < e.stepEnd {
			return nil
		}
		e.finishStep()
		start = e.stepEnd
	}
	e.land(start)
	e.startStep(start)
	return e.events
}

func (e *Engine) advance(now time.Duration) {
	if now > e.now {
		e.now = now
	}
}

func (e *Engine) newSlot() int32 {
	if n := len(e.freeSlots); n > 0 {
		slot := e.freeSlots[n-1]
		e.freeSlots = e.freeSlots[:n-1]
		return slot
	}
	e.seqs = append(e.seqs, seq{})
	return int32(len(e.seqs) - 1)
}

// releaseIfIdle returns a finished or cancelled slot to the free list once
// neither the queue nor the iteration in flight refers to it.
func (e *Engine) releaseIfIdle(slot int32) {
	s := &e.seqs[slot]
	if s.inQueue || s.inStep {
		return
	}
	s.state = stateFree
	e.freeSlots = append(e.freeSlots, slot)
}

func (e *Engine) removeRunning(slot int32) {
	for i, r := range e.running {
		if r == slot {
			copy(e.running[i:], e.running[i+1:])
			e.running = e.running[:len(e.running)-1]
			break
		}
	}
	if l := e.seqs[slot].lora; l != noLoRA {
		e.lora.running[l]--
	}
}
