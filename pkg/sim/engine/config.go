package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Config holds one engine's parameters. Profile returns published presets;
// every field is documented with the vLLM flag or model term it stands for.
type Config struct {
	// Model names the base model. It seeds the prefix-cache key of every
	// block, so two engines with different models never share hits.
	Model string

	// MaxNumSeqs is vLLM's --max-num-seqs: at most this many sequences run
	// in one iteration; the rest wait, in the order Policy sets.
	MaxNumSeqs int
	// MaxNumBatchedTokens is vLLM's --max-num-batched-tokens, the per-step
	// token budget that chunks long prefills. Must be ≥ MaxNumSeqs.
	MaxNumBatchedTokens int
	// MaxModelLen bounds prompt + output tokens of one request; 0 means only
	// the KV cache bounds it.
	MaxModelLen int
	// MaxWaiting bounds the waiting queue; Submit fails with ErrQueueFull
	// beyond it. 0 means unbounded (vLLM has no limit).
	MaxWaiting int
	// Policy is vLLM's --scheduling-policy: FCFS (the zero value) or
	// Priority.
	Policy Policy

	// NumBlocks and BlockSize size the paged KV cache (vLLM's
	// num_gpu_blocks and --block-size).
	NumBlocks int
	BlockSize int

	// StepOverhead is β0, the fixed cost of every iteration. With only
	// decodes running it is the inter-token latency of a batch of one.
	StepOverhead time.Duration
	// PrefillPerToken is β1, the cost of each uncached prompt token
	// computed in an iteration.
	PrefillPerToken time.Duration
	// DecodePerSeq is β2, the cost of each decoding sequence in an iteration.
	DecodePerSeq time.Duration
	// PrefillOverhead is added once to any iteration in which at least one
	// request starts its prefill; it models llm-d-inference-sim's fixed
	// prefill overhead on top of β0.
	PrefillOverhead time.Duration
	// LoadFactor is llm-d-inference-sim's time-factor-under-load: iteration
	// time is multiplied by a factor rising linearly from 1 with one
	// sequence to LoadFactor with MaxNumSeqs. 0 or 1 disables it.
	LoadFactor float64

	// MaxLoRAs is vLLM's --max-loras: adapter slots on the GPU. A request
	// for an adapter not in a slot can start only when a slot is free or
	// held by an unpinned adapter no running request uses.
	MaxLoRAs int
	// MaxCPULoRAs is vLLM's --max-cpu-loras: the host (CPU) cache of loaded
	// adapters, a superset of the GPU slots' holders. 0 means MaxLoRAs;
	// otherwise it must be ≥ MaxLoRAs. A full cache evicts its least
	// recently used adapter that is neither in a GPU slot nor pinned.
	MaxCPULoRAs int
	// LoRALoadDelay is added to the iteration that loads an adapter from
	// disk into the host cache; LoRAActivateDelay to the iteration that
	// copies one from the host cache into a GPU slot. A request for an
	// adapter resident nowhere pays both.
	LoRALoadDelay     time.Duration
	LoRAActivateDelay time.Duration
	// PinnedLoRAs are adapters resident from the start in GPU slots (so at
	// most MaxLoRAs of them) and never evicted from either tier, as vLLM's
	// pin_lora. When they fill every slot, requests for other adapters are
	// invalid.
	PinnedLoRAs []string

	// KVTransferOverhead and KVTransferPerToken price pulling a
	// RemotePrefill request's prompt KV from its prefiller (P/D
	// disaggregation): overhead + uncached prompt tokens · per token. The
	// pull runs beside the batch, not in it (see transfer.go).
	KVTransferOverhead time.Duration
	KVTransferPerToken time.Duration

	// EncodePerToken is the multimodal encoder's cost per placeholder token
	// of an item it encodes, added to the iteration that encodes it; 0 means
	// encoding is free (a text-only model). EncoderCacheTokens is the
	// capacity of the encoder cache (vLLM's encoder cache), in placeholder
	// tokens; 0 keeps nothing. See encoder.go.
	EncodePerToken     time.Duration
	EncoderCacheTokens int

	// Jitter is the relative standard deviation of a Gaussian multiplier on
	// each iteration's duration, clamped to ±70 % (llm-d-inference-sim's
	// rule). 0 disables it; at most 0.3.
	Jitter float64
	// Seed seeds the jitter; equal seeds and inputs give equal timelines.
	Seed uint64
}

// Policy orders the waiting queue and picks the sequence a KV-cache
// shortage preempts, as vLLM's --scheduling-policy does.
type Policy uint8

