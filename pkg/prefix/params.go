package prefix

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Defaults of the approx-prefix-cache-producer parameters: upstream's,
// except the matching window.
const (
	DefaultBlockSizeTokens = 16
	// DefaultMaxPrefixBlocksToMatch is 2,048 blocks (llm-d's count; with
	// 16-token blocks 32,768 tokens, 128 KiB of prompt) where GIE v1.5.0
	// matches 256 (4,096 tokens). Agents send one long system prompt and
	// tool set with every request: within GIE's window every session
	// looks alike, and the index, recording only each prompt's head,
	// believes servers hold more than they do. In the fleet simulation the
	// larger window gave 1.05–1.07× throughput and about half the TTFT p90
	// on agent sessions, 1.10–1.15× and 0.58–0.66× on long agentic prompts
	// (5 seeds each), and the same results on the short-prompt workloads.
	// Matching samples past 256 blocks (index.go), so a decision on a
	// 100 KiB prompt costs about 110 µs instead of 20 µs, mostly hashing
	// and recording its blocks.
	DefaultMaxPrefixBlocksToMatch = 2048
	// UpstreamMaxPrefixBlocksToMatch is GIE v1.5.0's window, the default
	// under --upstream-compatible-scoring.
	UpstreamMaxPrefixBlocksToMatch = 256
	DefaultLRUCapacityPerServer    = 31250
)

// Parameter bounds. Blocks under tinyBlockSizeTokens are accepted with a
// warning: each request then inserts many more entries, and auto-tuned
// capacities (KV tokens / block size) grow accordingly, which is how tiny
// blocks exhausted memory upstream. maxAutoTunedCapacity caps what a model
// server's reported cache size can make an endpoint's LRU hold (about 60 MiB
// of index per endpoint), whatever the block size. Reported engine block
// sizes under minAutoTunedBlockSizeTokens are not auto-tuned to.
const (
	tinyBlockSizeTokens         = 4
	minAutoTunedBlockSizeTokens = 16
	maxBlockSizeTokens          = 1 << 16
	maxCapacity                 = 1 << 30
	maxAutoTunedCapacity        = 1 << 20
)

// Params are the approx-prefix-cache-producer parameters, with upstream's
// names and defaults.
type Params struct {
	AutoTune               bool `json:"autoTune" doc:"take block size and per-endpoint capacity from the model servers' reported KV cache (block size only when all reporting candidates agree on one of at least 16 tokens)" default:"true"`
	BlockSizeTokens        int  `json:"blockSizeTokens" doc:"tokens per hashed block; a block is blockSizeTokens×4 bytes of the prompt" default:"16"`
	MaxPrefixBlocksToMatch int  `json:"maxPrefixBlocksToMatch" doc:"at most this many leading blocks are hashed, matched and recorded (GIE v1.5.0: 256, the default under --upstream-compatible-scoring)" default:"2048"`
	MaxPrefixTokensToMatch int  `json:"maxPrefixTokensToMatch" doc:"also cap the blocks to this many tokens; 0 means no extra cap" default:"0"`
	LRUCapacityPerServer   int  `json:"lruCapacityPerServer" doc:"blocks remembered per endpoint (when auto-tuning, only for endpoints that report no cache size)" default:"31250"`
	BlockSize              int  `json:"blockSize,omitempty" doc:"deprecated: block size in characters, converted by DecodeParams to blockSizeTokens = round(blockSize/4); do not combine with blockSizeTokens" default:""`
	HashTools              bool `json:"hashTools" doc:"count the request's tool definitions, at their size, where the chat template renders them (after the system prompt); OpenEPP extension, off as in GIE: on agent sessions with per-user tool sets it made sessions of one tool set herd onto its servers, a wash overall (docs/deploy.md)" default:"false"`
}

