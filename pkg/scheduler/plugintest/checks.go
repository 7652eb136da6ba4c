package plugintest

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Sizes are the candidate-set sizes every check runs with.
var Sizes = []int{0, 1, 7, 100}

// Filter checks the Filter contract for f on req.
func Filter(t *testing.T, f scheduler.Filter, req *scheduler.Request) {
	t.Helper()
	for _, n := range Sizes {
		eps := Endpoints(n, uint64(n)+1)
		before := take(eps)
		got := f.Filter(ctx, State(1), req, eps)
		before.check(t, eps, f.TypedName().String())
		if !isOrderedSubset(got, eps) {
			t.Errorf("%s: output is not a subset of the input in input order (n=%d)", f.TypedName(), n)
		}
		again := f.Filter(ctx, State(1), req, eps)
		if !slices.Equal(got, again) {
			t.Errorf("%s: not deterministic for a seed (n=%d)", f.TypedName(), n)
		}
	}
	eps := Endpoints(20, 3)
	concurrently(func(int) { f.Filter(ctx, State(2), req, eps) })
}

// Scorer checks the Scorer contract for s on req.
func Scorer(t *testing.T, s scheduler.Scorer, req *scheduler.Request) {
	t.Helper()
	for _, n := range Sizes {
		eps := Endpoints(n, uint64(n)+1)
		before := take(eps)
		got := s.Score(ctx, State(1), req, eps)
		before.check(t, eps, s.TypedName().String())
		if len(got) != n {
			t.Fatalf("%s: returned %d scores for %d endpoints", s.TypedName(), len(got), n)
		}
		for i, v := range got {
			if !(v >= 0 && v <= 1) {
				t.Errorf("%s: score[%d] = %v, outside [0,1]", s.TypedName(), i, v)
			}
		}
		again := s.Score(ctx, State(1), req, eps)
		if !slices.Equal(got, again) {
			t.Errorf("%s: not deterministic for a seed (n=%d)", s.TypedName(), n)
		}
		if w, ok := s.(scheduler.ScoreWriter); ok {
			into := make([]float64, n)
			w.ScoreInto(ctx, State(1), req, eps, into)
			if !slices.Equal(got, into) {
				t.Errorf("%s: ScoreInto wrote %v, Score returned %v (n=%d)", s.TypedName(), into, got, n)
			}
		}
	}
	eps := Endpoints(20, 3)
	concurrently(func(int) { s.Score(ctx, State(2), req, eps) })
}

// Picker checks the Picker contract for p on req.
func Picker(t *testing.T, p scheduler.Picker, req *scheduler.Request) {
	t.Helper()
	for _, n := range Sizes[1:] { // pickers are only called with candidates
		eps := Endpoints(n, uint64(n)+1)
		before := take(eps)
		got, err := p.Pick(ctx, State(1), req, scoredOf(eps))
		before.check(t, eps, p.TypedName().String())
		if err != nil || len(got) == 0 {
			t.Fatalf("%s: Pick(n=%d) = %v, %v; want at least one endpoint", p.TypedName(), n, got, err)
		}
		if !distinctMembers(got, eps) {
			t.Errorf("%s: picked endpoints not distinct members of the input (n=%d)", p.TypedName(), n)
		}
		again, _ := p.Pick(ctx, State(1), req, scoredOf(eps))
		if !slices.Equal(got, again) {
			t.Errorf("%s: not deterministic for a seed (n=%d)", p.TypedName(), n)
		}
	}
	eps := Endpoints(20, 3)
	concurrently(func(i int) { _, _ = p.Pick(ctx, State(uint64(i)), req, scoredOf(eps)) })
}

func scoredOf(eps []*endpoint.Endpoint) []scheduler.Scored {
	out := make([]scheduler.Scored, len(eps))
	for i, e := range eps {
		out[i] = scheduler.Scored{Endpoint: e, Score: float64(i%5) / 4}
	}
	return out
}

func isOrderedSubset(sub, all []*endpoint.Endpoint) bool {
	j := 0
	for _, e := range sub {
		for j < len(all) && all[j] != e {
			j++
		}
		if j == len(all) {
			return false
		}
		j++
	}
	return true
}

func distinctMembers(got, all []*endpoint.Endpoint) bool {
	seen := map[*endpoint.Endpoint]bool{}
	for _, e := range got {
		if seen[e] || !slices.Contains(all, e) {
			return false
		}
		seen[e] = true
	}
	return true
}

// Screener checks the Screener contract, which is the Filter contract, for
// s on req.
func Screener(t *testing.T, s scheduler.Screener, req *scheduler.Request) {
	t.Helper()
	Filter(t, screenerAsFilter{s}, req)
}

type screenerAsFilter struct{ scheduler.Screener }

func (s screenerAsFilter) Filter(ctx context.Context, st *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	return s.Screen(ctx, st, req, eps)
}

// FairnessSource checks the FairnessSource contract for s on headers (a
// request that should get an ID, lower-case names): headers never modified,
// the same answer every time and from concurrent calls, and no panic on a
// request without headers.
func FairnessSource(t *testing.T, s scheduler.FairnessSource, headers map[string]string) {
	t.Helper()
	before := maps.Clone(headers)
	want := s.FairnessID(ctx, headers)
	if !maps.Equal(before, headers) {
		t.Errorf("%s modified the request headers", s.TypedName())
	}
	if again := s.FairnessID(ctx, headers); again != want {
		t.Errorf("%s: not deterministic: %q then %q", s.TypedName(), want, again)
	}
	s.FairnessID(ctx, nil)
	s.FairnessID(ctx, map[string]string{})
	concurrently(func(int) {
		if got := s.FairnessID(ctx, headers); got != want {
			t.Errorf("%s: concurrent call gave %q, want %q", s.TypedName(), got, want)
		}
	})
}