const (
	// FCFS starts waiting requests in arrival order and preempts the most
	// recently started sequence; Request.Priority is ignored.
	FCFS Policy = iota
	// Priority starts waiting requests in (Request.Priority, arrival)
	// order, lower first, and preempts the running sequence with the
	// highest (Request.Priority, arrival): the least urgent, latest
	// arrived. Admission never preempts, and seats are never taken away.
	Priority
)

// policyNames are the flag values of the policies, indexed by Policy.
var policyNames = [...]string{FCFS: "fcfs", Priority: "priority"}

// String returns the policy's flag value ("fcfs" or "priority").
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy reads a --scheduling-policy value: "fcfs" or "priority".
func ParsePolicy(s string) (Policy, error) {
	for p, name := range policyNames {
		if s == name {
			return Policy(p), nil
		}
	}
	return FCFS, fmt.Errorf("unknown scheduling policy %q (known: %s)", s, strings.Join(policyNames[:], ", "))
}

// maxBlocks keeps block IDs within int32.
const maxBlocks = 1 << 30

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.MaxNumSeqs < 1 {
		bad("maxNumSeqs", "must be ≥ 1, got %d", c.MaxNumSeqs)
	}
	if c.MaxNumBatchedTokens < max(c.MaxNumSeqs, 1) {
		bad("maxNumBatchedTokens", "must be ≥ maxNumSeqs (%d), got %d", c.MaxNumSeqs, c.MaxNumBatchedTokens)
	}
	if c.MaxModelLen < 0 {
		bad("maxModelLen", "must be ≥ 0, got %d", c.MaxModelLen)
	}
	if c.MaxWaiting < 0 {
		bad("maxWaiting", "must be ≥ 0, got %d", c.MaxWaiting)
	}
	if c.NumBlocks < 1 || c.NumBlocks > maxBlocks {
		bad("numBlocks", "must be in [1, %d], got %d", maxBlocks, c.NumBlocks)
	}
	if c.BlockSize < 1 || c.BlockSize > 1<<16 {
		bad("blockSize", "must be in [1, 65536], got %d", c.BlockSize)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"stepOverhead", c.StepOverhead}, {"prefillPerToken", c.PrefillPerToken},
		{"decodePerSeq", c.DecodePerSeq}, {"prefillOverhead", c.PrefillOverhead},
		{"loraLoadDelay", c.LoRALoadDelay}, {"loraActivateDelay", c.LoRAActivateDelay},
		{"kvTransferOverhead", c.KVTransferOverhead},
		{"kvTransferPerToken", c.KVTransferPerToken}, {"encodePerToken", c.EncodePerToken},
	}
	for _, d := range durations {
		if d.d < 0 {
			bad(d.name, "must be ≥ 0, got %s", d.d)
		}
	}
	if c.LoadFactor != 0 && c.LoadFactor < 1 {
		bad("loadFactor", "must be 0 (off) or ≥ 1, got %g", c.LoadFactor)
	}
	if c.MaxLoRAs < 0 {
		bad("maxLoras", "must be ≥ 0, got %d", c.MaxLoRAs)
	}
	if c.MaxCPULoRAs < 0 || c.MaxCPULoRAs > 0 && c.MaxCPULoRAs < c.MaxLoRAs {
		bad("maxCpuLoras", "must be 0 (same as maxLoras) or ≥ maxLoras (%d), got %d", c.MaxLoRAs, c.MaxCPULoRAs)
	}
	errs = append(errs, c.validatePinned()...)
	if c.EncoderCacheTokens < 0 {
		bad("encoderCacheTokens", "must be ≥ 0, got %d", c.EncoderCacheTokens)
	}
	if c.Policy > Priority {
		bad("policy", "unknown scheduling policy %d", c.Policy)
	}
	if c.Jitter < 0 || c.Jitter > 0.3 {
		bad("jitter", "must be in [0, 0.3], got %g", c.Jitter)
	}
	return errors.Join(errs...)
}

// validatePinned checks PinnedLoRAs: distinct names that fit in the slots.
func (c Config) validatePinned() []error {
	var errs []error
	if len(c.PinnedLoRAs) > c.MaxLoRAs {
		errs = append(errs, fmt.Errorf("pinnedLoras: %d adapters pinned but maxLoras is %d", len(c.PinnedLoRAs), c.MaxLoRAs))
	}
	for i, name := range c.PinnedLoRAs {
		if name == "" {
			errs = append(errs, fmt.Errorf("pinnedLoras[%d]: empty adapter name", i))
		} else if slices.Index(c.PinnedLoRAs, name) < i {
			errs = append(errs, fmt.Errorf("pinnedLoras[%d]: %q pinned twice", i, name))
		}
	}
	return errs
}

// profile is one named preset.
type profile struct {
	name string
	cfg  Config
}

