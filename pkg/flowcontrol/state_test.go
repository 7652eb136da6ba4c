package flowcontrol_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/flowcontrol"
)

// TestState checks the snapshot an operator sees: totals, bands highest
// priority first with their ceilings and limits, flows with the most
// waiters first, and how long the oldest has waited.
func TestState(t *testing.T) {
	h := newHarness(t, flowcontrol.Config{MaxRequests: 50, UsageLimit: ceilings{5: 0.9},
		Bands: map[int]flowcontrol.Band{5: {MaxRequests: 20}}})
	ctx := context.Background()
	h.queue(ctx, flowcontrol.Request{FlowID: "a", Priority: 0, Bytes: 100})
	h.clock.Advance(2 * time.Second)
	h.queue(ctx, flowcontrol.Request{FlowID: "b", Priority: 0, Bytes: 10})
	h.queue(ctx, flowcontrol.Request{FlowID: "b", Priority: 0, Bytes: 10})
	h.queue(ctx, flowcontrol.Request{FlowID: "vip", Priority: 5, Bytes: 1})
	h.clock.Advance(time.Second)

	st := h.c.State()
	if st.Requests != 4 || st.Bytes != 121 || st.MaxRequests != 50 || st.Saturation != 1 || st.OldestWaitSeconds != 3 {
		t.Fatalf("totals %+v", st)
	}
	if len(st.Bands) != 2 || st.Bands[0].Priority != 5 || st.Bands[1].Priority != 0 {
		t.Fatalf("bands %+v, want priority 5 then 0", st.Bands)
	}
	vip, std := st.Bands[0], st.Bands[1]
	if vip.Ceiling != 0.9 || vip.MaxRequests != 20 || vip.Requests != 1 || std.Ceiling != 1 {
		t.Errorf("band settings: vip %+v, default %+v", vip, std)
	}
	want := []flowcontrol.FlowState{{ID: "b", Requests: 2, Bytes: 20, OldestWaitSeconds: 1}, {ID: "a", Requests: 1, Bytes: 100, OldestWaitSeconds: 3}}
	if fmt.Sprint(std.Flows) != fmt.Sprint(want) {
		t.Errorf("flows %+v, want %+v", std.Flows, want)
	}
}

// TestStateListsAtMostAHundredFlows: a band with many tenants waiting is
// summarised, the rest counted.
func TestStateListsAtMostAHundredFlows(t *testing.T) {
	h := newHarness(t, flowcontrol.Config{})
	ctx := context.Background()
	for i := range 120 {
		h.queue(ctx, flowcontrol.Request{FlowID: fmt.Sprintf("tenant-%03d", i)})
	}
	st := h.c.State()
	if len(st.Bands) != 1 || len(st.Bands[0].Flows) != 100 || st.Bands[0].MoreFlows != 20 || st.Requests != 120 {
		t.Fatalf("%d bands, %d flows listed, %d more, %d requests", len(st.Bands), len(st.Bands[0].Flows), st.Bands[0].MoreFlows, st.Requests)
	}
}

// TestEnqueueAndCycleHooks checks the metrics hooks: a request that cannot
// take the fast path reports being queued or refused at the door; the
// dispatcher reports its passes over waiting requests only.
func TestEnqueueAndCycleHooks(t *testing.T) {
	var mu sync.Mutex
	var enqueued []string
	cycles := 0
	h := newHarness(t, flowcontrol.Config{MaxRequests: 1,
		OnEnqueue: func(r flowcontrol.Request, outcome string, took time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if took < 0 {
				t.Errorf("negative enqueue time %v", took)
			}
			enqueued = append(enqueued, r.FlowID+":"+outcome)
		},
		OnDispatchCycle: func(took time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if took < 0 {
				t.Errorf("negative cycle time %v", took)
			}
			cycles++
		}})
	ctx := context.Background()
	first := h.queue(ctx, flowcontrol.Request{FlowID: "a"})
	if err := result(t, h.admit(ctx, flowcontrol.Request{FlowID: "b"})); err == nil {
		t.Fatal("second request admitted past maxRequests 1")
	}
	h.m.grant(1)
	h.c.Wake()
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	// The cycle that released the request reports itself after the
	// release, so the waiter may wake first.
	eventually(t, "a dispatch cycle reported while a request waited", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return cycles > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"a:Enqueued", "b:" + flowcontrol.RejectedCapacity.String()}; fmt.Sprint(enqueued) != fmt.Sprint(want) {
		t.Errorf("enqueue reports %v, want %v", enqueued, want)
	}
}

// TestBandUsage: every configured band is listed, waiting or not, with its
// limits, and so is a band with waiters that the config does not name.
func TestBandUsage(t *testing.T) {
	h := newHarness(t, flowcontrol.Config{MaxRequests: 9, MaxBytes: 900, DefaultBand: flowcontrol.Band{MaxBytes: 500},
		Bands: map[int]flowcontrol.Band{7: {MaxRequests: 3}}})
	h.queue(context.Background(), flowcontrol.Request{FlowID: "a", Priority: 2, Bytes: 40})
	got := h.c.BandUsage()
	want := []flowcontrol.BandState{
		{Priority: 7, MaxRequests: 3, Ceiling: 1},
		{Priority: 2, Requests: 1, Bytes: 40, MaxBytes: 500, Ceiling: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("usage %+v, want %+v", got, want)
	}
	if r, b := h.c.Limits(); r != 9 || b != 900 {
		t.Errorf("limits %d, %d", r, b)
	}
}
