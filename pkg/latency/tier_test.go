package latency

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// withPredictions returns a state whose note from p holds preds by index.
func withPredictions(p *Producer, eps []*endpoint.Endpoint, ttftSLO float64, preds ...Prediction) *scheduler.State {
	st := scheduler.NewState(1, time.Unix(1, 0))
	var m map[string]Prediction
	if preds != nil {
		m = map[string]Prediction{}
		for i, pr := range preds {
			m[eps[i].HostPort] = pr
		}
	}
	noteKey.Set(st, &note{owner: p, preds: m, ttftSLO: ttftSLO})
	return st
}

func TestTierFilter(t *testing.T) {
	t.Parallel()
	p := newProducer(t, "", &testClock{now: time.Unix(1, 0)})
	eps := endpoints(0, 0, 0)
	meet, miss := Prediction{TTFTHeadroom: 5}, Prediction{TTFTHeadroom: -5}
	build := func(raw string) *TierFilter {
		f, err := TierFilterFactory("tier", json.RawMessage(raw), nil)
		if err != nil {
			t.Fatal(err)
		}
		f.(*TierFilter).producer = p
		return f.(*TierFilter)
	}
	f := build("")
	if got := f.Filter(ctx, withPredictions(p, eps, 100, meet, miss, meet), nil, eps); len(got) != 2 || got[0] != eps[0] || got[1] != eps[2] {
		t.Errorf("kept %d endpoints, want the two meeting the objectives", len(got))
	}
	if got := build(`{"epsilonExploreNeg":1}`).Filter(ctx, withPredictions(p, eps, 100, meet, miss, meet), nil, eps); len(got) != 1 || got[0] != eps[1] {
		t.Errorf("exploring: kept %d endpoints, want the one missing", len(got))
	}
	for name, st := range map[string]*scheduler.State{
		"all miss":       withPredictions(p, eps, 100, miss, miss, miss),
		"no predictions": withPredictions(p, eps, 100),
	} {
		if got := f.Filter(ctx, st, nil, eps); len(got) != 3 {
			t.Errorf("%s: kept %d, want all", name, len(got))
		}
	}
	if _, err := TierFilterFactory("x", json.RawMessage(`{"epsilonExploreNeg":2}`), nil); err == nil || !strings.Contains(err.Error(), "epsilonExploreNeg: must be in [0, 1]") {
		t.Errorf("epsilonExploreNeg 2: %v", err)
	}
}

func TestLatencyAdmitter(t *testing.T) {
	t.Parallel()
	p := newProducer(t, "", &testClock{now: time.Unix(1, 0)})
	a, err := AdmitterFactory("slo", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	adm := a.(*Admitter)
	adm.producer = p
	eps := endpoints(0, 0)
	miss := Prediction{TTFTHeadroom: -5}
	batch, critical := chat(10, nil), chat(10, nil)
	batch.Priority, critical.Priority = -1, 1
	if err := adm.Admit(ctx, withPredictions(p, eps, 100, miss, miss), batch, eps); !errors.Is(err, scheduler.ErrRejected) ||
		!strings.Contains(err.Error(), "no endpoint is predicted to meet its latency objectives") {
		t.Errorf("sheddable request nobody can serve in time: %v, want a 429", err)
	}
	for name, tc := range map[string]struct {
		st  *scheduler.State
		req *scheduler.Request
	}{
		"critical":         {withPredictions(p, eps, 100, miss, miss), critical},
		"one meets":        {withPredictions(p, eps, 100, miss, Prediction{}), batch},
		"no SLO header":    {withPredictions(p, eps, 0, miss, miss), batch},
		"models not ready": {withPredictions(p, eps, 100), batch},
	} {
		if err := adm.Admit(ctx, tc.st, tc.req, eps); err != nil {
			t.Errorf("%s: %v, want admitted", name, err)
		}
	}
}

func TestDeficitFilter(t *testing.T) {
	t.Parallel()
	p := newProducer(t, "", &testClock{now: time.Unix(1, 0)})
	eps := endpoints(0, 0, 0)
	f, err := DeficitFilterFactory("d", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := f.(*DeficitFilter)
	d.producer = p
	ttftMiss, tpotMiss, both := Prediction{TTFTHeadroom: -5}, Prediction{TPOTHeadroom: -5}, Prediction{TTFTHeadroom: -5, TPOTHeadroom: -5}
	for name, tc := range map[string]struct {
		preds []Prediction
		want  []int
	}{
		"TPOT-only misses first": {[]Prediction{ttftMiss, tpotMiss, both}, []int{1}},
		"then TTFT-only":         {[]Prediction{both, ttftMiss, ttftMiss}, []int{1, 2}},
		"one meets: all pass":    {[]Prediction{both, {}, ttftMiss}, []int{0, 1, 2}},
		"no predictions":         {nil, []int{0, 1, 2}},
	} {
		got := d.Filter(ctx, withPredictions(p, eps, 100, tc.preds...), nil, eps)
		if len(got) != len(tc.want) {
			t.Errorf("%s: kept %d, want %v", name, len(got), tc.want)
			continue
		}
		for i, w := range tc.want {
			if got[i] != eps[w] {
				t.Errorf("%s: kept[%d] = %s, want %s", name, i, got[i].HostPort, eps[w].HostPort)
			}
		}
	}
}
