package latency

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// scoreWith scores eps with the given predictions (by endpoint index).
func scoreWith(t *testing.T, raw string, eps []*endpoint.Endpoint, preds ...Prediction) []float64 {
	t.Helper()
	p := newProducer(t, "", &testClock{now: time.Unix(1, 0)})
	s, err := ScorerFactory("s", json.RawMessage(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.(*Scorer)
	sc.producer = p
	st := scheduler.NewState(1, time.Unix(1, 0))
	if preds != nil {
		m := map[string]Prediction{}
		for i, pr := range preds {
			m[eps[i].HostPort] = pr
		}
		noteKey.Set(st, &note{owner: p, preds: m})
	}
	return sc.Score(ctx, st, chat(10, nil), eps)
}

func TestScorerTiers(t *testing.T) {
	t.Parallel()
	eps := endpoints(0, 0, 0)
	// Within SLO: least packs (the smallest headroom wins), most spreads.
	fits := []Prediction{{TTFTHeadroom: 10, TPOTHeadroom: 5}, {TTFTHeadroom: 50, TPOTHeadroom: 5}, {TTFTHeadroom: -1, TPOTHeadroom: 5, Dispatched: 0}}
	if got := scoreWith(t, "", eps, fits...); !(got[0] > got[1] && got[1] > 0 && got[2] == 0) {
		t.Errorf("least: scores %v, want the tighter fit first and the one missing its SLO at 0", got)
	}
	if got := scoreWith(t, `{"headroomSelectionStrategy":"most"}`, eps, fits...); !(got[1] > got[0] && got[2] == 0) {
		t.Errorf("most: scores %v, want the wider margin first", got)
	}
	// Without SLOs every headroom is −prediction: the lowest prediction
	// wins, and an idle endpoint is preferred over busy ones.
	noSLO := []Prediction{{TTFT: 80, TTFTHeadroom: -80, TPOTHeadroom: -20, Dispatched: 2}, {TTFT: 30, TTFTHeadroom: -30, TPOTHeadroom: -20, Dispatched: 1}, {TTFT: 60, TTFTHeadroom: -60, TPOTHeadroom: -20, Dispatched: 3}}
	got := scoreWith(t, "", eps, noSLO...)
	if !(got[1] > got[2] && got[2] > got[0]) {
		t.Errorf("no SLO: scores %v, want ordered by predicted TTFT (30 < 60 < 80)", got)
	}
	noSLO[0].Dispatched = 0
	if got := scoreWith(t, "", eps, noSLO...); !(got[0] > 0 && got[1] == 0 && got[2] == 0) {
		t.Errorf("idle endpoint: scores %v, want only the idle one scored", got)
	}
	// Deficits: missing only TPOT beats missing TTFT.
	miss := []Prediction{{TTFTHeadroom: -5, TPOTHeadroom: 1, Dispatched: 1}, {TTFTHeadroom: 1, TPOTHeadroom: -5, Dispatched: 1}, {TTFTHeadroom: -5, TPOTHeadroom: -5, Dispatched: 1}}
	if got := scoreWith(t, "", eps, miss...); !(got[1] > 0 && got[0] == 0 && got[2] == 0) {
		t.Errorf("deficits: scores %v, want the TPOT-only miss scored alone", got)
	}
}

// TestScorerFallsBackToComposite: before the models are ready the score is
// free KV, relative queue and prefix match.
func TestScorerFallsBackToComposite(t *testing.T) {
	t.Parallel()
	eps := endpoints(0, 4, 8)
	got := scoreWith(t, `{"compositePrefixWeight":0}`, eps)
	if !slices.IsSortedFunc(got, func(a, b float64) int { return int((b - a) * 1000) }) || got[0] != 0.85 || got[2] != 0.35 {
		t.Errorf("composite scores %v, want (0.7+1)/2 = 0.85 … (0.7+0)/2 = 0.35 by queue", got)
	}
	if got := scoreWith(t, "", nil); len(got) != 0 {
		t.Errorf("no candidates: %v", got)
	}
}

func TestScorerParamsAndResolve(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`{"ttftWeight":-1}`:                   "ttftWeight: must be a finite number >= 0",
		`{"headroomSelectionStrategy":"mid"}`: `headroomSelectionStrategy: must be "least" or "most", got "mid"`,
		`{"epsilonExploreNeg":0.1}`:           `unknown field "epsilonExploreNeg"`,
	} {
		pl, err := ScorerFactory("x", json.RawMessage(raw), nil)
		if err == nil || pl != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: plugin %v, err %v; want an error containing %q", raw, pl, err, want)
		}
	}
	s, _ := ScorerFactory("x", nil, nil)
	plugins := map[string]scheduler.Plugin{"other": s}
	h := (&scheduler.Handle{}).WithLookup(func(n string) (scheduler.Plugin, bool) { p, ok := plugins[n]; return p, ok })
	if err := s.(*Scorer).Resolve(h); err == nil || !strings.Contains(err.Error(), `no plugin named "predicted-latency-producer"`) {
		t.Errorf("Resolve without a producer = %v", err)
	}
	s, _ = ScorerFactory("x", json.RawMessage(`{"latencyPredictionInfoProducerName":"other"}`), nil)
	if err := s.(*Scorer).Resolve(h); err == nil || !strings.Contains(err.Error(), "is not a predicted-latency-producer") {
		t.Errorf("Resolve naming a scorer = %v", err)
	}
}
