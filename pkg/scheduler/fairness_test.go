package scheduler_test

import (
	"context"
	"testing"

	"github.com/openepp/openepp/pkg/scheduler"
)

// headerSource answers with the value of one header.
type headerSource struct {
	name, header string
	asked        int
}

func (h *headerSource) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "header-source", Name: h.name}
}

func (h *headerSource) FairnessID(_ context.Context, headers map[string]string) string {
	h.asked++
	return headers[h.header]
}

// TestFirstFairnessSourceWins: the sources are asked in configuration
// order and the first non-empty answer is the fairness ID; without sources
// (or answers) it is "".
func TestFirstFairnessSourceWins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plain, err := scheduler.New(scheduler.Options{Handler: bothProfiles{}, Profiles: []*scheduler.Profile{{Name: "b", Picker: maxScore(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := plain.FairnessID(ctx, map[string]string{"x-a": "a"}); got != "" {
		t.Errorf("without sources: %q", got)
	}
	a, b := &headerSource{name: "a", header: "x-a"}, &headerSource{name: "b", header: "x-b"}
	s, err := scheduler.New(scheduler.Options{Handler: bothProfiles{}, Plugins: []scheduler.Plugin{a, b},
		Profiles: []*scheduler.Profile{{Name: "b", Picker: maxScore(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.FairnessID(ctx, map[string]string{"x-a": "1", "x-b": "2"}); got != "1" || b.asked != 0 {
		t.Errorf("fairness ID %q (b asked %d times), want 1 from the first source", got, b.asked)
	}
	if got := s.FairnessID(ctx, map[string]string{"x-b": "2"}); got != "2" {
		t.Errorf("fairness ID %q, want 2 from the second source", got)
	}
	if got := s.FairnessID(ctx, nil); got != "" {
		t.Errorf("fairness ID %q with no headers", got)
	}
}
