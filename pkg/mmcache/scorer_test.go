package mmcache

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// resolving is a handle whose config holds plugins.
func resolving(plugins ...scheduler.Plugin) *scheduler.Handle {
	return (&scheduler.Handle{}).WithLookup(func(name string) (scheduler.Plugin, bool) {
		for _, p := range plugins {
			if p.TypedName().Name == name {
				return p, true
			}
		}
		return nil, false
	})
}

func TestScorerScoresTheMatch(t *testing.T) {
	t.Parallel()
	pool := eps(3)
	p := newProducer(t, "", poolOf(pool))
	pl, err := ScorerFactory("mm-scorer", json.RawMessage(`{"producerName":"mm"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := pl.(*Scorer)
	if err := s.Resolve(resolving(p, s)); err != nil {
		t.Fatal(err)
	}
	route(p, chatWith(t, "a", imagePart("https://x/a.png"), imagePart("https://x/b.png")), pool, pool[0], nil)
	route(p, chatWith(t, "b", imagePart("https://x/b.png")), pool, pool[1], nil)
	score := func(req *scheduler.Request, cands []*endpoint.Endpoint) []float64 {
		state := plugintest.State(1)
		p.Produce(ctx, state, req, pool)
		return s.Score(ctx, state, req, cands)
	}
	req := chatWith(t, "c", imagePart("https://x/a.png"), imagePart("https://x/b.png"), imagePart("https://x/c.png"))
	if got, want := score(req, pool), []float64{2.0 / 3, 1.0 / 3, 0}; !slices.Equal(got, want) {
		t.Errorf("scores %v, want %v", got, want)
	}
	if got, want := score(req, []*endpoint.Endpoint{pool[1]}), []float64{1.0 / 3}; !slices.Equal(got, want) {
		t.Errorf("scores of a filtered candidate set %v, want %v", got, want)
	}
	if got := score(chatWith(t, "text only"), pool); !slices.Equal(got, []float64{0, 0, 0}) {
		t.Errorf("a request without items scores %v, want zeros", got)
	}
	plugintest.Scorer(t, s, req)
	plugintest.Scorer(t, NewScorer("unresolved", ScorerParams{}, nil), req)
}

func TestScorerResolveErrors(t *testing.T) {
	t.Parallel()
	p := newProducer(t, "", nil)
	other := NewScorer("not-a-producer", ScorerParams{}, nil)
	tests := []struct {
		params string
		h      *scheduler.Handle
		want   string
	}{
		{`{"producerName":"missing"}`, resolving(p), `producerName: no plugin named "missing" in the config; add an mm-embeddings-cache-producer named so, or name yours`},
		{`{"producerName":"not-a-producer"}`, resolving(p, other), `producerName: plugin "not-a-producer" has type "mm-embeddings-cache-scorer", want "mm-embeddings-cache-producer"`},
		{`{}`, resolving(p), "producerName: not set, and the config does not hold exactly one mm-embeddings-cache-producer"},
		{`{"producerName":"mm"}`, nil, "no plugin handle"},
	}
	for _, tc := range tests {
		pl, err := ScorerFactory("s", json.RawMessage(tc.params), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pl.(*Scorer).Resolve(tc.h); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.params, err, tc.want)
		}
	}
	if _, err := ScorerFactory("s", json.RawMessage(`{"producer":"mm"}`), nil); err == nil || !strings.Contains(err.Error(), `unknown field "producer"`) {
		t.Errorf("unknown parameter: %v", err)
	}
}
