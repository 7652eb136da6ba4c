package pickers

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

var ctx = context.Background()

// scoredOf returns endpoints named e0, e1, … with the given scores.
func scoredOf(scores ...float64) []scheduler.Scored {
	out := make([]scheduler.Scored, len(scores))
	for i, s := range scores {
		e := endpoint.New(endpoint.Spec{Name: fmt.Sprintf("e%d", i), Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8000})
		out[i] = scheduler.Scored{Endpoint: e, Score: s}
	}
	return out
}

func names(eps []*endpoint.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Name
	}
	return out
}

// pickNames runs p on a copy of scored (pickers may reorder it) with a state
// seeded by seed.
func pickNames(t testing.TB, p scheduler.Picker, seed uint64, scored []scheduler.Scored) []string {
	t.Helper()
	got, err := p.Pick(ctx, plugintest.State(seed), nil, append([]scheduler.Scored(nil), scored...))
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return names(got)
}

// countFirst counts, over seeds 1..trials, how often each endpoint is picked
// first.
func countFirst(t testing.TB, p scheduler.Picker, scored []scheduler.Scored, trials int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for seed := range uint64(trials) {
		counts[pickNames(t, p, seed+1, scored)[0]]++
	}
	return counts
}

// near fails unless count is within 5 standard deviations of a binomial
// with trials and p. The seeds are fixed, so the test is deterministic; the
// bound only guards against a biased implementation, not bad luck.
func near(t *testing.T, what string, count, trials int, p float64) {
	t.Helper()
	mean := float64(trials) * p
	sd := max(1, math.Sqrt(float64(trials)*p*(1-p)))
	if d := float64(count) - mean; d > 5*sd || d < -5*sd {
		t.Errorf("%s: picked %d of %d times, want about %.0f (±%.0f)", what, count, trials, mean, 5*sd)
	}
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("got no error, want one mentioning %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q does not mention %q", err, want)
	}
}

// benchPicker runs p over 100 plugintest endpoints with varied scores.
func benchPicker(b *testing.B, p scheduler.Picker) {
	eps := plugintest.Endpoints(100, 1)
	scored := make([]scheduler.Scored, len(eps))
	for i, e := range eps {
		scored[i] = scheduler.Scored{Endpoint: e, Score: float64(i%10) / 9}
	}
	state := plugintest.State(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Pick(ctx, state, nil, scored); err != nil {
			b.Fatal(err)
		}
	}
}
