package flowcontrol_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
)

func holdback(t *testing.T, params string) scheduler.BandedUsageLimitPolicy {
	t.Helper()
	p, err := flowcontrol.PriorityHoldbackFactory("h", json.RawMessage(params), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.(scheduler.BandedUsageLimitPolicy)
}

func TestPriorityHoldbackCeilings(t *testing.T) {
	t.Parallel()
	rank := holdback(t, `{"minCeiling": 0.4, "maxCeiling": 0.9}`)
	value := holdback(t, `{"domain": "value", "minCeiling": 0.2}`)
	active := []int{10, 1, 0, -10}
	for _, tc := range []struct {
		policy   scheduler.BandedUsageLimitPolicy
		priority int
		active   []int
		want     float64
	}{
		{rank, 10, active, 0.9},
		{rank, 1, active, 0.9 - 0.5/3},
		{rank, 0, active, 0.9 - 2*0.5/3},
		{rank, -10, active, 0.4},
		{rank, 3, []int{3}, 0.9}, // alone: the highest
		{value, 10, active, 1},
		{value, 0, active, 0.2 + 0.8*0.5},
		{value, -10, active, 0.2},
		{value, 1, active, 0.2 + 0.8*11/20},
	} {
		if got := tc.policy.CeilingAmong(tc.priority, 0.5, tc.active); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: priority %d among %v: %v, want %v", tc.policy.TypedName(), tc.priority, tc.active, got, tc.want)
		}
	}
}

func TestPriorityHoldbackParams(t *testing.T) {
	t.Parallel()
	for params, want := range map[string]string{
		`{}`:                                     "minCeiling: required",
		`{"minCeiling": 1}`:                      "must be in [0, 1)",
		`{"minCeiling": 0.5, "maxCeiling": 0.4}`: "below minCeiling",
		`{"minCeiling": 0.1, "maxCeiling": 1.5}`: "maxCeiling: must be in (0, 1]",
		`{"minCeiling": 0.1, "shape": "cubic"}`:  "shape: want linear",
		`{"minCeiling": 0.1, "domain": "order"}`: "domain: want rank or value",
		`{"minCeiling": 0.1, "floor": 2}`:        "floor",
	} {
		_, err := flowcontrol.PriorityHoldbackFactory("h", json.RawMessage(params), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", params, err, want)
		}
	}
}

func TestSoftReflectiveCeiling(t *testing.T) {
	t.Parallel()
	p, err := flowcontrol.SoftReflectiveCeilingFactory("s", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := p.(scheduler.BandedUsageLimitPolicy)
	three := []int{5, 0, -5}
	open := func(priority int, saturation float64, calls int) int {
		n := 0
		for range calls {
			if saturation < s.CeilingAmong(priority, saturation, three) {
				n++
			}
		}
		return n
	}
	// The top band goes until the pool is saturated.
	if open(5, 0.99, 10) != 10 || open(5, 1, 10) != 0 {
		t.Error("top band not gated at saturation 1 alone")
	}
	// Band 1 of 3: ceiling 1 − s/2, so open below 2/3, then 1 call in
	// round(s/(1−s)).
	if got := open(0, 0.6, 12); got != 12 {
		t.Errorf("band 1 at 0.6: open %d of 12 calls, want all (below its ceiling 0.7)", got)
	}
	if got := open(0, 0.75, 12); got != 4 {
		t.Errorf("band 1 at 0.75: open %d of 12 calls, want 1 in 3", got)
	}
	// Band 2: ceiling 1 − s, so gated from 0.5; at 0.8 open 1 call in 4.
	if got := open(-5, 0.4, 8); got != 8 {
		t.Errorf("band 2 at 0.4: open %d of 8, want all", got)
	}
	if got := open(-5, 0.8, 20); got != 5 {
		t.Errorf("band 2 at 0.8: open %d of 20, want 1 in 4", got)
	}
	if got := open(-5, 1.2, 8); got != 0 {
		t.Errorf("band 2 past saturation: open %d of 8, want none", got)
	}
	if s.CeilingAmong(0, 0.9, []int{0}) != 1 {
		t.Error("a lone band is gated")
	}
	if _, err := flowcontrol.SoftReflectiveCeilingFactory("s", json.RawMessage(`{"x": 1}`), nil); err == nil {
		t.Error("parameters accepted")
	}
}

// TestHoldbackInTheController: with priority-holdback at minCeiling 0.5,
// once a high priority has been seen the low band queues at saturation
// 0.6 while high requests still pass; a minute after the last high
// request the low band is alone, its ceiling the highest, and it goes.
func TestHoldbackInTheController(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{UsageLimit: holdback(t, `{"minCeiling": 0.5}`)})
	h.m.set(0.6)
	if err := h.c.Admit(bg, flowcontrol.Request{Priority: -1}); err != nil {
		t.Fatalf("the only priority in use was held: %v", err)
	}
	if err := h.c.Admit(bg, flowcontrol.Request{Priority: 2}); err != nil {
		t.Fatalf("high priority held at 0.6: %v", err)
	}
	low := h.queue(bg, flowcontrol.Request{Priority: -1})
	h.settle()
	pending(t, low)
	st := h.c.State()
	if len(st.Bands) != 1 || st.Bands[0].Ceiling != 0.5 {
		t.Errorf("state %+v, want the low band at ceiling 0.5", st.Bands)
	}
	h.clock.Advance(flowcontrol.ActiveWindow + time.Second)
	h.c.Wake()
	if err := result(t, low); err != nil {
		t.Fatalf("low band still held with no high traffic for a minute: %v", err)
	}
}
