package sim

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// Metrics engines: which model server's metric names /metrics exports.
const (
	EngineVLLM    = "vllm"
	EngineSGLang  = "sglang"
	EngineTRTLLM  = "trtllm-serve"
	EngineTriton  = "triton-tensorrt-llm"
	defaultEngine = EngineVLLM
)

// MetricsEngines lists the supported metrics engines.
func MetricsEngines() []string {
	return []string{EngineVLLM, EngineSGLang, EngineTRTLLM, EngineTriton}
}

// Config describes one simulated model server. The zero value is valid: a
// vLLM-like server with the "fast" preset on 127.0.0.1, a free port, model
// "sim-model".
type Config struct {
	// Address to listen on; default 127.0.0.1. Any 127.0.0.x works on Linux,
	// so many instances can share a port number on distinct addresses.
	Address string
	// Port to listen on; 0 picks a free one.
	Port int

	// Model is the base model (vLLM --model); default the profile's model.
	Model string
	// ServedModelNames are the names clients may use for the base model
	// (vLLM --served-model-name); default [Model]. The first one is the
	// name /v1/models lists first.
	ServedModelNames []string
	// LoRAs are the adapter names served (vLLM --lora-modules). With
	// Capacity.MaxCPULoRAs set they are loaded into the host cache at
	// start, as far as it holds them, as vLLM loads its static adapters.
	LoRAs []string
	// PinnedLoRAs (a subset of LoRAs, at most max-loras) sit in GPU slots
	// from the start and are never evicted (--pinned-loras).
	PinnedLoRAs []string

	// Profile names the engine preset (engine.ProfileNames); default "fast".
	Profile string
	// SchedulingPolicy is vLLM's --scheduling-policy: "fcfs" (default; a
	// request's priority is read and ignored) or "priority" (waiting
	// requests start by priority, lower first, then arrival, and a full KV
	// cache preempts the least urgent, latest arrived sequence; see
	// package engine). Under MetricsEngine "sglang" a request's priority
	// is negated, as SGLang runs higher values first.
	SchedulingPolicy string
	// Capacity and Latency override the preset, flag by flag.
	Capacity Capacity
	Latency  Latency
	// Tune, if set, edits the final engine parameters; for tests that need
	// exact values (e.g. a zero cost).
	Tune func(*engine.Config)

	// MetricsEngine selects metric names and path: "vllm" (default),
	// "sglang", "trtllm-serve" (served at /prometheus/metrics) or
	// "triton-tensorrt-llm".
	MetricsEngine string
	// DefaultMaxTokens applies when a request sets no max tokens; default 16.
	DefaultMaxTokens int
	// Seed seeds latency jitter and generated text.
	Seed uint64
	// Faults are the initial fault knobs.
	Faults Faults
	// Logger receives lifecycle logs; the zero value discards them.
	Logger logr.Logger
	// Frontend, if set, wraps the instance's HTTP API on the instance's own
	// address, e.g. with a P/D decode sidecar (package pdsidecar). reg is
	// the instance's metrics registry, so the frontend's collectors appear
	// on its metrics page.
	Frontend func(api http.Handler, reg prometheus.Registerer) (http.Handler, error)
	// KVEvents, if set, receives the engine's prefix-cache changes, the
	// stream vLLM publishes as KV events (e.g. for a publisher feeding a
	// precise prefix-cache router). One engine serves the base model and
	// every adapter, so BlocksStored names the adapter ("" for the base
	// model) and, for the run starting a salted prompt, its cache_salt.
	// Calls come from the goroutine Run starts to step the engine, one at
	// a time, in order, with the engine locked: a slow listener stalls
	// every request, and a listener must not call the Instance
	// (EngineMetrics would deadlock). See engine.KVEventListener for how
	// long its slices stay valid.
	KVEvents engine.KVEventListener
}

// Capacity overrides the preset's sizes; zero keeps the preset's value.
type Capacity struct {
	MaxNumSeqs          int // --max-num-seqs
	MaxNumBatchedTokens int // --max-num-batched-tokens
	KVCacheBlocks       int // --kv-cache-blocks (llm-d-inference-sim: --kv-cache-size)
	BlockSize           int // --block-size
	MaxLoRAs            int // --max-loras
	MaxCPULoRAs         int // --max-cpu-loras; 0 keeps "same as max-loras"
	MaxModelLen         int // --max-model-len
	MaxWaiting          int // --max-waiting-queue-length; 0 keeps "unbounded"
	// EncoderCacheTokens is the encoder cache, in placeholder tokens
	// (--encoder-cache-tokens); 0 keeps the preset's (none).
	EncoderCacheTokens int
}

