package scheduler_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/pickers"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// writer is a ScoreWriter writing preset values; Score would return the
// same.
type writer struct {
	fixed
	gotZeroed bool
}

func (w *writer) ScoreInto(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	w.gotZeroed = len(out) == len(eps) && !slices.ContainsFunc(out, func(v float64) bool { return v != 0 })
	copy(out, w.scores)
}

func TestScoreWritersShareTheRunsAllocation(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	a := &writer{fixed: fixed{name: "a", scores: []float64{0.2, 1.5, 0.5}}} // 1.5 clamps to 1
	b := &fixed{name: "b", scores: []float64{1, 0, 0.5}}
	c := &writer{fixed: fixed{name: "c", scores: []float64{-1, 0.5, 1}}} // -1 clamps to 0
	p := &scheduler.Profile{Name: "p", Picker: maxScore(t), Scorers: []scheduler.WeightedScorer{
		{Scorer: a, Weight: 2}, {Scorer: b, Weight: 1}, {Scorer: c, Weight: 1}}}
	res, err := p.Run(context.Background(), plugintest.State(1), plugintest.Request("m", 10), eps)
	if err != nil {
		t.Fatal(err)
	}
	if !a.gotZeroed || !c.gotZeroed {
		t.Error("ScoreInto got a slice that was not zeroed or not as long as the endpoints")
	}
	want := [][]float64{{0.2, 1, 0.5}, {1, 0, 0.5}, {0, 0.5, 1}}
	for i, ss := range res.PerScorer {
		if d := cmp.Diff(want[i], ss.Scores); d != "" {
			t.Errorf("scorer %s (-want +got)\n%s", ss.Scorer, d)
		}
		if cap(ss.Scores) != len(ss.Scores) {
			t.Errorf("scorer %s: cap %d > len %d, an append would write over its neighbour", ss.Scorer, cap(ss.Scores), len(ss.Scores))
		}
	}
	if d := cmp.Diff([]float64{1.4, 2.5, 2.5}, res.Totals); d != "" {
		t.Errorf("totals (-want +got)\n%s", d)
	}
}

// keeper is a picker that (against the Picker contract) keeps its input.
type keeper struct{ kept []scheduler.Scored }

func (k *keeper) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "keeper", Name: "k"}
}

func (k *keeper) Pick(_ context.Context, _ *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	k.kept = scored
	return []*endpoint.Endpoint{scored[0].Endpoint}, nil
}

// TestPickerInputIsRecycled: the scored slice is reused once Pick returns,
// cleared first, so a picker keeping it sees no endpoint rather than
// another request's. Not parallel: reading the kept slice after Run reads
// pooled memory another test's run may be writing (a race by design).
func TestPickerInputIsRecycled(t *testing.T) {
	k := &keeper{}
	p := &scheduler.Profile{Name: "p", Picker: k}
	if _, err := p.Run(context.Background(), plugintest.State(1), plugintest.Request("m", 10), plugintest.Endpoints(5, 1)); err != nil {
		t.Fatal(err)
	}
	for i, s := range k.kept {
		if s.Endpoint != nil {
			t.Errorf("kept[%d] still holds %s after Run", i, s.Endpoint.Name)
		}
	}
}

// TestConcurrentRunsOwnTheirInputs runs profiles concurrently with a picker
// that shuffles its input: under -race, a scored slice shared between two
// runs is a data race, and a run seeing another's candidates picks outside
// its own.
func TestConcurrentRunsOwnTheirInputs(t *testing.T) {
	t.Parallel()
	p := &scheduler.Profile{Name: "p", Picker: pickers.NewRandom("r", pickers.Params{MaxNumOfEndpoints: 4})}
	var wg sync.WaitGroup
	for g := range 8 {
		eps := plugintest.Endpoints(10+g, uint64(g)+1)
		wg.Go(func() {
			for i := range 200 {
				res, err := p.Run(context.Background(), plugintest.State(uint64(i)), plugintest.Request("m", 10), eps)
				if err != nil {
					t.Error(err)
					return
				}
				for _, e := range res.Targets {
					if !slices.Contains(eps, e) {
						t.Errorf("goroutine %d picked %s, not among its candidates", g, e.Name)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestStateValuesBeyondTheInlineSlots(t *testing.T) {
	t.Parallel()
	first := scheduler.NewKey[int]("first")
	var late scheduler.Key[string]
	for i := range 10 { // past the slots a State holds inline
		late = scheduler.NewKey[string](fmt.Sprint("late-", i))
	}
	a, b := plugintest.State(1), plugintest.State(2)
	first.Set(a, 1)
	first.Set(b, 2)
	late.Set(a, "a")
	if v, _ := first.Get(a); v != 1 {
		t.Errorf("first in a = %d after growing, want 1", v)
	}
	if v, _ := first.Get(b); v != 2 {
		t.Errorf("first in b = %d, want 2", v)
	}
	if v, ok := late.Get(a); !ok || v != "a" {
		t.Errorf("late in a = %q, %v", v, ok)
	}
	if _, ok := late.Get(b); ok {
		t.Error("late is set in b")
	}
}
