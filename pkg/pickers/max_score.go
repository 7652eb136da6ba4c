package pickers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// MaxScoreType is the type name of MaxScore.
const MaxScoreType = "max-score-picker"

// MaxScore picks the highest-scored endpoints, breaking ties at random. It is
// the default picker.
//
// Inputs: the weighted total scores. Parameters: maxNumOfEndpoints N (1).
// Rule: the result is the N best endpoints by score, highest first, with
// every choice and order among equal scores equally likely. That is the
// distribution of "shuffle, then stable-sort by score descending, then take
// N", computed without the shuffle or the sort: for N = 1 a single pass keeps
// the best so far and replaces it by the k-th endpoint tied with it with
// probability 1/k (reservoir sampling), which is O(n), allocates only the
// result and draws randomness only on ties; for N > 1 a heap keeps the N best
// (O(n log N)) and ties are then randomized (see pickTop). A NaN score ranks
// below every number.
type MaxScore struct {
	name   scheduler.TypedName
	params Params
}

var _ scheduler.Picker = (*MaxScore)(nil)

// NewMaxScore validates p and returns the picker.
func NewMaxScore(name string, p Params) (*MaxScore, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &MaxScore{name: scheduler.TypedName{Type: MaxScoreType, Name: name}, params: p}, nil
}

// MaxScoreFactory builds a MaxScore from config.
func MaxScoreFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p, err := decodeParams(raw)
	if err != nil {
		return nil, err
	}
	picker, err := NewMaxScore(name, p)
	if err != nil {
		return nil, err
	}
	return picker, nil
}

// MaxScoreRegistration describes the plugin type for the registry.
func MaxScoreRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    MaxScoreType,
		Factory: MaxScoreFactory,
		Params:  Params{},
		Summary: "Picks the highest-scored endpoints, ties broken uniformly at random (the default picker).",
	}
}

// TypedName implements scheduler.Plugin.
func (p *MaxScore) TypedName() scheduler.TypedName { return p.name }

// Pick implements scheduler.Picker.
func (p *MaxScore) Pick(_ context.Context, state *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	if len(scored) == 0 {
		return nil, errNoScored
	}
	if p.params.MaxNumOfEndpoints == 1 || len(scored) == 1 {
		return []*endpoint.Endpoint{scored[pickMax(state, scored)].Endpoint}, nil
	}
	return pickTop(state, scored, min(p.params.MaxNumOfEndpoints, len(scored))), nil
}

// pickTop returns the n best endpoints, best first, distributed exactly as
// shuffle-then-stable-sort would give but drawing randomness only for ties.
//
// A heap first selects the n best by (score, index). Every endpoint scoring
// above the cut-off (the n-th best score) is then certainly in; those tied
// with the cut-off compete for the remaining k slots, and the heap took the
// first k of them by index, so reservoir sampling over the later ones makes
// the chosen k a uniform subset. Finally each run of equal scores is
// shuffled, which makes the order within ties uniform.
func pickTop(state *scheduler.State, scored []scheduler.Scored, n int) []*endpoint.Endpoint {
	top := newTopN(n)
	for i, s := range scored {
		top.offer(ranked{major: rankable(s.Score), idx: i})
	}
	best := top.best()
	sampleCutoff(state, scored, best)
	shuffleRuns(state, best)
	out := make([]*endpoint.Endpoint, len(best))
	for i, r := range best {
		out[i] = scored[r.idx].Endpoint
	}
	return out
}

// sampleCutoff gives every endpoint tied with the cut-off score of best (the
// last, worst entry) an equal chance at the cut-off's slots: the heap filled
// them with the lowest-indexed tied endpoints, so Algorithm R over the tied
// endpoints after those keeps the slots a uniform subset.
func sampleCutoff(state *scheduler.State, scored []scheduler.Scored, best []ranked) {
	last := best[len(best)-1]
	first := len(best) - 1
	for first > 0 && best[first-1].major == last.major {
		first--
	}
	slots, seen := len(best)-first, len(best)-first
	for i := last.idx + 1; i < len(scored); i++ {
		if rankable(scored[i].Score) != last.major {
			continue
		}
		seen++
		if j := state.Rand.IntN(seen); j < slots {
			best[first+j].idx = i
		}
	}
}

// shuffleRuns puts each run of equal scores in best in uniformly random
// order.
func shuffleRuns(state *scheduler.State, best []ranked) {
	for start := 0; start < len(best); {
		end := start + 1
		for end < len(best) && best[end].major == best[start].major {
			end++
		}
		run := best[start:end]
		state.Rand.Shuffle(len(run), func(i, j int) { run[i], run[j] = run[j], run[i] })
		start = end
	}
}

// pickMax returns the index of a highest score, chosen uniformly among ties.
func pickMax(state *scheduler.State, scored []scheduler.Scored) int {
	best, ties := 0, 1
	top := rankable(scored[0].Score)
	for i := 1; i < len(scored); i++ {
		s := rankable(scored[i].Score)
		switch {
		case s > top:
			best, top, ties = i, s, 1
		case s == top:
			ties++
			if state.Rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}
