package pickers

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestMaxScorePick(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	tests := []struct {
		name   string
		n      int
		scores []float64
		want   []string
	}{
		{name: "single", n: 1, scores: []float64{0.3}, want: []string{"e0"}},
		{name: "best", n: 1, scores: []float64{0.2, 0.9, 0.5, 0.7}, want: []string{"e1"}},
		{name: "top two in order", n: 2, scores: []float64{0.2, 0.9, 0.5, 0.7}, want: []string{"e1", "e3"}},
		{name: "top three", n: 3, scores: []float64{0.2, 0.9, 0.5, 0.7}, want: []string{"e1", "e3", "e2"}},
		{name: "n beyond candidates", n: 10, scores: []float64{0.2, 0.9, 0.5, 0.7}, want: []string{"e1", "e3", "e2", "e0"}},
		{name: "scores above 1", n: 2, scores: []float64{2.5, 0.1, 3}, want: []string{"e2", "e0"}},
		{name: "NaN ranks last", n: 1, scores: []float64{nan, 0}, want: []string{"e1"}},
		{name: "NaN ranks last in list", n: 3, scores: []float64{nan, 0, -1}, want: []string{"e1", "e2", "e0"}},
		{name: "all NaN", n: 1, scores: []float64{nan}, want: []string{"e0"}},
		{name: "infinities", n: 3, scores: []float64{math.Inf(-1), math.Inf(1), 0}, want: []string{"e1", "e2", "e0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewMaxScore("m", Params{MaxNumOfEndpoints: tc.n})
			if err != nil {
				t.Fatal(err)
			}
			for seed := range uint64(20) { // no ties: the seed must not matter
				if diff := cmp.Diff(tc.want, pickNames(t, p, seed, scoredOf(tc.scores...))); diff != "" {
					t.Fatalf("seed %d (-want +got):\n%s", seed, diff)
				}
			}
		})
	}
}

// reference is the definition of max-score-picker: shuffle, stable-sort by
// score descending (NaN last), take n.
func reference(state *scheduler.State, scored []scheduler.Scored, n int) []*endpoint.Endpoint {
	state.Rand.Shuffle(len(scored), func(i, j int) { scored[i], scored[j] = scored[j], scored[i] })
	slices.SortStableFunc(scored, func(a, b scheduler.Scored) int {
		switch sa, sb := rankable(a.Score), rankable(b.Score); {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	out := []*endpoint.Endpoint{}
	for _, s := range scored[:min(n, len(scored))] {
		out = append(out, s.Endpoint)
	}
	return out
}

// TestMaxScoreMatchesReference checks, for N > 1 on inputs full of ties,
// that the picker has the distribution of the shuffle-then-stable-sort
// definition: the same set of possible results (collected from both over
// many seeds), each equally likely, as every result of the definition is.
func TestMaxScoreMatchesReference(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	tests := []struct {
		name     string
		n        int
		scores   []float64
		outcomes int // product of run permutations and cut-off choices
	}{
		{name: "order of top ties, one of three", n: 3, scores: []float64{1, 0.5, 1, 0.5, 0, 0.5}, outcomes: 2 * 3},
		{name: "all tied", n: 3, scores: []float64{0.5, 0.5, 0.5, 0.5, 0.5}, outcomes: 5 * 4 * 3},
		{name: "three runs", n: 4, scores: []float64{0.2, 0.5, 1, 0.2, 0.5, 0.2}, outcomes: 2 * 3},
		{name: "cut-off ties first", n: 2, scores: []float64{0.9, 0.1, 0.9, 0.9}, outcomes: 3 * 2},
		{name: "NaN run", n: 3, scores: []float64{nan, nan, 1}, outcomes: 2},
		{name: "no ties", n: 2, scores: []float64{0.1, 0.3, 0.2}, outcomes: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewMaxScore("m", Params{MaxNumOfEndpoints: tc.n})
			if err != nil {
				t.Fatal(err)
			}
			trials := 100 * tc.outcomes
			got, want := map[string]int{}, map[string]int{}
			for seed := range uint64(trials) {
				got[fmt.Sprint(pickNames(t, p, seed, scoredOf(tc.scores...)))]++
				want[fmt.Sprint(names(reference(plugintest.State(seed), scoredOf(tc.scores...), tc.n)))]++
			}
			if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got))); diff != "" {
				t.Fatalf("possible results (-reference +got):\n%s", diff)
			}
			if len(got) != tc.outcomes {
				t.Fatalf("%d possible results, want %d", len(got), tc.outcomes)
			}
			for outcome, count := range got {
				near(t, outcome, count, trials, 1/float64(tc.outcomes))
			}
		})
	}
}

// TestMaxScoreTieBreakUniform checks the N=1 reservoir path: every endpoint
// sharing the top score is picked equally often, the others never.
func TestMaxScoreTieBreakUniform(t *testing.T) {
	t.Parallel()
	scored := scoredOf(0.9, 0.5, 0.9, 0.1, 0.9, 0.9, 0.8, 0.9)
	tied := []string{"e0", "e2", "e4", "e5", "e7"}
	p, err := NewMaxScore("m", Params{MaxNumOfEndpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	const trials = 5000
	counts := countFirst(t, p, scored, trials)
	for i := range scored {
		name := fmt.Sprintf("e%d", i)
		if !slices.Contains(tied, name) {
			if counts[name] != 0 {
				t.Errorf("%s (not top) picked %d times", name, counts[name])
			}
			continue
		}
		near(t, name, counts[name], trials, 1/float64(len(tied)))
	}
}

func TestMaxScoreSinglePickAllocs(t *testing.T) {
	p, err := NewMaxScore("m", Params{MaxNumOfEndpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	scored := scoredOf(slices.Repeat([]float64{0.5, 1, 1, 0.2}, 25)...)
	state := plugintest.State(1)
	allocs := testing.AllocsPerRun(100, func() { _, _ = p.Pick(ctx, state, nil, scored) })
	if allocs > 1 {
		t.Errorf("Pick with maxNumOfEndpoints 1 made %v allocations, want 1 (the result)", allocs)
	}
}

func BenchmarkMaxScorePicker(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("maxNumOfEndpoints=%d", n), func(b *testing.B) {
			p, err := NewMaxScore("m", Params{MaxNumOfEndpoints: n})
			if err != nil {
				b.Fatal(err)
			}
			benchPicker(b, p)
		})
	}
}
