package scheduler

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/openepp/openepp/pkg/endpoint"
)

// WeightedScorer is a scorer with its weight in a profile.
type WeightedScorer struct {
	Scorer Scorer
	Weight float64
}

// Profile is one filter → score → pick pipeline.
type Profile struct {
	Name    string
	Filters []Filter
	Scorers []WeightedScorer
	Picker  Picker

	// violations counts scorer outputs that were out of [0,1] or misaligned.
	violations atomic.Uint64
	// timing is the owning scheduler's (set by New).
	timing timing
}

// Violations returns how many scorer values were clamped or rejected.
func (p *Profile) Violations() uint64 { return p.violations.Load() }

// Run filters, scores and picks among candidates. An empty candidate set
// returns ErrNoCandidates; a filter that removes the last endpoint returns a
// *FilteredError naming it.
func (p *Profile) Run(ctx context.Context, state *State, req *Request, candidates []*endpoint.Endpoint) (*ProfileResult, error) {
	if len(candidates) == 0 {
		return nil, ErrNoCandidates
	}
	eps := candidates
	for _, f := range p.Filters {
		before := len(eps)
		t := p.timing.start()
		eps = f.Filter(ctx, state, req, eps)
		p.timing.done(PointFilter, f, t)
		if len(eps) == 0 {
			return nil, &FilteredError{Profile: p.Name, Filter: f.TypedName(), Before: before}
		}
	}
	totals := make([]float64, len(eps))
	per := make([]ScorerScores, len(p.Scorers))
	for i, ws := range p.Scorers {
		t := p.timing.start()
		scores := ws.Scorer.Score(ctx, state, req, eps)
		p.timing.done(PointScorer, ws.Scorer, t)
		per[i] = ScorerScores{Scorer: ws.Scorer.TypedName(), Weight: ws.Weight}
		if len(scores) != len(eps) {
			p.violations.Add(1)
			continue
		}
		p.accumulate(scores, ws.Weight, totals)
		per[i].Scores = scores
	}
	scored := make([]Scored, len(eps))
	for i, e := range eps {
		scored[i] = Scored{Endpoint: e, Score: totals[i]}
	}
	t := p.timing.start()
	targets, err := p.Picker.Pick(ctx, state, req, scored)
	p.timing.done(PointPicker, p.Picker, t)
	if err != nil {
		return nil, fmt.Errorf("profile %q: picker %s: %w", p.Name, p.Picker.TypedName(), err)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("profile %q: picker %s picked nothing: %w", p.Name, p.Picker.TypedName(), ErrNoCandidates)
	}
	return &ProfileResult{Targets: targets, Candidates: eps, Totals: totals, PerScorer: per}, nil
}

// accumulate clamps scores into [0,1] in place (the slice belongs to this
// run) and adds weight×score to totals.
func (p *Profile) accumulate(scores []float64, weight float64, totals []float64) {
	for j, v := range scores {
		if !(v >= 0 && v <= 1) { // also catches NaN
			p.violations.Add(1)
			if v > 1 {
				v = 1
			} else {
				v = 0
			}
			scores[j] = v
		}
		totals[j] += weight * v
	}
}
