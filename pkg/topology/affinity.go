package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Type names of the affinity plugins.
const (
	ScorerType = "topology-affinity-scorer"
	FilterType = "topology-affinity-filter"
	// inFlightType is the plugin loadAllowance reads by default.
	inFlightType = "inflight-load-producer"
)

// ScorerParams configure topology-affinity-scorer.
type ScorerParams struct {
	TopologyProducerName string `json:"topologyProducerName" doc:"topology-extractor to read locations from; empty: the config's only one (created when there is none)" default:""`
}

// FilterParams configure topology-affinity-filter (llm-d's names).
type FilterParams struct {
	MinAffinity              string `json:"minAffinity" doc:"loosest level a candidate must share with the peer to pass: host, rack, zone or region" default:"host"`
	TopologyProducerName     string `json:"topologyProducerName" doc:"topology-extractor to read locations from; empty: the config's only one (created when there is none)" default:""`
	LoadAllowance            *int   `json:"loadAllowance" doc:"when set, keep every candidate if the least busy local one has more than this many requests in flight beyond the least busy remote one (a near but overloaded peer costs more than a far transfer); unset: no load gate" default:""`
	InFlightLoadProducerName string `json:"inFlightLoadProducerName" doc:"with loadAllowance, the inflight-load-producer whose books count requests in flight" default:"inflight-load-producer"`
}

// affinity is what the scorer and the filter share: the extractor and the
// peer's location.
type affinity struct {
	name      scheduler.TypedName
	producer  string
	extractor *Extractor
}

// resolve finds the extractor by name.
func (a *affinity) resolve(h *scheduler.Handle) error {
	if a.producer == "" {
		return errors.New("topologyProducerName: not set, and the config does not hold exactly one " + ExtractorType +
			" to read by default; name the one to read")
	}
	if h == nil {
		return errors.New("topologyProducerName: no plugin handle to resolve it with")
	}
	p, ok := h.Plugin(a.producer)
	if !ok {
		return fmt.Errorf("topologyProducerName: no plugin named %q in the config (list `- type: %s`)", a.producer, ExtractorType)
	}
	x, ok := p.(*Extractor)
	if !ok {
		return fmt.Errorf("topologyProducerName: plugin %q has type %q, want %q", a.producer, p.TypedName().Type, ExtractorType)
	}
	a.extractor = x
	return nil
}

// peer is the location of the request's peer; false when there is no peer
// or nothing is known of where it runs.
func (a *affinity) peer(state *scheduler.State) (Location, bool) {
	if a.extractor == nil || state == nil {
		return Location{}, false
	}
	e, ok := scheduler.PeerEndpoint.Get(state)
	if !ok || e == nil {
		return Location{}, false
	}
	l := a.extractor.Locate(e)
	return l, l.Known()
}

// Scorer is llm-d's topology-affinity-scorer: in a stage run after another
// (the prefill profile after decode), each candidate scores by the
// tightest level it shares with the peer picked before: host 1, rack 0.2,
// zone 0.05, region 0.02, none 0 (the proximity curve, shaped by transfer
// bandwidth so that one shared host outweighs any number of looser ties).
// Without a peer, or when nothing is known of where the peer runs, every
// candidate scores 0 and the other scorers decide.
type Scorer struct{ affinity }

// Filter is llm-d's topology-affinity-filter: it keeps the candidates
// sharing at least minAffinity with the peer, and fails open (keeps every
// candidate) when there is no peer, when nothing is known of where it
// runs, or when no candidate is near enough, so topology never makes a
// request unroutable. With loadAllowance it also keeps every candidate
// when the least busy near one has more than loadAllowance requests in
// flight beyond the least busy far one; candidates whose location at
// minAffinity is unknown leave the gate off, as nothing then shows which
// side they are on.
type Filter struct {
	affinity
	min       Level
	allowance *int
	books     string
	tracker   *inflight.Tracker
}

var (
	_ scheduler.ScoreWriter = (*Scorer)(nil)
	_ scheduler.Resolver    = (*Scorer)(nil)
	_ scheduler.Filter      = (*Filter)(nil)
	_ scheduler.Resolver    = (*Filter)(nil)
)

