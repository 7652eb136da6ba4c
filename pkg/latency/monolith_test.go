package latency

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

func newMonolith(t *testing.T, raw string) *Monolith {
	t.Helper()
	pl, err := MonolithFactory("pl", json.RawMessage(raw), &scheduler.Handle{Log: logr.Discard(), Clock: &testClock{now: time.Unix(1, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	return pl.(*Monolith)
}

// fixedMatch is a prefix source that found the same match for every request.
type fixedMatch struct{ m *prefix.Match }

func (f fixedMatch) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "fixed", Name: "fixed"}
}
func (f fixedMatch) Match(*scheduler.State) (*prefix.Match, bool) {
	return f.m, f.m != nil
}

// picks scores eps n times with the predictions and counts each one's wins,
// checking that every scoring is one-hot.
func picks(t *testing.T, m *Monolith, eps []*endpoint.Endpoint, n int, preds ...Prediction) []int {
	t.Helper()
	wins := make([]int, len(eps))
	for k := range n {
		st := scheduler.NewState(uint64(k+1), time.Unix(1, 0))
		if preds != nil {
			byAddr := map[string]Prediction{}
			for i, pr := range preds {
				byAddr[eps[i].HostPort] = pr
			}
			noteKey.Set(st, &note{owner: m.Producer, preds: byAddr})
		}
		got := m.Score(ctx, st, chat(10, nil), eps)
		ones := 0
		for i, v := range got {
			switch v {
			case 1:
				ones++
				wins[i]++
			case 0:
			default:
				t.Fatalf("score %v: want 1 for the pick and 0 for the others", got)
			}
		}
		if ones != 1 {
			t.Fatalf("scores %v: want exactly one 1", got)
		}
	}
	return wins
}

// TestMonolithPicksWithinTheTiers: the pick is the one-hot score of the
// candidate the tiers and the strategy choose; exploration goes to the
// candidates missing the SLO only as often as epsilonExploreNeg says.
func TestMonolithPicksWithinTheTiers(t *testing.T) {
	t.Parallel()
	eps := endpoints(0, 0, 0)
	fits := []Prediction{{TTFTHeadroom: 10, TPOTHeadroom: 5}, {TTFTHeadroom: 50, TPOTHeadroom: 5}, {TTFTHeadroom: -1, TPOTHeadroom: 5, Dispatched: 1}}
	if w := picks(t, newMonolith(t, `{"selectionMode":"max","epsilonExploreNeg":0}`), eps, 50, fits...); w[0] != 50 {
		t.Errorf("least, max: wins %v, want the tighter fit every time", w)
	}
	if w := picks(t, newMonolith(t, `{"selectionMode":"max","headroomSelectionStrategy":"most","epsilonExploreNeg":0}`), eps, 50, fits...); w[1] != 50 {
		t.Errorf("most, max: wins %v, want the widest margin every time", w)
	}
	// Linear draws by weight: the tighter fit (weight 1) most often, the
	// wider (0.01) rarely, the one missing its SLO never.
	if w := picks(t, newMonolith(t, `{"epsilonExploreNeg":0}`), eps, 400, fits...); !(w[0] > 350 && w[2] == 0) {
		t.Errorf("least, linear: wins %v", w)
	}
	if w := picks(t, newMonolith(t, `{"epsilonExploreNeg":1}`), eps, 50, fits...); w[2] != 50 {
		t.Errorf("epsilonExploreNeg 1: wins %v, want the endpoint missing its SLO every time", w)
	}
	// All miss: the idle one, whatever its deficit.
	miss := []Prediction{{TTFTHeadroom: -5, TPOTHeadroom: -5, Dispatched: 0}, {TTFTHeadroom: 1, TPOTHeadroom: -1, Dispatched: 2}, {TTFTHeadroom: -1, TPOTHeadroom: 1, Dispatched: 1}}
	if w := picks(t, newMonolith(t, ""), eps, 50, miss...); w[0] != 50 {
		t.Errorf("all miss: wins %v, want the idle endpoint", w)
	}
}

// TestMonolithAffinityGates: a candidate holding the whole prompt is kept
// before the tiers split, unless the request explores.
func TestMonolithAffinityGates(t *testing.T) {
	t.Parallel()
	eps := endpoints(0, 0, 0)
	match := prefix.NewMatch(10, 16)
	match.Set(eps[1], 10)
	match.Set(eps[2], 9)
	// eps[1] holds it all but misses its SLO; eps[0] fits best.
	preds := []Prediction{{TTFTHeadroom: 1, TPOTHeadroom: 1}, {TTFTHeadroom: -50, TPOTHeadroom: 1, Dispatched: 1}, {TTFTHeadroom: 40, TPOTHeadroom: 1}}
	m := newMonolith(t, `{"selectionMode":"max","epsilonExploreSticky":0}`)
	m.scorer.source = fixedMatch{match}
	if w := picks(t, m, eps, 30, preds...); w[1] != 30 {
		t.Errorf("global gate: wins %v, want the endpoint holding the whole prompt", w)
	}
	// Below the global τ only the in-tier gate (0.8) applies: eps[2]
	// holds 0.9 and meets the SLO, so it is kept over the tighter eps[0].
	m = newMonolith(t, `{"selectionMode":"max","epsilonExploreSticky":0,"epsilonExploreNeg":0,"affinityGateTauGlobal":1}`)
	match.Set(eps[1], 5)
	m.scorer.source = fixedMatch{match}
	if w := picks(t, m, eps, 30, preds...); w[2] != 30 {
		t.Errorf("in-tier gate: wins %v, want the sticky endpoint meeting the SLO", w)
	}
	m = newMonolith(t, `{"selectionMode":"max","epsilonExploreSticky":1,"epsilonExploreNeg":0,"affinityGateTauGlobal":1}`)
	m.scorer.source = fixedMatch{match}
	if w := picks(t, m, eps, 30, preds...); w[0] != 30 {
		t.Errorf("always exploring: wins %v, want the tightest fit, gates ignored", w)
	}
}

// TestMonolithComposite: without predictions, and with composite-only, the
// composite decides; composite-least inverts it among those meeting the SLO.
func TestMonolithComposite(t *testing.T) {
	t.Parallel()
	eps := endpoints(8, 0, 4)
	if w := picks(t, newMonolith(t, `{"selectionMode":"max"}`), eps, 20); w[1] != 20 {
		t.Errorf("no predictions: wins %v, want the shortest queue", w)
	}
	fits := []Prediction{{TTFTHeadroom: 1, TPOTHeadroom: 1}, {TTFTHeadroom: 2, TPOTHeadroom: 1}, {TTFTHeadroom: 3, TPOTHeadroom: 1}}
	if w := picks(t, newMonolith(t, `{"selectionMode":"max","headroomSelectionStrategy":"composite-only"}`), eps, 20, fits...); w[1] != 20 {
		t.Errorf("composite-only: wins %v, want the shortest queue", w)
	}
	if w := picks(t, newMonolith(t, `{"selectionMode":"max","headroomSelectionStrategy":"composite-least","epsilonExploreNeg":0}`), eps, 20, fits...); w[0] != 20 {
		t.Errorf("composite-least: wins %v, want the longest queue", w)
	}
}

func TestMonolithParams(t *testing.T) {
	t.Parallel()
	// The GIE guide's parameters, and upstream's time.Duration (ns).
	m := newMonolith(t, `{"sloBufferFactor":1.0,"headroomSelectionStrategy":"least","samplingMean":50,"maxSampledTokens":10,"contextTTL":60000000000}`)
	if m.params.ContextTTL != scheduler.Duration(time.Minute) || m.Producer.params.ContextTTL != "1m0s" || !m.Producer.params.StreamingMode {
		t.Errorf("params %+v, producer %+v", m.params, m.Producer.params)
	}
	if newMonolith(t, `{"contextTTL":"90s"}`).params.ContextTTL != scheduler.Duration(90*time.Second) {
		t.Error("contextTTL as a Go duration")
	}
	if got := m.TypedName(); got.Type != MonolithType || got.Name != "pl" {
		t.Errorf("typed name %v", got)
	}
	for raw, want := range map[string]string{
		`{"headroomSelectionStrategy":"fastest"}`: `headroomSelectionStrategy: must be one of least, most, composite-least, composite-most, composite-only, got "fastest"`,
		`{"selectionMode":"argmax"}`:              `selectionMode: must be "linear" or "max"`,
		`{"epsilonExploreNeg":1.5}`:               "epsilonExploreNeg: must be in [0, 1], got 1.5",
		`{"maxSampledTokens":0}`:                  "maxSampledTokens: must be > 0",
		`{"headroomTTFTWeight":-1}`:               "headroomTTFTWeight: must be a finite number >= 0",
		`{"sloBufferFactor":0}`:                   "sloBufferFactor: must be > 0",
		`{"contextTTL":"soon"}`:                   `time: invalid duration "soon"`,
		`{"ttftWeight":1}`:                        `unknown field "ttftWeight"`,
	} {
		_, err := MonolithFactory("pl", json.RawMessage(raw), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", raw, err, want)
		}
	}
}
