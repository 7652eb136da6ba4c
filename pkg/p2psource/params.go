package p2psource

import (
	"fmt"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Params are llm-d's p2p-source-producer parameters, with its names and
// defaults.
type Params struct {
	PrefixMatchInfoProducerName string `json:"prefixMatchInfoProducerName" doc:"instance name of the prefix-cache producer (approx-prefix-cache-producer or precise-prefix-cache-producer) whose matches say who holds what; empty: the config's only one (an approx-prefix-cache-producer is created when there is none)" default:""`
	MinCachedTokenDelta         int    `json:"minCachedTokenDelta" doc:"the header is set only when the source holds at least this many more prompt tokens than the server computing the prompt; raise it so short prefixes, cheaper to recompute than to move, are not pulled" default:"1"`
	PrefillProfileName          string `json:"prefillProfileName" doc:"profile whose target computes the prompt in disaggregated serving (the prefill leg pulls); when it did not run, the primary target computes it" default:"prefill"`
}

// maxDelta bounds minCachedTokenDelta: no prompt is longer.
const maxDelta = 1 << 30

// DefaultParams returns the defaults.
func DefaultParams() Params {
	return Params{MinCachedTokenDelta: 1, PrefillProfileName: scheduler.DefaultPrefillProfile}
}

func (p *Params) validate() error {
	if p.MinCachedTokenDelta < 1 || p.MinCachedTokenDelta > maxDelta {
		return fmt.Errorf("minCachedTokenDelta: must be in [1, %d] tokens, got %d", maxDelta, p.MinCachedTokenDelta)
	}
	if p.PrefillProfileName == "" {
		return fmt.Errorf("prefillProfileName: must not be empty (default %q)", scheduler.DefaultPrefillProfile)
	}
	return nil
}