// Latency carries llm-d-inference-sim's latency flags; nil keeps the
// preset's value. They map onto the iteration model as follows (β0 is the
// per-iteration base cost):
//   - InterTokenLatency sets β0, the iteration time of a batch of one;
//   - PrefillOverhead (or, if unset, TimeToFirstToken) sets the prefill
//     overhead so that an unloaded request's TTFT excluding per-token cost
//     equals it: PrefillOverhead = max(0, value − β0);
//   - PrefillTimePerToken sets β1. When TimeToFirstToken is given without
//     PrefillOverhead or PrefillTimePerToken, β1 becomes 0: the constant-TTFT
//     mode, in which (as in llm-d-inference-sim) cache hits do not shorten TTFT;
//   - TimeFactorUnderLoad scales iterations from 1× (one sequence) up to
//     this factor at max-num-seqs.
type Latency struct {
	TimeToFirstToken    *time.Duration
	InterTokenLatency   *time.Duration
	PrefillOverhead     *time.Duration
	PrefillTimePerToken *time.Duration
	TimeFactorUnderLoad *float64
	// LoRALoadDelay prices loading an adapter from disk into the host
	// cache, LoRAActivateDelay copying it from there into a GPU slot
	// (presets: 20 or 50 ms to load, activation free).
	LoRALoadDelay     *time.Duration
	LoRAActivateDelay *time.Duration
	// Jitter is the relative standard deviation of iteration times (≤ 0.3).
	Jitter *float64
	// KVTransferPerToken and KVTransferOverhead price pulling a P/D
	// request's prompt KV from its prefiller (kv_transfer_params
	// do_remote_prefill): overhead + uncached prompt tokens · per token,
	// beside the running batch. Presets: 1µs/token, no overhead.
	KVTransferPerToken *time.Duration
	KVTransferOverhead *time.Duration
	// EncodeTimePerToken prices encoding a multimodal item, per placeholder
	// token, when neither the prefix cache nor the encoder cache holds it
	// (--encode-time-per-token). Presets: 0, no encoder cost.
	EncodeTimePerToken *time.Duration
}

// Ptr returns a pointer to v, for filling Latency.
func Ptr[T any](v T) *T { return &v }

// resolved is a validated config with defaults applied.
type resolved struct {
	Config
	engine engine.Config
}

// resolve applies defaults and validates, reporting every problem at once.
func (c Config) resolve() (resolved, error) {
	if c.Address == "" {
		c.Address = "127.0.0.1"
	}
	if c.MetricsEngine == "" {
		c.MetricsEngine = defaultEngine
	}
	if c.DefaultMaxTokens == 0 {
		c.DefaultMaxTokens = 16
	}
	ec, err := c.engineConfig()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if c.Model == "" {
		c.Model = ec.Model
	}
	if len(c.ServedModelNames) == 0 {
		c.ServedModelNames = []string{c.Model}
	}
	errs = append(errs, c.validate(ec)...)
	if err := errors.Join(errs...); err != nil {
		return resolved{}, fmt.Errorf("simulator config: %w", err)
	}
	c.ServedModelNames = slices.Clone(c.ServedModelNames)
	c.LoRAs = slices.Clone(c.LoRAs)
	c.PinnedLoRAs = slices.Clone(c.PinnedLoRAs)
	return resolved{Config: c, engine: ec}, nil
}

func (c Config) validate(ec engine.Config) []error {
	var errs []error
	if net.ParseIP(c.Address) == nil {
		errs = append(errs, fmt.Errorf("address: %q is not an IP address", c.Address))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port: %d out of range", c.Port))
	}
	if !slices.Contains(MetricsEngines(), c.MetricsEngine) {
		errs = append(errs, fmt.Errorf("metricsEngine: unknown %q (known: %v)", c.MetricsEngine, MetricsEngines()))
	}
	if c.DefaultMaxTokens < 1 {
		errs = append(errs, fmt.Errorf("defaultMaxTokens: must be ≥ 1, got %d", c.DefaultMaxTokens))
	}
	if !utf8.ValidString(c.Model) {
		errs = append(errs, fmt.Errorf("model: %q is not valid UTF-8", c.Model))
	}
	seen := map[string]string{}
	for _, list := range []struct {
		field string
		names []string
	}{{"servedModelNames", c.ServedModelNames}, {"loras", c.LoRAs}} {
		for i, n := range list.names {
			if n == "" || !utf8.ValidString(n) {
				errs = append(errs, fmt.Errorf("%s[%d]: %q is empty or not valid UTF-8", list.field, i, n))
				continue
			}
			if prev, dup := seen[n]; dup {
				errs = append(errs, fmt.Errorf("%s[%d]: %q already used in %s", list.field, i, n, prev))
			}
			seen[n] = list.field
		}
	}
	if len(c.LoRAs) > 0 && ec.MaxLoRAs == 0 {
		errs = append(errs, errors.New("loras: adapters configured but max-loras is 0"))
	}
	for i, n := range c.PinnedLoRAs {
		if !slices.Contains(c.LoRAs, n) {
			errs = append(errs, fmt.Errorf("pinnedLoras[%d]: %q is not among the served adapters (lora-modules)", i, n))
		}
	}
	if _, err := c.policy(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Latency.validate(); err != nil {
		errs = append(errs, fmt.Errorf("latency: %w", err))
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, fmt.Errorf("faults: %w", err))
	}
	return errs
}