// ScorerRegistration describes topology-affinity-scorer for the registry.
func ScorerRegistration() scheduler.Registration {
	return scheduler.Registration{Type: ScorerType, Factory: ScorerFactory, Params: ScorerParams{},
		Summary: "In a stage run after another (prefill after decode), prefers candidates near the peer picked before: same host 1, rack 0.2, zone 0.05, region 0.02."}
}

// FilterRegistration describes topology-affinity-filter for the registry.
func FilterRegistration() scheduler.Registration {
	return scheduler.Registration{Type: FilterType, Factory: FilterFactory, Params: FilterParams{},
		Summary: "In a stage run after another, keeps the candidates sharing at least minAffinity (host, rack, zone, region) with the peer picked before; keeps all when none does."}
}

// ScorerFactory builds a Scorer.
func ScorerFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p ScorerParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return &Scorer{affinity{name: scheduler.TypedName{Type: ScorerType, Name: name}, producer: p.TopologyProducerName}}, nil
}

// FilterFactory builds a Filter.
func FilterFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := FilterParams{MinAffinity: "host", InFlightLoadProducerName: inFlightType}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	var errs []error
	level, err := ParseLevel(p.MinAffinity)
	if err != nil {
		errs = append(errs, fmt.Errorf("minAffinity: %w", err))
	}
	if p.LoadAllowance != nil && *p.LoadAllowance < 0 {
		errs = append(errs, fmt.Errorf("loadAllowance: must be >= 0 requests, got %d", *p.LoadAllowance))
	}
	if p.LoadAllowance != nil && p.InFlightLoadProducerName == "" {
		errs = append(errs, errors.New("inFlightLoadProducerName: must name an inflight-load-producer when loadAllowance is set"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Filter{affinity: affinity{name: scheduler.TypedName{Type: FilterType, Name: name}, producer: p.TopologyProducerName},
		min: level, allowance: p.LoadAllowance, books: p.InFlightLoadProducerName}, nil
}

// TypedName implements scheduler.Plugin.
func (a *affinity) TypedName() scheduler.TypedName { return a.name }

// Resolve implements scheduler.Resolver.
func (s *Scorer) Resolve(h *scheduler.Handle) error { return s.resolve(h) }

// Resolve implements scheduler.Resolver: the extractor, and the in-flight
// books when loadAllowance is set.
func (f *Filter) Resolve(h *scheduler.Handle) error {
	if err := f.resolve(h); err != nil {
		return err
	}
	if f.allowance == nil {
		return nil
	}
	t, err := inflight.Lookup(h, f.books, inFlightType)
	f.tracker = t
	return err
}

// Score implements scheduler.Scorer.
func (s *Scorer) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter; out comes zeroed.
func (s *Scorer) ScoreInto(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	peer, ok := s.peer(state)
	if !ok {
		return
	}
	for i, e := range eps {
		out[i] = proximity[Shared(peer, s.extractor.Locate(e))]
	}
}

// Filter implements scheduler.Filter; see the type's comment.
func (f *Filter) Filter(_ context.Context, state *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	peer, ok := f.peer(state)
	if !ok {
		return eps
	}
	var near []*endpoint.Endpoint
	sides := make([]int8, len(eps)) // 1 near, -1 far, 0 unknown
	for i, e := range eps {
		l := f.extractor.Locate(e)
		switch {
		case Shared(peer, l) <= f.min:
			near = append(near, e)
			sides[i] = 1
		case knownAt(peer, l, f.min):
			sides[i] = -1
		}
	}
	if len(near) == 0 || len(near) == len(eps) {
		return eps
	}
	if f.tracker != nil && f.overloaded(eps, sides) {
		return eps
	}
	return near
}

// overloaded reports whether the least busy near candidate has more than
// loadAllowance requests in flight beyond the least busy far one; false
// when a candidate's side is unknown.
func (f *Filter) overloaded(eps []*endpoint.Endpoint, sides []int8) bool {
	loads := make([]float64, len(eps))
	f.tracker.Requests(eps, loads)
	closeMin, farMin := -1.0, -1.0
	for i, side := range sides {
		switch side {
		case 0:
			return false
		case 1:
			if closeMin < 0 || loads[i] < closeMin {
				closeMin = loads[i]
			}
		default:
			if farMin < 0 || loads[i] < farMin {
				farMin = loads[i]
			}
		}
	}
	return farMin >= 0 && closeMin-farMin > float64(*f.allowance)
}
