// Package zoneaffinity is an example out-of-tree scorer: it prefers model
// servers in the same zone as the client, as told by a request header. It
// shows the whole anatomy a plugin needs; copy it to start your own.
package zoneaffinity

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Type is the name used in config files.
const Type = "zone-affinity-scorer"

// Params are the scorer's parameters.
type Params struct {
	// Header carries the client's zone.
	Header string `json:"header" doc:"request header naming the client's zone" default:"x-client-zone"`
	// Label is the endpoint label holding the server's zone.
	Label string `json:"label" doc:"endpoint label holding the server's zone" default:"topology.kubernetes.io/zone"`
}

func (p *Params) validate() error {
	if p.Header == "" || p.Label == "" {
		return fmt.Errorf("header and label must not be empty")
	}
	return nil
}

// Scorer scores 1 for endpoints whose Label equals the request's Header,
// 0 for the others, and 0.5 for all when the request names no zone.
type Scorer struct {
	name   scheduler.TypedName
	params Params
}

var _ scheduler.Scorer = (*Scorer)(nil)

// New returns a zone-affinity scorer.
func New(name string, p Params) (*Scorer, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", Type, err)
	}
	return &Scorer{name: scheduler.TypedName{Type: Type, Name: name}, params: p}, nil
}

// Factory builds the scorer from config parameters.
func Factory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := Params{Header: "x-client-zone", Label: "topology.kubernetes.io/zone"}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return New(name, p)
}

// Registration is what the EPP binary is given via epp.WithPlugins.
func Registration() scheduler.Registration {
	return scheduler.Registration{Type: Type, Factory: Factory, Params: Params{},
		Summary: "Example: prefers endpoints in the client's zone (request header vs endpoint label)."}
}

// TypedName implements scheduler.Plugin.
func (s *Scorer) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *Scorer) Score(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	zone := req.Header(s.params.Header)
	for i, e := range eps {
		switch {
		case zone == "":
			out[i] = 0.5
		case e.Label(s.params.Label) == zone:
			out[i] = 1
		}
	}
	return out
}
