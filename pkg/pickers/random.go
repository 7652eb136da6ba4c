// Package pickers holds the built-in pickers.
package pickers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// RandomType is the type name of Random.
const RandomType = "random-picker"

// Params are the parameters every built-in picker accepts.
type Params struct {
	// MaxNumOfEndpoints is the length of the returned list: the primary
	// target plus fallbacks the proxy tries in order.
	MaxNumOfEndpoints int `json:"maxNumOfEndpoints" doc:"endpoints returned: the target plus fallbacks" default:"1"`
}

func (p *Params) validate() error {
	if p.MaxNumOfEndpoints < 1 {
		return fmt.Errorf("maxNumOfEndpoints: must be >= 1, got %d", p.MaxNumOfEndpoints)
	}
	return nil
}

func decodeParams(raw json.RawMessage) (Params, error) {
	p := Params{MaxNumOfEndpoints: 1}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return p, err
	}
	return p, p.validate()
}

// Random picks MaxNumOfEndpoints distinct endpoints uniformly at random,
// ignoring scores. Inputs: none beyond the candidate list.
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

// TypedName implements scheduler.Plugin.
func (r *Random) TypedName() scheduler.TypedName { return r.name }

// Pick implements scheduler.Picker with a partial Fisher–Yates shuffle.
func (r *Random) Pick(_ context.Context, state *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	n := min(r.params.MaxNumOfEndpoints, len(scored))
	out := make([]*endpoint.Endpoint, n)
	for i := range n {
		j := i + state.Rand.IntN(len(scored)-i)
		scored[i], scored[j] = scored[j], scored[i]
		out[i] = scored[i].Endpoint
	}
	return out, nil
}
