package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
// *FilteredError naming it. The result is the caller's to keep; only the
// scored slice the picker gets is reused once Pick returns.
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
	totals, per := p.score(ctx, state, req, eps)
	targets, err := p.pick(ctx, state, req, eps, totals)
	if err != nil {
		return nil, fmt.Errorf("profile %q: picker %s: %w", p.Name, p.Picker.TypedName(), err)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("profile %q: picker %s picked nothing: %w", p.Name, p.Picker.TypedName(), ErrNoCandidates)
	}
	return &ProfileResult{Targets: targets, Candidates: eps, Totals: totals, PerScorer: per}, nil
}

// score runs the scorers on eps and returns the weighted totals and each
// scorer's clamped scores. One allocation holds the totals and every
// ScoreWriter's scores: the result keeps them all, so they live and die
// together.
func (p *Profile) score(ctx context.Context, state *State, req *Request, eps []*endpoint.Endpoint) ([]float64, []ScorerScores) {
	n := len(eps)
	buf := make([]float64, (1+p.writers())*n)
	totals, buf := buf[:n:n], buf[n:]
	per := make([]ScorerScores, len(p.Scorers))
	for i, ws := range p.Scorers {
		t := p.timing.start()
		var scores []float64
		if w, ok := ws.Scorer.(ScoreWriter); ok {
			scores, buf = buf[:n:n], buf[n:]
			w.ScoreInto(ctx, state, req, eps, scores)
		} else {
			scores = ws.Scorer.Score(ctx, state, req, eps)
		}
		p.timing.done(PointScorer, ws.Scorer, t)
		per[i] = ScorerScores{Scorer: ws.Scorer.TypedName(), Weight: ws.Weight}
		if len(scores) != n {
			p.violations.Add(1)
			continue
		}
		p.accumulate(scores, ws.Weight, totals)
		per[i].Scores = scores
	}
	return totals, per
}

// scoredPool recycles the slices handed to Picker.Pick.
var scoredPool = sync.Pool{New: func() any { return new([]Scored) }}

// pick hands eps with their totals to the picker. The Picker contract gives
// the scored slice to that one call, so it goes back to scoredPool when Pick
// returns; it is cleared first, so the pool keeps no endpoint alive.
func (p *Profile) pick(ctx context.Context, state *State, req *Request, eps []*endpoint.Endpoint, totals []float64) ([]*endpoint.Endpoint, error) {
	sp := scoredPool.Get().(*[]Scored)
	scored := slices.Grow((*sp)[:0], len(eps))[:len(eps)]
	for i, e := range eps {
		scored[i] = Scored{Endpoint: e, Score: totals[i]}
	}
	t := p.timing.start()
	targets, err := p.Picker.Pick(ctx, state, req, scored)
	p.timing.done(PointPicker, p.Picker, t)
	clear(scored)
	*sp = scored[:0]
	scoredPool.Put(sp)
	return targets, err
}

// writers counts the profile's scorers that are ScoreWriters.
func (p *Profile) writers() int {
	n := 0
	for _, ws := range p.Scorers {
		if _, ok := ws.Scorer.(ScoreWriter); ok {
			n++
		}
	}
	return n
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
