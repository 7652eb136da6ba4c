package pickers

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// TestWeightedRandomProportions checks that the first pick follows w_i/Σw,
// both on the single-pick path and the A-Res path, and that, sampling without
// replacement, the second pick follows the remaining weights.
func TestWeightedRandomProportions(t *testing.T) {
	t.Parallel()
	weights := []float64{1, 2, 0, 3, 4}
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("maxNumOfEndpoints=%d", n), func(t *testing.T) {
			t.Parallel()
			p, err := NewWeightedRandom("w", Params{MaxNumOfEndpoints: n})
			if err != nil {
				t.Fatal(err)
			}
			const trials = 8000
			first, secondAfterE4, afterE4 := map[string]int{}, map[string]int{}, 0
			for seed := range uint64(trials) {
				got := pickNames(t, p, seed+1, scoredOf(weights...))
				if len(got) != n || (n == 2 && got[0] == got[1]) {
					t.Fatalf("seed %d: got %v, want %d distinct endpoints", seed, got, n)
				}
				first[got[0]]++
				if n == 2 && got[0] == "e4" {
					afterE4++
					secondAfterE4[got[1]]++
				}
			}
			for i, w := range weights {
				name := fmt.Sprintf("e%d", i)
				near(t, "first "+name, first[name], trials, w/10)
			}
			for i, w := range weights[:4] { // given e4 first, the rest weigh 1+2+0+3
				name := fmt.Sprintf("e%d", i)
				near(t, "second after e4: "+name, secondAfterE4[name], afterE4, w/6)
			}
		})
	}
}

// TestWeightedRandomZeroWeights checks that zero (and invalid) weights come
// after every positive weight, and are uniformly ordered among themselves.
func TestWeightedRandomZeroWeights(t *testing.T) {
	t.Parallel()
	scored := scoredOf(0, 0.001, math.NaN(), 5, -1, 0)
	p, err := NewWeightedRandom("w", Params{MaxNumOfEndpoints: 6})
	if err != nil {
		t.Fatal(err)
	}
	const trials = 4000
	third := map[string]int{}
	for seed := range uint64(trials) {
		got := pickNames(t, p, seed+1, scored)
		if head := slices.Sorted(slices.Values(got[:2])); !slices.Equal(head, []string{"e1", "e3"}) {
			t.Fatalf("seed %d: %v, want the positive weights e1, e3 first", seed, got)
		}
		third[got[2]]++
	}
	for _, name := range []string{"e0", "e2", "e4", "e5"} {
		near(t, "third "+name, third[name], trials, 0.25)
	}
}

func TestWeightedRandomAllZeroUniform(t *testing.T) {
	t.Parallel()
	p, err := NewWeightedRandom("w", Params{MaxNumOfEndpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	const trials = 4000
	counts := countFirst(t, p, scoredOf(0, 0, 0, 0, 0), trials)
	for i := range 5 {
		name := fmt.Sprintf("e%d", i)
		near(t, name, counts[name], trials, 0.2)
	}
}

func TestWeightedRandomPick(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		n      int
		scores []float64
		want   []string
	}{
		{name: "single", n: 1, scores: []float64{0.4}, want: []string{"e0"}},
		{name: "only positive", n: 1, scores: []float64{0, 0.7, 0}, want: []string{"e1"}},
		{name: "infinite first", n: 2, scores: []float64{1, math.Inf(1), 0}, want: []string{"e1", "e0"}},
		{name: "infinite single", n: 1, scores: []float64{1, 0, math.Inf(1)}, want: []string{"e2"}},
		{name: "negative and NaN are zero", n: 1, scores: []float64{-1, math.NaN(), 0.1}, want: []string{"e2"}},
		{name: "overflowing total", n: 1, scores: []float64{0, math.MaxFloat64, 0}, want: []string{"e1"}},
		{name: "n beyond candidates", n: 5, scores: []float64{0, 1}, want: []string{"e1", "e0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewWeightedRandom("w", Params{MaxNumOfEndpoints: tc.n})
			if err != nil {
				t.Fatal(err)
			}
			for seed := range uint64(20) {
				if diff := cmp.Diff(tc.want, pickNames(t, p, seed, scoredOf(tc.scores...))); diff != "" {
					t.Fatalf("seed %d (-want +got):\n%s", seed, diff)
				}
			}
		})
	}
}

func TestWeightedRandomSinglePickAllocs(t *testing.T) {
	p, err := NewWeightedRandom("w", Params{MaxNumOfEndpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	scored := scoredOf(slices.Repeat([]float64{0.5, 1, 0, 0.2}, 25)...)
	state := plugintest.State(1)
	if allocs := testing.AllocsPerRun(100, func() { _, _ = p.Pick(ctx, state, nil, scored) }); allocs > 1 {
		t.Errorf("Pick with maxNumOfEndpoints 1 made %v allocations, want 1 (the result)", allocs)
	}
}

func BenchmarkWeightedRandomPicker(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("maxNumOfEndpoints=%d", n), func(b *testing.B) {
			p, err := NewWeightedRandom("w", Params{MaxNumOfEndpoints: n})
			if err != nil {
				b.Fatal(err)
			}
			benchPicker(b, p)
		})
	}
}

// TestWeightedRandomHugeWeights covers weights whose sum overflows: the pick
// must still be one of them, and each must be possible.
func TestWeightedRandomHugeWeights(t *testing.T) {
	t.Parallel()
	p, err := NewWeightedRandom("w", Params{MaxNumOfEndpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	counts := countFirst(t, p, scoredOf(math.MaxFloat64, 0, math.MaxFloat64), 400)
	if diff := cmp.Diff([]string{"e0", "e2"}, slices.Sorted(maps.Keys(counts))); diff != "" {
		t.Errorf("picked (-want +got):\n%s", diff)
	}
}
