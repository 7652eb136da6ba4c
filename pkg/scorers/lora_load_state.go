package scorers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// LoRALoadStateType is the type name of LoRALoadState (llm-d's).
const LoRALoadStateType = "lora-load-state-scorer"

// LoRALoadState prefers endpoints where the request's LoRA adapter is
// servable soonest, by where each server holds it: a request for an adapter
// in a GPU slot starts at once, one in the host cache waits for an
// activation, one elsewhere for a load, and a load into full slots for an
// eviction. It is llm-d's lora-load-state-scorer, an affinity scorer.
//
// Inputs: Request.Model (the model the server sees, after rewrites) and each
// candidate's Metrics: LoRAResidency, GPULoadedAdapters, MaxActiveModels,
// ActiveModels, BaseModel, LoRALoadSeconds and LoRAActivateSeconds.
// Parameters (defaults): gpuResidentScore (1), cpuResidentScore (0.7),
// freeSlotScore (0.6), evictableScore (0.3), saturatedScore (0),
// placementBonus (0.03), headroomBonus (0.03), loadHorizonSeconds (0, off).
//
// Formula. The tier T of an endpoint is, checked in order: gpuResidentScore
// if the adapter is in a GPU slot; cpuResidentScore if it is in the host
// cache; freeSlotScore if a GPU slot is free (GPULoadedAdapters <
// MaxActiveModels); evictableScore if an unpinned GPU adapter has no
// request running; else saturatedScore. A server that reports no residency
// (LoRAResidency nil) gets the capacity tiers only, never evictableScore.
// With B = placementBonus + headroomBonus the score is
//
//	T × (1 − B) + placementBonus × [home] + headroomBonus × free/MaxActiveModels
//
// where free is the free GPU slots (the term is 0 when MaxActiveModels is
// 0) and home is the one candidate with the highest rendezvous weight of
// (adapter, endpoint host:port), when the adapter is not in a GPU slot
// there: the first requests of an adapter no server holds all load it on
// the same server instead of one copy per server. Validation keeps B below
// every gap between tiers, so the bonuses order endpoints within a tier
// and never across tiers.
//
// With loadHorizonSeconds h > 0 the miss tiers are priced by the time t the
// adapter takes to become servable: price(t) = max(saturatedScore,
// gpuResidentScore × max(0, 1 − t/h)); host cache: price(activate); free
// slot: price(load + activate); evictable: max(saturatedScore, price(load +
// activate) × evictableScore/freeSlotScore). An endpoint that reported no
// time (0) uses the mean over the candidates that did, per kind; a kind no
// candidate reported counts 0 s; when no candidate reported either kind the
// fixed tiers apply.
//
// A request for a base model (equal to some candidate's BaseModel), or to a
// pool where no candidate serves adapters, needs no adapter: every candidate scores (1 − B) × (MaxActiveModels −
// BusyGPUAdapters)/MaxActiveModels (1 − B when MaxActiveModels ≤ 0), so
// base traffic drifts away from servers busy batching adapter requests.
type LoRALoadState struct {
	name scheduler.TypedName
	p    LoRALoadStateParams
}

var _ scheduler.ScoreWriter = (*LoRALoadState)(nil)

// NewLoRALoadState validates p and returns the scorer called name.
func NewLoRALoadState(name string, p LoRALoadStateParams) (*LoRALoadState, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &LoRALoadState{name: scheduler.TypedName{Type: LoRALoadStateType, Name: name}, p: p}, nil
}

// LoRALoadStateFactory builds a LoRALoadState from config.
func LoRALoadStateFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultLoRALoadStateParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewLoRALoadState(name, p)
}

// LoRALoadStateRegistration describes the plugin type for the registry.
func LoRALoadStateRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    LoRALoadStateType,
		Factory: LoRALoadStateFactory,
		Params:  LoRALoadStateParams{},
		Summary: "Prefers endpoints by where the request's LoRA adapter lives: in a GPU slot (1), the host cache (0.7), a free slot (0.6), " +
			"an idle adapter to evict (0.3), none (0); small bonuses within a tier for the adapter's rendezvous home and free slots; " +
			"optionally priced by the servers' load times. Base-model requests prefer servers with fewer busy adapters.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *LoRALoadState) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *LoRALoadState) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *LoRALoadState) ScoreInto(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	adapter := req.Model
	scale := 1 - s.p.PlacementBonus - s.p.HeadroomBonus
	if servesAsBase(eps, adapter) {
		for i, e := range eps {
			out[i] = scale * idleAdapterShare(e.Metrics())
		}
		return
	}
	tm := s.transitionMeans(eps)
	home := -1
	if s.p.PlacementBonus > 0 {
		home = rendezvousHome(adapter, eps)
	}
	for i, e := range eps {
		m := e.Metrics()
		r, held := m.LoRAResidency[adapter]
		out[i] = scale * s.tier(m, r, held, tm)
		if m.MaxActiveModels > 0 {
			out[i] += s.p.HeadroomBonus * float64(m.FreeGPUAdapterSlots()) / float64(m.MaxActiveModels)
		}
		if i == home && !r.OnGPU {
			out[i] += s.p.PlacementBonus
		}
		out[i] = min(out[i], 1) // a priced miss tier at full price with both bonuses sums to 1 up to rounding
	}
}

