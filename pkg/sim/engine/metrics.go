package engine

import "time"

// Metrics is a snapshot of what a vLLM server would export about itself.
type Metrics struct {
	// Waiting and Running count requests (vllm:num_requests_waiting,
	// vllm:num_requests_running).
	Waiting int
	Running int
	// KVUsage is referenced blocks over all blocks, 0..1
	// (vllm:kv_cache_usage_perc). Cached but unreferenced blocks count as
	// free, as in vLLM.
	KVUsage      float64
	UsedBlocks   int
	CachedBlocks int // blocks holding a published prefix hash
	NumBlocks    int
	BlockSize    int

	// MaxLoRAs, RunningLoRAs and WaitingLoRAs feed vllm:lora_requests_info;
	// the names are sorted. LoadedLoRAs are the adapters in GPU slots.
	MaxLoRAs     int
	RunningLoRAs []string
	WaitingLoRAs []string
	LoadedLoRAs  []string
	// LoRAResidency lists every adapter in the host cache (GPU slot holders
	// included), sorted by name (vllm:lora_adapter_loaded); nil when LoRA
	// is off or nothing is resident.
	LoRAResidency []LoRAState
	// LoRALoad and LoRAActivate are the adapter transitions iterations paid
	// for: disk → host cache (LoRALoadDelay each) and host cache → GPU slot
	// (LoRAActivateDelay each); startup loads are not counted.
	LoRALoad, LoRAActivate TransitionStats

	// Counters since the engine started.
	PromptTokens     uint64 // prompt tokens of requests that produced a token
	GenerationTokens uint64
	PrefixQueries    uint64 // tokens looked up in the prefix cache
	PrefixHits       uint64 // of those, tokens found
	Preemptions      uint64
	Finished         uint64
	Cancelled        uint64
	Iterations       uint64
	LoRALoads        uint64 // adapters moved into a GPU slot to admit a request
	Evictions        uint64 // cached blocks reused for other data
	// KVTransfers counts RemotePrefill requests whose KV pull started;
	// KVTransferTokens the prompt tokens pulled (beyond local cache hits).
	KVTransfers      uint64
	KVTransferTokens uint64
	// P2PPulls counts requests whose P2P pull (Request.PullTokens)
	// started, P2PPullTokens the prompt tokens pulled.
	P2PPulls      uint64
	P2PPullTokens uint64
	// EncoderHits and EncoderMisses count multimodal items a prefill
	// needed the encoder output of: found in the encoder cache, or encoded.
	EncoderHits   uint64
	EncoderMisses uint64
	// BusyTime is the summed duration of all iterations started.
	BusyTime time.Duration
}

// LoRAState is where one resident adapter is.
type LoRAState struct {
	Name string
	// OnGPU: in a GPU slot; otherwise only in the host cache.
	OnGPU bool
	// Pinned adapters are never evicted (Config.PinnedLoRAs).
	Pinned bool
}

// TransitionStats counts one kind of adapter transition and sums its
// simulated durations.
type TransitionStats struct {
	Count   uint64
	Seconds float64
}

// Metrics returns a snapshot. It allocates the adapter lists (only when
// LoRA is on); hot loops should use Waiting, Running and KVUsage.
func (e *Engine) Metrics() Metrics {
	m := Metrics{
		Waiting:          e.numWaiting,
		Running:          len(e.running),
		KVUsage:          e.KVUsage(),
		UsedBlocks:       e.kv.used(),
		CachedBlocks:     len(e.kv.cached),
		NumBlocks:        e.cfg.NumBlocks,
		BlockSize:        e.cfg.BlockSize,
		MaxLoRAs:         e.cfg.MaxLoRAs,
		RunningLoRAs:     e.lora.active(e.lora.running),
		WaitingLoRAs:     e.lora.active(e.lora.waiting),
		LoadedLoRAs:      e.lora.resident(),
		PromptTokens:     e.stats.promptTokens,
		GenerationTokens: e.stats.generationTokens,
		PrefixQueries:    e.stats.prefixQueries,
		PrefixHits:       e.stats.prefixHits,
		Preemptions:      e.stats.preemptions,
		Finished:         e.stats.finished,
		Cancelled:        e.stats.cancelled,
		Iterations:       e.stats.iterations,
		LoRALoads:        e.lora.loads,
		Evictions:        e.kv.evictions,
		KVTransfers:      e.stats.kvTransfers,
		KVTransferTokens: e.stats.kvTransferTokens,
		P2PPulls:         e.stats.p2pPulls,
		P2PPullTokens:    e.stats.p2pPullTokens,
		EncoderHits:      e.enc.hits,
		EncoderMisses:    e.enc.misses,
		BusyTime:         e.stats.busy,
		LoRALoad:         e.lora.load.stats(),
		LoRAActivate:     e.lora.activate.stats(),
	}
	if e.cfg.MaxLoRAs > 0 {
		m.LoRAResidency = e.lora.residency()
	}
	return m
}

// Waiting returns the number of waiting requests without allocating.
func (e *Engine) Waiting() int { return e.numWaiting }

// Running returns the number of running requests without allocating.
func (e *Engine) Running() int { return len(e.running) }

// KVUsage returns the fraction of KV blocks referenced by requests.
func (e *Engine) KVUsage() float64 {
	return float64(e.kv.used()) / float64(e.cfg.NumBlocks)
}

// CachedPrefix returns how many leading tokens of an unsalted prompt for
// adapter lora ("" for the base model) the prefix cache holds right now, in
// whole blocks.
// It is the ground truth an oracle router would see; it does not change the
// cache or its LRU order.
func (e *Engine) CachedPrefix(tokens []uint32, lora string) int {
	return e.CachedPrefixSalted(tokens, lora, "")
}

// CachedPrefixSalted is CachedPrefix for a prompt with cache_salt salt
// ("" for none), which only blocks stored under the same salt match: what a
// peer asked for a P2P pull can serve.
func (e *Engine) CachedPrefixSalted(tokens []uint32, lora, salt string) int {
	root := e.baseRoot
	if lora != "" {
		i, ok := e.lora.index[lora]
		if !ok {
			return 0
		}
		root = e.lora.roots[i]
	}
	e.scratch = appendBlockHashes(e.scratch[:0], saltRoot(root, salt), tokens, e.cfg.BlockSize)
	hits, _ := e.kv.lookup(e.scratch, len(e.scratch))
	return hits * e.cfg.BlockSize
}
