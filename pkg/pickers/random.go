package pickers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// RandomType is the type name of Random.
const RandomType = "random-picker"

// Random picks MaxNumOfEndpoints distinct endpoints uniformly at random,
// ignoring scores, in random order. Inputs: none beyond the candidate list.
// Parameters: maxNumOfEndpoints (1).
type Random struct {
	name   scheduler.TypedName
	params Params
}

var _ scheduler.Picker = (*Random)(nil)

// NewRandom returns a random picker.
func NewRandom(name string, p Params) *Random {
	return &Random{name: scheduler.TypedName{Type: RandomType, Name: name}, params: p}
}

// RandomFactory builds a Random from config.
func RandomFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p, err := decodeParams(raw)
	if err != nil {
		return nil, err
	}
	return NewRandom(name, p), nil
}

// RandomRegistration describes the plugin type for the registry.
func RandomRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    RandomType,
		Factory: RandomFactory,
		Params:  Params{},
		Summary: "Picks maxNumOfEndpoints distinct endpoints uniformly at random, ignoring scores.",
	}
}

// TypedName implements scheduler.Plugin.
func (r *Random) TypedName() scheduler.TypedName { return r.name }

// Pick implements scheduler.Picker with a partial Fisher–Yates shuffle.
func (r *Random) Pick(_ context.Context, state *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	if len(scored) == 0 {
		return nil, errNoScored
	}
	n := min(r.params.MaxNumOfEndpoints, len(scored))
	out := make([]*endpoint.Endpoint, n)
	for i := range n {
		j := i + state.Rand.IntN(len(scored)-i)
		scored[i], scored[j] = scored[j], scored[i]
		out[i] = scored[i].Endpoint
	}
	return out, nil
}