// defaultKVTransferPerToken prices a P/D KV pull when nothing better is
// known: small but not free (Llama-3.1-8B holds 128 KiB of KV per token,
// so 1 µs/token is a fast RDMA link; no preset has a measured value).
const defaultKVTransferPerToken = time.Microsecond

// base8B is the shape shared by the Llama-3.1-8B-on-H100 presets: BLIS's
// fitted KV capacity and vLLM's serving defaults.
var base8B = Config{
	MaxNumSeqs: 256, MaxNumBatchedTokens: 8192, MaxModelLen: 131072,
	NumBlocks: 29205, BlockSize: 16, MaxLoRAs: 1, LoRALoadDelay: 50 * time.Millisecond,
	KVTransferPerToken: defaultKVTransferPerToken,
}

func with(c Config, edit func(*Config)) Config {
	edit(&c)
	return c
}

// profiles lists the presets; see doc.go of package sim for sources.
var profiles = []profile{
	{"fast", Config{
		Model: "sim-model", MaxNumSeqs: 32, MaxNumBatchedTokens: 4096, MaxModelLen: 32768,
		NumBlocks: 4096, BlockSize: 16, StepOverhead: 2 * time.Millisecond,
		PrefillPerToken: 5 * time.Microsecond, DecodePerSeq: 20 * time.Microsecond,
		PrefillOverhead: 3 * time.Millisecond, MaxLoRAs: 1, LoRALoadDelay: 20 * time.Millisecond,
		KVTransferPerToken: defaultKVTransferPerToken,
	}},
	{"blis-l8b-h100", with(base8B, func(c *Config) {
		c.Model = "meta-llama/Llama-3.1-8B-Instruct"
		c.StepOverhead, c.PrefillPerToken, c.DecodePerSeq = 5752700, 17250, 6000
	})},
	{"blis-l8b-h100-tp2", with(base8B, func(c *Config) {
		c.Model = "meta-llama/Llama-3.1-8B-Instruct"
		c.StepOverhead, c.PrefillPerToken, c.DecodePerSeq = 6910*time.Microsecond, 17670, 2840
		c.NumBlocks = 132139
	})},
	{"sim-8b-h100", with(base8B, func(c *Config) {
		c.Model = "meta-llama/Llama-3.1-8B-Instruct"
		c.StepOverhead, c.PrefillPerToken = 12*time.Millisecond, 250*time.Microsecond
		c.PrefillOverhead, c.LoadFactor = 18*time.Millisecond, 2.0
	})},
	{"sim-70b-tp8-h100", with(base8B, func(c *Config) {
		c.Model = "meta-llama/Llama-3.1-70B-Instruct"
		c.StepOverhead, c.PrefillPerToken = 25*time.Millisecond, 500*time.Microsecond
		c.PrefillOverhead, c.LoadFactor = 55*time.Millisecond, 3.0
		c.NumBlocks = 461376 / 16
	})},
	{"sim-3b-l40s", with(base8B, func(c *Config) {
		c.Model = "meta-llama/Llama-3.2-3B-Instruct"
		c.StepOverhead, c.PrefillPerToken = 15*time.Millisecond, 350*time.Microsecond
		c.PrefillOverhead, c.LoadFactor = 5*time.Millisecond, 1.5
	})},
	{"llmd-sim-fast", with(base8B, func(c *Config) {
		c.Model = "Qwen/Qwen3-8B"
		c.StepOverhead, c.PrefillPerToken = time.Millisecond, 4*time.Microsecond
		c.PrefillOverhead = 4 * time.Millisecond
		c.NumBlocks = 10_000_000
	})},
	{"qwen32b-tp2", with(base8B, func(c *Config) {
		c.Model = "Qwen/Qwen3-32B"
		c.StepOverhead, c.PrefillPerToken, c.DecodePerSeq = 8*time.Millisecond, 63*time.Microsecond, 300*time.Microsecond
		c.NumBlocks = 307328 / 16
	})},
}

// DefaultProfile is the preset used when none is named: small latencies so
// tests and demos finish quickly.
const DefaultProfile = "fast"

// Profile returns a copy of the named preset.
func Profile(name string) (Config, error) {
	if name == "" {
		name = DefaultProfile
	}
	for _, p := range profiles {
		if p.name == name {
			return p.cfg, nil
		}
	}
	return Config{}, fmt.Errorf("unknown profile %q (known: %v)", name, ProfileNames())
}

// ProfileNames lists the presets in a stable order.
func ProfileNames() []string {
	names := make([]string, 0, len(profiles))
	for _, p := range profiles {
		names = append(names, p.name)
	}
	return slices.Clip(names)
}
