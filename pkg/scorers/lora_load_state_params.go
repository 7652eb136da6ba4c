package scorers

import (
	"errors"
	"fmt"
	"math"
)

// LoRALoadStateParams configures LoRALoadState, in llm-d's names. A key
// left out keeps its default; an explicit 0 is honoured.
type LoRALoadStateParams struct {
	GPUResidentScore   float64 `json:"gpuResidentScore" doc:"score where the adapter occupies a GPU slot (serves at once); in [0, 1]" default:"1"`
	CPUResidentScore   float64 `json:"cpuResidentScore" doc:"score where the adapter is only in the host cache (must be activated); in [0, 1], <= gpuResidentScore" default:"0.7"`
	FreeSlotScore      float64 `json:"freeSlotScore" doc:"score where the adapter is absent but a GPU slot is free (loads without evicting); in [0, 1], <= cpuResidentScore" default:"0.6"`
	EvictableScore     float64 `json:"evictableScore" doc:"score where the slots are full but an unpinned GPU adapter has no request running (loading evicts an idle one); in [0, 1], <= freeSlotScore" default:"0.3"`
	SaturatedScore     float64 `json:"saturatedScore" doc:"score where loading the adapter must wait for a busy or pinned one to leave; in [0, 1], <= evictableScore" default:"0"`
	PlacementBonus     float64 `json:"placementBonus" doc:"added to the one candidate the adapter's rendezvous hash picks, while the adapter is not in a GPU slot there, so its first loads converge on one server; in [0, 1]" default:"0.03"`
	HeadroomBonus      float64 `json:"headroomBonus" doc:"times the candidate's share of free GPU adapter slots; in [0, 1]. Both bonuses are bounded so they never lift an endpoint over the next tier: their sum b < 1 and every non-zero gap g between tiers has g × (1 − b) > b" default:"0.03"`
	LoadHorizonSeconds float64 `json:"loadHorizonSeconds" doc:"when > 0, price the three miss tiers by the servers' reported mean load and activate times: t seconds to serve scores gpuResidentScore × max(0, 1 − t/loadHorizonSeconds), at least saturatedScore; 0 = the fixed tiers" default:"0"`
}

// DefaultLoRALoadStateParams returns llm-d's defaults.
func DefaultLoRALoadStateParams() LoRALoadStateParams {
	return LoRALoadStateParams{
		GPUResidentScore: 1, CPUResidentScore: 0.7, FreeSlotScore: 0.6, EvictableScore: 0.3, SaturatedScore: 0,
		PlacementBonus: 0.03, HeadroomBonus: 0.03,
	}
}

// namedValue is one parameter, for messages.
type namedValue struct {
	name string
	v    float64
}

// tiers are the tier scores, best first.
func (p *LoRALoadStateParams) tiers() []namedValue {
	return []namedValue{
		{"gpuResidentScore", p.GPUResidentScore}, {"cpuResidentScore", p.CPUResidentScore},
		{"freeSlotScore", p.FreeSlotScore}, {"evictableScore", p.EvictableScore}, {"saturatedScore", p.SaturatedScore},
	}
}

// validate reports every broken rule at once. llm-d logs a broken config
// and falls back to its defaults; OpenEPP refuses it, so the operator
// learns the scores are not the ones written.
func (p *LoRALoadStateParams) validate() error {
	var errs []error
	for _, f := range append(p.tiers(), namedValue{"placementBonus", p.PlacementBonus}, namedValue{"headroomBonus", p.HeadroomBonus}) {
		if !(f.v >= 0 && f.v <= 1) {
			errs = append(errs, fmt.Errorf("%s: must be in [0, 1], got %v", f.name, f.v))
		}
	}
	if !(p.LoadHorizonSeconds >= 0) || math.IsInf(p.LoadHorizonSeconds, 0) {
		errs = append(errs, fmt.Errorf("loadHorizonSeconds: must be a finite number >= 0, got %v", p.LoadHorizonSeconds))
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // the relations below need numbers in range
	}
	tiers := p.tiers()
	for i := 1; i < len(tiers); i++ {
		if hi, lo := tiers[i-1], tiers[i]; lo.v > hi.v {
			errs = append(errs, fmt.Errorf("%s: must be <= %s (%v), as the tiers are ordered gpuResidentScore >= cpuResidentScore >= "+
				"freeSlotScore >= evictableScore >= saturatedScore, got %v", lo.name, hi.name, hi.v, lo.v))
		}
	}
	b := p.PlacementBonus + p.HeadroomBonus
	if b >= 1 {
		return errors.Join(append(errs, fmt.Errorf("placementBonus + headroomBonus: must be < 1, got %v", b))...)
	}
	for i := 1; i < len(tiers); i++ {
		hi, lo := tiers[i-1], tiers[i]
		if g := hi.v - lo.v; g > 0 && !(g*(1-b) > b) {
			errs = append(errs, fmt.Errorf("placementBonus + headroomBonus: must stay below every gap between tiers once "+
				"scaled (gap × (1 − bonuses) > bonuses), or a bonus lifts an endpoint over the next tier; the gap "+
				"%s − %s is %.4g, and %.4g × (1 − %.4g) = %.4g is not > %.4g", hi.name, lo.name, g, g, b, g*(1-b), b))
		}
	}
	return errors.Join(errs...)
}
