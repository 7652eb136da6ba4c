package burst

import (
	"errors"
	"fmt"
	"time"
)

// Params are llm-d's burst-prefix-cache-producer parameters, with its names
// and defaults.
type Params struct {
	WindowDurationMs       int    `json:"windowDurationMs" doc:"how long a window collects requests before placing them together, in ms (1 … 10000); every request with a prompt waits up to this long" default:"100"`
	MaxPerReplica          int    `json:"maxPerReplica" doc:"most samples of one group placed on one endpoint before spilling to the next least loaded; -1: a whole group on one endpoint" default:"-1"`
	BlockSizeTokens        int    `json:"blockSizeTokens" doc:"prefix block size, in tokens (4 prompt bytes a token)" default:"64"`
	MaxPrefixTokensToMatch int    `json:"maxPrefixTokensToMatch" doc:"cap on the prefix compared, in tokens (0: 2048 blocks); prompts equal up to the cap are one group" default:"0"`
	MinColocateBlocks      int    `json:"minColocateBlocks" doc:"leading blocks two different prompts must share to be placed together (bounded by each endpoint's fair share of the window); 0: only identical prompts are grouped" default:"0"`
	MaxBatchSize           int    `json:"maxBatchSize" doc:"most requests one window holds; a full window closes at once (-1: unlimited)" default:"1000"`
	BalanceBy              string `json:"balanceBy" doc:"what a window balances across endpoints: requests (their count) or tokens (each group's prefix charged once per endpoint, less the leading blocks a group already placed there shares)" default:"requests"`
}

// Bounds and defaults.
const (
	defaultMaxBlocks = 2048
	maxWindowMs      = 10000
	unlimited        = -1
	balanceRequests  = "requests"
	balanceTokens    = "tokens"
)

// DefaultParams returns llm-d's defaults.
func DefaultParams() Params {
	return Params{WindowDurationMs: 100, MaxPerReplica: unlimited, BlockSizeTokens: 64, MaxBatchSize: 1000, BalanceBy: balanceRequests}
}

func (p *Params) validate() error {
	var errs []error
	if p.WindowDurationMs < 1 || p.WindowDurationMs > maxWindowMs {
		errs = append(errs, fmt.Errorf("windowDurationMs: must be in [1, %d], got %d", maxWindowMs, p.WindowDurationMs))
	}
	if p.MaxPerReplica != unlimited && p.MaxPerReplica < 1 {
		errs = append(errs, fmt.Errorf("maxPerReplica: must be -1 (unlimited) or >= 1, got %d", p.MaxPerReplica))
	}
	if p.BlockSizeTokens < 1 || p.BlockSizeTokens > 1<<16 {
		errs = append(errs, fmt.Errorf("blockSizeTokens: must be in [1, 65536], got %d", p.BlockSizeTokens))
	}
	if p.MaxPrefixTokensToMatch != 0 && p.MaxPrefixTokensToMatch < p.BlockSizeTokens {
		errs = append(errs, fmt.Errorf("maxPrefixTokensToMatch: must be 0 or >= blockSizeTokens (%d), got %d", p.BlockSizeTokens, p.MaxPrefixTokensToMatch))
	}
	if p.MinColocateBlocks < 0 {
		errs = append(errs, fmt.Errorf("minColocateBlocks: must be >= 0, got %d", p.MinColocateBlocks))
	}
	if p.MaxBatchSize != unlimited && p.MaxBatchSize < 1 {
		errs = append(errs, fmt.Errorf("maxBatchSize: must be -1 (unlimited) or >= 1, got %d", p.MaxBatchSize))
	}
	if p.BalanceBy != balanceRequests && p.BalanceBy != balanceTokens {
		errs = append(errs, fmt.Errorf("balanceBy: must be %q or %q, got %q", balanceRequests, balanceTokens, p.BalanceBy))
	}
	return errors.Join(errs...)
}

func (p *Params) window() time.Duration { return time.Duration(p.WindowDurationMs) * time.Millisecond }

func (p *Params) maxBlocks() int {
	if p.MaxPrefixTokensToMatch > 0 {
		return p.MaxPrefixTokensToMatch / p.BlockSizeTokens
	}
	return defaultMaxBlocks
}
