package flowcontrol

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/openepp/openepp/pkg/scheduler"
)

// llm-d's priority-aware usage limits: each active priority (seen within
// ActiveWindow) gets its own ceiling, lower priorities lower, so as the
// pool fills the low bands stop dispatching first and leave headroom for
// the high ones. Requests keep queueing; a gated band just waits.
const (
	PriorityHoldbackType      = "priority-holdback-policy"
	SoftReflectiveCeilingType = "soft-reflective-ceiling-policy"
)

// PriorityHoldbackParams are llm-d's parameters, with its names.
type PriorityHoldbackParams struct {
	Shape      string   `json:"shape" doc:"interpolation between the ceilings: linear (the only one)" default:"linear"`
	Domain     string   `json:"domain" doc:"rank: equal steps by the priorities' order; value: steps proportional to the priorities' values" default:"rank"`
	MinCeiling *float64 `json:"minCeiling" doc:"ceiling of the lowest active priority, in [0, 1); required: how hard to hold back the lowest traffic has no safe default" default:""`
	MaxCeiling float64  `json:"maxCeiling" doc:"ceiling of the highest active priority, in (0, 1] and not below minCeiling" default:"1.0"`
}

func (p *PriorityHoldbackParams) validate() error {
	var errs []error
	if p.Shape != "linear" {
		errs = append(errs, fmt.Errorf("shape: want linear, got %q", p.Shape))
	}
	if p.Domain != "rank" && p.Domain != "value" {
		errs = append(errs, fmt.Errorf("domain: want rank or value, got %q", p.Domain))
	}
	switch {
	case p.MinCeiling == nil:
		errs = append(errs, errors.New("minCeiling: required, in [0, 1)"))
	case !(*p.MinCeiling >= 0 && *p.MinCeiling < 1):
		errs = append(errs, fmt.Errorf("minCeiling: must be in [0, 1), got %v", *p.MinCeiling))
	case p.MaxCeiling < *p.MinCeiling:
		errs = append(errs, fmt.Errorf("maxCeiling %v is below minCeiling %v", p.MaxCeiling, *p.MinCeiling))
	}
	if !(p.MaxCeiling > 0 && p.MaxCeiling <= 1) {
		errs = append(errs, fmt.Errorf("maxCeiling: must be in (0, 1], got %v", p.MaxCeiling))
	}
	return errors.Join(errs...)
}

// PriorityHoldback spreads ceilings linearly from maxCeiling (the highest
// active priority) to minCeiling (the lowest), by rank or by value. With
// one active priority it has maxCeiling.
type PriorityHoldback struct {
	name     scheduler.TypedName
	byValue  bool
	min, max float64
}

var _ scheduler.BandedUsageLimitPolicy = (*PriorityHoldback)(nil)

// NewPriorityHoldback validates p and returns the policy named name.
func NewPriorityHoldback(name string, p PriorityHoldbackParams) (*PriorityHoldback, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &PriorityHoldback{name: typed(PriorityHoldbackType, name), byValue: p.Domain == "value", min: *p.MinCeiling, max: p.MaxCeiling}, nil
}

// TypedName implements scheduler.Plugin.
func (h *PriorityHoldback) TypedName() scheduler.TypedName { return h.name }

// Ceiling implements scheduler.UsageLimitPolicy for a caller that knows no
// other priority: the highest's.
func (h *PriorityHoldback) Ceiling(int) float64 { return h.max }

// CeilingAmong implements scheduler.BandedUsageLimitPolicy.
func (h *PriorityHoldback) CeilingAmong(priority int, _ float64, active []int) float64 {
	n := len(active)
	if n < 2 {
		return h.max
	}
	var r float64 // 1 for the highest priority, 0 for the lowest
	if h.byValue {
		hi, lo := active[0], active[n-1]
		r = float64(priority-lo) / float64(hi-lo)
	} else {
		i := slices.Index(active, priority)
		r = 1 - float64(i)/float64(n-1)
	}
	return h.min + r*(h.max-h.min)
}

// PriorityHoldbackFactory builds a PriorityHoldback from config.
func PriorityHoldbackFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := PriorityHoldbackParams{Shape: "linear", Domain: "rank", MaxCeiling: 1}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewPriorityHoldback(name, p)
}

// PriorityHoldbackRegistration describes the plugin type for the registry.
func PriorityHoldbackRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: PriorityHoldbackType, Factory: PriorityHoldbackFactory, Params: PriorityHoldbackParams{},
		Summary: "Usage limit (llm-d): each active priority's ceiling steps linearly from maxCeiling (highest) to minCeiling (lowest), " +
			"so low-priority bands stop dispatching first as the pool fills.",
	}
}

// SoftReflectiveCeiling is llm-d's parameter-free graduated ceiling: band i
// of n active priorities (0 the highest) has the reflective ceiling
// 1 − i·s/(n−1) at saturation s. Below it the band is open; at s ≥ 1 every
// band but the highest is shut; in between the band opens on one call in
// round(s/(1−s)), so its dispatch rate falls smoothly as s rises. One tick
// is shared by every gated band, so on a call they are all open or all
// shut: the dispatcher stops at the first band that may not go.
type SoftReflectiveCeiling struct {
	name scheduler.TypedName
	tick atomic.Uint64
}

var _ scheduler.BandedUsageLimitPolicy = (*SoftReflectiveCeiling)(nil)

// TypedName implements scheduler.Plugin.
func (s *SoftReflectiveCeiling) TypedName() scheduler.TypedName { return s.name }

// Ceiling implements scheduler.UsageLimitPolicy for a caller that knows no
// other priority: open.
func (s *SoftReflectiveCeiling) Ceiling(int) float64 { return 1 }

// CeilingAmong implements scheduler.BandedUsageLimitPolicy.
func (s *SoftReflectiveCeiling) CeilingAmong(priority int, saturation float64, active []int) float64 {
	n := len(active)
	i := slices.Index(active, priority)
	if n < 2 || i <= 0 {
		return 1
	}
	if saturation < 1-float64(i)*saturation/float64(n-1) {
		return 1
	}
	if !(saturation < 1) { // NaN too
		return 0
	}
	period := max(uint64(math.Round(saturation/(1-saturation))), 1)
	if s.tick.Add(1)%period == 0 {
		return 1
	}
	return 0
}

// SoftReflectiveCeilingFactory builds the policy; it takes no parameters,
// and a non-empty parameters block is refused, as llm-d refuses it.
func SoftReflectiveCeilingFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if t := strings.TrimSpace(string(raw)); t != "" && t != "null" && t != "{}" {
		return nil, fmt.Errorf("%s takes no parameters, got %s", SoftReflectiveCeilingType, t)
	}
	return &SoftReflectiveCeiling{name: typed(SoftReflectiveCeilingType, name)}, nil
}

// SoftReflectiveCeilingRegistration describes the plugin type for the
// registry.
func SoftReflectiveCeilingRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: SoftReflectiveCeilingType, Factory: SoftReflectiveCeilingFactory, Params: struct{}{},
		Summary: "Usage limit (llm-d): no parameters; lower bands' ceilings shrink as saturation rises (1 − rank·s/(n−1)), " +
			"and a band past its ceiling opens on one dispatch call in round(s/(1−s)).",
	}
}