// DefaultParams returns the defaults.
func DefaultParams() Params {
	return Params{
		AutoTune:               true,
		BlockSizeTokens:        DefaultBlockSizeTokens,
		MaxPrefixBlocksToMatch: DefaultMaxPrefixBlocksToMatch,
		LRUCapacityPerServer:   DefaultLRUCapacityPerServer,
	}
}

// defaultsFor returns the defaults, upstream's window when h asks for
// upstream-compatible scoring.
func defaultsFor(h *scheduler.Handle) Params {
	p := DefaultParams()
	if h != nil && h.UpstreamScoring {
		p.MaxPrefixBlocksToMatch = UpstreamMaxPrefixBlocksToMatch
	}
	return p
}

// paramsJSON is what DecodeParams reads. blockSizeTokens is a pointer so a
// conflict with the deprecated blockSize is detectable. The
// prefix-cache-scorer's own parameter names are accepted and ignored: the
// config loader creates this producer from a scorer's parameters when a
// config names only the scorer.
type paramsJSON struct {
	Params
	BlockSizeTokens             *int            `json:"blockSizeTokens"`
	PrefixMatchInfoProducerName json.RawMessage `json:"prefixMatchInfoProducerName"`
	MatchLengthWeight           json.RawMessage `json:"matchLengthWeight"`
	MatchLengthScaleTokens      json.RawMessage `json:"matchLengthScaleTokens"`
	ColdRequestSpread           json.RawMessage `json:"coldRequestSpread"`
	LoadBoundFactor             json.RawMessage `json:"loadBoundFactor"`
	LoadBoundSlack              json.RawMessage `json:"loadBoundSlack"`
}

// DecodeParams strictly decodes raw (nil means all defaults, upstream's
// window when h asks for upstream-compatible scoring), converts the
// deprecated blockSize into BlockSizeTokens, and validates the result.
func DecodeParams(raw json.RawMessage, h *scheduler.Handle) (Params, error) {
	in := paramsJSON{Params: defaultsFor(h)}
	if err := scheduler.DecodeParams(raw, &in); err != nil {
		return Params{}, err
	}
	p := in.Params
	switch {
	case in.BlockSizeTokens != nil && p.BlockSize != 0:
		return Params{}, errors.New("blockSize: deprecated, and conflicts with blockSizeTokens; set only blockSizeTokens")
	case p.BlockSize > 0:
		p.BlockSizeTokens = max(1, (p.BlockSize+CharsPerToken/2)/CharsPerToken)
	case in.BlockSizeTokens != nil:
		p.BlockSizeTokens = *in.BlockSizeTokens
	}
	if err := p.validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// validate reports every out-of-range parameter at once.
func (p *Params) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(p.BlockSizeTokens >= 1 && p.BlockSizeTokens <= maxBlockSizeTokens,
		"blockSizeTokens: must be in [1, %d], got %d", maxBlockSizeTokens, p.BlockSizeTokens)
	check(p.MaxPrefixBlocksToMatch >= 1, "maxPrefixBlocksToMatch: must be >= 1, got %d", p.MaxPrefixBlocksToMatch)
	check(p.MaxPrefixTokensToMatch >= 0, "maxPrefixTokensToMatch: must be >= 0 (0 = no cap), got %d", p.MaxPrefixTokensToMatch)
	check(p.LRUCapacityPerServer >= 1 && p.LRUCapacityPerServer <= maxCapacity,
		"lruCapacityPerServer: must be in [1, %d], got %d", maxCapacity, p.LRUCapacityPerServer)
	check(p.BlockSize >= 0, "blockSize: must be >= 0, got %d", p.BlockSize)
	return errors.Join(errs...)
}

// maxBlocks is how many leading blocks of bs tokens are hashed.
func (p *Params) maxBlocks(bs int) int {
	n := p.MaxPrefixBlocksToMatch
	if p.MaxPrefixTokensToMatch > 0 {
		n = min(n, max(1, p.MaxPrefixTokensToMatch/bs))
	}
	return n
}