// tier is the endpoint's tier score before the bonuses.
func (s *LoRALoadState) tier(m *endpoint.Metrics, r endpoint.LoRAResidence, held bool, tm transitionMeans) float64 {
	load, activate := tm.load, tm.activate
	if m.LoRALoadSeconds > 0 {
		load = m.LoRALoadSeconds
	}
	if m.LoRAActivateSeconds > 0 {
		activate = m.LoRAActivateSeconds
	}
	switch {
	case held && r.OnGPU:
		return s.p.GPUResidentScore
	case held:
		if tm.known {
			return s.price(activate)
		}
		return s.p.CPUResidentScore
	case m.FreeGPUAdapterSlots() > 0:
		if tm.known {
			return s.price(load + activate)
		}
		return s.p.FreeSlotScore
	case m.HasIdleGPUAdapter():
		if !tm.known {
			return s.p.EvictableScore
		}
		ratio := 0.0
		if s.p.FreeSlotScore > 0 {
			ratio = s.p.EvictableScore / s.p.FreeSlotScore
		}
		return max(s.p.SaturatedScore, s.price(load+activate)*ratio)
	}
	return s.p.SaturatedScore
}

// price is the score of an adapter servable in t seconds.
func (s *LoRALoadState) price(t float64) float64 {
	return max(s.p.SaturatedScore, s.p.GPUResidentScore*max(0, 1-t/s.p.LoadHorizonSeconds))
}

// transitionMeans are the candidates' mean load and activate times over
// those that reported one; known is false when pricing is off or no
// candidate reported either.
type transitionMeans struct {
	load, activate float64
	known          bool
}

func (s *LoRALoadState) transitionMeans(eps []*endpoint.Endpoint) transitionMeans {
	if s.p.LoadHorizonSeconds <= 0 {
		return transitionMeans{}
	}
	var tm transitionMeans
	nLoad, nActivate := 0, 0
	for _, e := range eps {
		m := e.Metrics()
		if m.LoRALoadSeconds > 0 {
			tm.load += m.LoRALoadSeconds
			nLoad++
		}
		if m.LoRAActivateSeconds > 0 {
			tm.activate += m.LoRAActivateSeconds
			nActivate++
		}
	}
	if nLoad > 0 {
		tm.load /= float64(nLoad)
	}
	if nActivate > 0 {
		tm.activate /= float64(nActivate)
	}
	tm.known = nLoad+nActivate > 0
	return tm
}

// servesAsBase reports whether the request needs no adapter: model is some
// candidate's base model, or no candidate serves adapters at all (no slots,
// no residency reported), where a home bonus would only pull every request
// of the model to one server.
func servesAsBase(eps []*endpoint.Endpoint, model string) bool {
	loraCapable := false
	for _, e := range eps {
		m := e.Metrics()
		if m.BaseModel != "" && m.BaseModel == model {
			return true
		}
		loraCapable = loraCapable || m.MaxActiveModels > 0 || m.LoRAResidency != nil
	}
	return !loraCapable
}

// idleAdapterShare is the share of the server's GPU adapter slots not busy
// with running adapter requests (1 when it reports no slots).
func idleAdapterShare(m *endpoint.Metrics) float64 {
	if m.MaxActiveModels <= 0 {
		return 1
	}
	return min(max(float64(m.MaxActiveModels-m.BusyGPUAdapters())/float64(m.MaxActiveModels), 0), 1)
}

// rendezvousHome is the index of the candidate with the highest rendezvous
// (highest-random-weight) weight for adapter, -1 for no candidates. Each
// candidate's weight depends only on the adapter and its own address, so
// the home stays put as other servers come and go, and every EPP replica
// agrees on it.
func rendezvousHome(adapter string, eps []*endpoint.Endpoint) int {
	best, bestW := -1, uint64(0)
	key := rendezvousKey(adapter)
	for i, e := range eps {
		if w := rendezvousWeight(key, e.HostPortHash); best < 0 || w > bestW {
			best, bestW = i, w
		}
	}
	return best
}

// rendezvousKey is FNV-1a of adapter, hashed once per request.
func rendezvousKey(adapter string) uint64 {
	h := uint64(14695981039346656037)
	for i := range len(adapter) {
		h = (h ^ uint64(adapter[i])) * 1099511628211
	}
	return h
}

// rendezvousWeight mixes the adapter's and the endpoint's hashes by
// splitmix64's finalizer, whose avalanche gives every (adapter, endpoint)
// pair an unrelated weight, at a few nanoseconds per candidate.
func rendezvousWeight(key, identity uint64) uint64 {
	h := key ^ identity*0x9e3779b97f4a7c15
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}