// engineConfig builds the engine parameters: preset, then Capacity and
// Latency overrides, then Tune.
func (c Config) engineConfig() (engine.Config, error) {
	ec, err := engine.Profile(c.Profile)
	if err != nil {
		return engine.Config{}, fmt.Errorf("profile: %w", err)
	}
	if c.Model != "" {
		ec.Model = c.Model
	}
	overrideInt(&ec.MaxNumSeqs, c.Capacity.MaxNumSeqs)
	overrideInt(&ec.MaxNumBatchedTokens, c.Capacity.MaxNumBatchedTokens)
	if c.Capacity.MaxNumSeqs > ec.MaxNumBatchedTokens && c.Capacity.MaxNumBatchedTokens == 0 {
		ec.MaxNumBatchedTokens = c.Capacity.MaxNumSeqs
	}
	overrideInt(&ec.NumBlocks, c.Capacity.KVCacheBlocks)
	overrideInt(&ec.BlockSize, c.Capacity.BlockSize)
	overrideInt(&ec.MaxLoRAs, c.Capacity.MaxLoRAs)
	overrideInt(&ec.MaxCPULoRAs, c.Capacity.MaxCPULoRAs)
	if len(c.PinnedLoRAs) > 0 {
		ec.PinnedLoRAs = slices.Clone(c.PinnedLoRAs)
	}
	overrideInt(&ec.MaxModelLen, c.Capacity.MaxModelLen)
	overrideInt(&ec.MaxWaiting, c.Capacity.MaxWaiting)
	overrideInt(&ec.EncoderCacheTokens, c.Capacity.EncoderCacheTokens)
	ec.Policy, _ = c.policy() // validate reports a bad name
	c.Latency.apply(&ec)
	ec.Seed = c.Seed
	if c.Tune != nil {
		c.Tune(&ec)
	}
	if err := ec.Validate(); err != nil {
		return ec, fmt.Errorf("engine: %w", err)
	}
	return ec, nil
}

// policy returns the engine's scheduling policy; "" is FCFS.
func (c Config) policy() (engine.Policy, error) {
	if c.SchedulingPolicy == "" {
		return engine.FCFS, nil
	}
	p, err := engine.ParsePolicy(c.SchedulingPolicy)
	if err != nil {
		return engine.FCFS, fmt.Errorf("schedulingPolicy: %w", err)
	}
	return p, nil
}

func overrideInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

func (l Latency) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{
		{"timeToFirstToken", l.TimeToFirstToken}, {"interTokenLatency", l.InterTokenLatency},
		{"prefillOverhead", l.PrefillOverhead}, {"prefillTimePerToken", l.PrefillTimePerToken},
		{"loraLoadDelay", l.LoRALoadDelay}, {"loraActivateDelay", l.LoRAActivateDelay},
		{"kvTransferPerToken", l.KVTransferPerToken}, {"kvTransferOverhead", l.KVTransferOverhead},
	} {
		if d.v != nil && *d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must be ≥ 0, got %s", d.name, *d.v))
		}
	}
	return errors.Join(errs...)
}

func (l Latency) apply(ec *engine.Config) {
	if l.InterTokenLatency != nil {
		ec.StepOverhead = *l.InterTokenLatency
	}
	if l.PrefillTimePerToken != nil {
		ec.PrefillPerToken = *l.PrefillTimePerToken
	}
	overhead := l.PrefillOverhead
	if overhead == nil && l.TimeToFirstToken != nil {
		overhead = l.TimeToFirstToken
		if l.PrefillTimePerToken == nil {
			ec.PrefillPerToken = 0 // constant-TTFT mode
		}
	}
	if overhead != nil {
		ec.PrefillOverhead = max(0, *overhead-ec.StepOverhead)
	}
	if l.TimeFactorUnderLoad != nil {
		ec.LoadFactor = *l.TimeFactorUnderLoad
	}
	if l.LoRALoadDelay != nil {
		ec.LoRALoadDelay = *l.LoRALoadDelay
	}
	if l.LoRAActivateDelay != nil {
		ec.LoRAActivateDelay = *l.LoRAActivateDelay
	}
	if l.Jitter != nil {
		ec.Jitter = *l.Jitter
	}
	if l.KVTransferPerToken != nil {
		ec.KVTransferPerToken = *l.KVTransferPerToken
	}
	if l.KVTransferOverhead != nil {
		ec.KVTransferOverhead = *l.KVTransferOverhead
	}
	if l.EncodeTimePerToken != nil {
		ec.EncodePerToken = *l.EncodeTimePerToken
	}
}
