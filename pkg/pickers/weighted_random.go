package pickers

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// WeightedRandomType is the type name of WeightedRandom.
const WeightedRandomType = "weighted-random-picker"

// WeightedRandom picks endpoints at random with probability proportional to
// their scores, so load spreads over good endpoints instead of piling onto
// the single best one.
//
// Inputs: the weighted total scores, used as sampling weights w. Parameters:
// maxNumOfEndpoints N (1). Rule: weighted sampling without replacement by
// A-Res (Efraimidis–Spirakis): each endpoint draws U uniform in (0,1] and
// gets the key U^(1/w); the N largest keys win, largest first. The first pick
// is endpoint i with probability w_i/Σw. Keys are compared as ln(U)/w, which
// orders the same without underflowing for small w. For N = 1 the same
// distribution is drawn with one random number over the cumulative weights
// (O(n), no allocation beyond the result). Endpoints with weight 0
// (or a negative or NaN weight) come only after every positive one, in
// uniformly random order; if all are zero the pick is uniformly random. An
// infinite weight outranks every finite one.
type WeightedRandom struct {
	name   scheduler.TypedName
	params Params
}

var _ scheduler.Picker = (*WeightedRandom)(nil)

// NewWeightedRandom validates p and returns the picker.
func NewWeightedRandom(name string, p Params) (*WeightedRandom, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &WeightedRandom{name: scheduler.TypedName{Type: WeightedRandomType, Name: name}, params: p}, nil
}

// WeightedRandomFactory builds a WeightedRandom from config.
func WeightedRandomFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p, err := decodeParams(raw)
	if err != nil {
		return nil, err
	}
	picker, err := NewWeightedRandom(name, p)
	if err != nil {
		return nil, err
	}
	return picker, nil
}

// WeightedRandomRegistration describes the plugin type for the registry.
func WeightedRandomRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    WeightedRandomType,
		Factory: WeightedRandomFactory,
		Params:  Params{},
		Summary: "Picks endpoints at random in proportion to their scores (A-Res sampling without replacement).",
	}
}

// TypedName implements scheduler.Plugin.
func (p *WeightedRandom) TypedName() scheduler.TypedName { return p.name }

// Pick implements scheduler.Picker.
func (p *WeightedRandom) Pick(_ context.Context, state *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	if len(scored) == 0 {
		return nil, errNoScored
	}
	if p.params.MaxNumOfEndpoints == 1 {
		return []*endpoint.Endpoint{scored[pickOne(state.Rand, scored)].Endpoint}, nil
	}
	top := newTopN(min(p.params.MaxNumOfEndpoints, len(scored)))
	for i, s := range scored {
		top.offer(sampleKey(state.Rand, s.Score, i))
	}
	best := top.best()
	out := make([]*endpoint.Endpoint, len(best))
	for i, r := range best {
		out[i] = scored[r.idx].Endpoint
	}
	return out, nil
}

// pickOne draws one endpoint with the distribution of the first A-Res pick,
// P(i) = w_i/Σw, from a single uniform draw over the cumulative weights
// instead of one draw and one logarithm per endpoint.
func pickOne(r *rand.Rand, scored []scheduler.Scored) int {
	var total float64
	infinite := 0
	for _, s := range scored {
		switch w := s.Score; {
		case math.IsInf(w, 1):
			infinite++
		case w > 0:
			total += w
		}
	}
	switch {
	case infinite > 0 || math.IsInf(total, 1):
		return pickByKey(r, scored) // rare: let the keys sort it out
	case total == 0:
		return r.IntN(len(scored))
	}
	x := r.Float64() * total
	chosen := -1
	for i, s := range scored {
		if w := s.Score; w > 0 {
			chosen = i
			if x < w {
				break
			}
			x -= w
		}
	}
	return chosen // the last positive weight if rounding left x >= its weight
}

// pickByKey returns the endpoint with the largest A-Res key.
func pickByKey(r *rand.Rand, scored []scheduler.Scored) int {
	best := sampleKey(r, scored[0].Score, 0)
	for i := 1; i < len(scored); i++ {
		if k := sampleKey(r, scored[i].Score, i); k.above(best) {
			best = k
		}
	}
	return best.idx
}

// sampleKey draws the A-Res key of the endpoint at idx with weight w. The
// major key sorts the weight classes (infinite, positive, none); the minor
// key orders within a class.
func sampleKey(r *rand.Rand, w float64, idx int) ranked {
	u := 1 - r.Float64() // (0, 1], so the logarithm is finite
	switch {
	case math.IsInf(w, 1):
		return ranked{major: 2, minor: u, idx: idx}
	case w > 0:
		return ranked{major: 1, minor: math.Log(u) / w, idx: idx}
	default: // zero, negative or NaN
		return ranked{major: 0, minor: u, idx: idx}
	}
}
