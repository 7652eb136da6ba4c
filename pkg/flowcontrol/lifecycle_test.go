package flowcontrol_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/flowcontrol"
)

func TestTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		defaultTTL    time.Duration
		noEndpointTTL time.Duration
		pool          int64
		// notYet is how long the request waits without being evicted;
		// evictAt how long until it is.
		notYet, evictAt time.Duration
		want            flowcontrol.Outcome
		wantMsg         string
	}{
		{name: "default TTL", defaultTTL: 10 * time.Second, pool: 3,
			notYet: 9 * time.Second, evictAt: 10 * time.Second, want: flowcontrol.EvictedTTL,
			wantMsg: `flow control: request of flow "f" (priority 2) evicted after waiting 10s (defaultTTL 10s)`},
		{name: "no-endpoint TTL while the pool is empty", defaultTTL: 10 * time.Second, noEndpointTTL: 2 * time.Second,
			notYet: time.Second, evictAt: 2 * time.Second, want: flowcontrol.EvictedNoEndpoints,
			wantMsg: `flow control: request of flow "f" (priority 2) evicted after waiting 2s with no endpoints in the pool (noEndpointTTL 2s)`},
		{name: "no-endpoint TTL ignored while endpoints exist", defaultTTL: 10 * time.Second, noEndpointTTL: 2 * time.Second, pool: 1,
			notYet: 5 * time.Second, evictAt: 10 * time.Second, want: flowcontrol.EvictedTTL,
			wantMsg: `flow control: request of flow "f" (priority 2) evicted after waiting 10s (defaultTTL 10s)`},
		{name: "empty pool without a no-endpoint TTL", defaultTTL: 4 * time.Second,
			notYet: 3 * time.Second, evictAt: 4 * time.Second, want: flowcontrol.EvictedTTL,
			wantMsg: `flow control: request of flow "f" (priority 2) evicted after waiting 4s (defaultTTL 4s)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, flowcontrol.Config{DefaultTTL: tc.defaultTTL, NoEndpointTTL: tc.noEndpointTTL})
			h.pool.Store(tc.pool)
			ch := h.queue(bg, flowcontrol.Request{FlowID: "f", Priority: 2, Bytes: 7})
			h.clock.Advance(tc.notYet)
			h.settle()
			pending(t, ch)
			h.clock.Advance(tc.evictAt - tc.notYet)
			h.m.set(0) // eviction comes first even when the pool has room
			h.c.Wake()
			fe := refusal(t, result(t, ch))
			if fe.Outcome != tc.want || fe.NoEndpoints != (tc.pool == 0) {
				t.Errorf("refusal = %v, NoEndpoints %v; want %v, %v", fe.Outcome, fe.NoEndpoints, tc.want, tc.pool == 0)
			}
			if diff := cmp.Diff(tc.wantMsg, fe.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			finishes, depths := h.obs.calls()
			if diff := cmp.Diff([]finish{{"f", 2, tc.want, tc.evictAt}}, finishes); diff != "" {
				t.Errorf("Finished calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]depth{{"f", 2, 1, 7}, {"f", 2, 0, 0}}, depths); diff != "" {
				t.Errorf("Depth calls (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("only expired requests go", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flowcontrol.Config{DefaultTTL: 10 * time.Second})
		old := h.queue(bg, flowcontrol.Request{})
		h.clock.Advance(5 * time.Second)
		young := h.queue(bg, flowcontrol.Request{})
		h.clock.Advance(5 * time.Second)
		h.c.Wake()
		if fe := refusal(t, result(t, old)); fe.Outcome != flowcontrol.EvictedTTL {
			t.Errorf("old request: %v", fe.Outcome)
		}
		h.settle()
		pending(t, young)
	})
}

// TestContextCancel is not parallel: it counts goroutines.
func TestContextCancel(t *testing.T) {
	h := newHarness(t, flowcontrol.Config{})
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(bg)
	ch := h.queue(ctx, flowcontrol.Request{FlowID: "f", Bytes: 3})
	h.clock.Advance(time.Second)
	cancel()
	err := result(t, ch)
	fe := refusal(t, err)
	if fe.Outcome != flowcontrol.EvictedContextCancelled || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v (%v); want EvictedContextCancelled wrapping context.Canceled", fe.Outcome, err)
	}
	want := `flow control: request of flow "f" (priority 0) cancelled after waiting 1s: context canceled`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	if n, b := h.c.Waiting(); n != 0 || b != 0 {
		t.Errorf("Waiting() = %d, %d after cancel", n, b)
	}
	_, depths := h.obs.calls()
	if diff := cmp.Diff([]depth{{"f", 0, 1, 3}, {"f", 0, 0, 0}}, depths); diff != "" {
		t.Errorf("Depth calls (-want +got):\n%s", diff)
	}
	eventually(t, "waiter goroutines to exit", func() bool { return runtime.NumGoroutine() <= base })

	// A deadline passing while waiting ends the same way.
	short, cancel2 := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel2()
	if err := h.c.Admit(short, flowcontrol.Request{}); !errors.Is(err, context.DeadlineExceeded) ||
		refusal(t, err).Outcome != flowcontrol.EvictedContextCancelled {
		t.Errorf("deadline while waiting: %v", err)
	}

	// A request already cancelled is refused without queueing.
	h.m.set(0)
	before, depthsBefore := h.obs.calls()
	err = h.c.Admit(ctx, flowcontrol.Request{FlowID: "g"})
	if fe := refusal(t, err); fe.Outcome != flowcontrol.EvictedContextCancelled {
		t.Errorf("already cancelled: %v", fe.Outcome)
	}
	finishes, depths := h.obs.calls()
	if diff := cmp.Diff(finish{"g", 0, flowcontrol.EvictedContextCancelled, 0}, finishes[len(before)]); diff != "" || len(finishes) != len(before)+1 {
		t.Errorf("Finished calls after an already-cancelled Admit: %v", finishes[len(before):])
	}
	if len(depths) != len(depthsBefore) {
		t.Errorf("already-cancelled request was queued: %v", depths[len(depthsBefore):])
	}
}

func TestCancelReleasesLowerBand(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{UsageLimit: ceilings{5: 0.5}})
	h.m.set(0.7)
	ctx, cancel := context.WithCancel(bg)
	high := h.queue(ctx, flowcontrol.Request{Priority: 5})
	low := h.queue(bg, flowcontrol.Request{Priority: 0})
	h.settle()
	pending(t, low)
	cancel()
	if fe := refusal(t, result(t, high)); fe.Outcome != flowcontrol.EvictedContextCancelled {
		t.Errorf("high: %v", fe.Outcome)
	}
	if err := result(t, low); err != nil {
		t.Errorf("low band not released once the band above emptied: %v", err)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	t.Run("refuses waiting and later requests", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flowcontrol.Config{})
		a := h.queue(bg, flowcontrol.Request{FlowID: "a"})
		b := h.queue(bg, flowcontrol.Request{FlowID: "b", Priority: -3})
		h.clock.Advance(2 * time.Second)
		h.c.Stop()
		h.c.Stop()
		for _, ch := range []<-chan error{a, b} {
			if fe := refusal(t, result(t, ch)); fe.Outcome != flowcontrol.RejectedShuttingDown {
				t.Errorf("waiting request: %v", fe.Outcome)
			}
		}
		<-h.stopped
		h.m.set(0)
		err := h.c.Admit(bg, flowcontrol.Request{})
		if fe := refusal(t, err); fe.Outcome != flowcontrol.RejectedShuttingDown {
			t.Errorf("Admit after Stop: %v", fe.Outcome)
		}
		if n, _ := h.c.Waiting(); n != 0 {
			t.Errorf("Waiting() = %d after Stop", n)
		}
	})
	t.Run("before Start", func(t *testing.T) {
		t.Parallel()
		c, err := flowcontrol.New(flowcontrol.Config{Saturation: func(time.Time) float64 { return 0 }, PoolSize: func() int { return 0 }})
		if err != nil {
			t.Fatal(err)
		}
		c.Stop()
		done := make(chan struct{})
		go func() { c.Start(bg); close(done) }()
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatal("Start after Stop did not return")
		}
		if fe := refusal(t, c.Admit(bg, flowcontrol.Request{})); fe.Outcome != flowcontrol.RejectedShuttingDown || !fe.NoEndpoints {
			t.Errorf("Admit after Stop: %v, NoEndpoints %v", fe.Outcome, fe.NoEndpoints)
		}
	})
	t.Run("Start's context ends it", func(t *testing.T) {
		t.Parallel()
		c, err := flowcontrol.New(flowcontrol.Config{Saturation: func(time.Time) float64 { return 1 }, PoolSize: func() int { return 1 }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(bg)
		done := make(chan struct{})
		go func() { c.Start(ctx); close(done) }()
		ch := make(chan error, 1)
		go func() { ch <- c.Admit(bg, flowcontrol.Request{}) }()
		eventually(t, "request to be queued", func() bool { n, _ := c.Waiting(); return n == 1 })
		cancel()
		if fe := refusal(t, result(t, ch)); fe.Outcome != flowcontrol.RejectedShuttingDown {
			t.Errorf("waiting request: %v", fe.Outcome)
		}
		<-done
	})
}

func TestRereadsSaturationPerDispatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{})
	results := make(chan string, 5)
	for _, name := range []string{"1", "2", "3", "4", "5"} {
		h.queueNamed(bg, name, flowcontrol.Request{}, results)
	}
	// The detector counts what it let through: three readings below 1,
	// then saturated. Exactly three requests may go.
	h.m.grant(3)
	h.c.Wake()
	var got []string
	for range 3 {
		select {
		case name := <-results:
			got = append(got, name)
		case <-time.After(wait):
			t.Fatalf("only %v dispatched", got)
		}
	}
	h.settle()
	if n, _ := h.c.Waiting(); n != 2 {
		t.Errorf("Waiting() = %d; want 2 (dispatched %v)", n, got)
	}
	select {
	case name := <-results:
		t.Errorf("request %s dispatched beyond the detector's limit", name)
	default:
	}
}

func TestPollOnlyWhileWaiting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{Poll: time.Millisecond})
	time.Sleep(30 * time.Millisecond)
	if n := h.m.readings(); n != 0 {
		t.Errorf("idle dispatcher read saturation %d times", n)
	}
	ctx, cancel := context.WithCancel(bg)
	ch := h.queue(ctx, flowcontrol.Request{})
	n := h.m.readings()
	h.eventually("polling while a request waits", func() bool { return h.m.readings() >= n+5 })
	cancel()
	result(t, ch)
	time.Sleep(20 * time.Millisecond) // let a pass in flight finish
	n = h.m.readings()
	time.Sleep(30 * time.Millisecond)
	if got := h.m.readings(); got != n {
		t.Errorf("dispatcher kept polling with nothing waiting: %d readings", got-n)
	}
}

func TestObserver(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{MaxRequests: 3})
	h.m.set(0.5)
	if err := h.c.Admit(bg, flowcontrol.Request{FlowID: "fast", Priority: 1}); err != nil {
		t.Fatal(err)
	}
	h.m.set(1)
	results := make(chan string, 3)
	h.queueNamed(bg, "a", flowcontrol.Request{FlowID: "x", Bytes: 10}, results)
	h.queueNamed(bg, "b", flowcontrol.Request{FlowID: "x", Bytes: 5}, results)
	h.queueNamed(bg, "c", flowcontrol.Request{FlowID: "y", Bytes: 7}, results)
	if err := h.c.Admit(bg, flowcontrol.Request{FlowID: "full"}); err == nil {
		t.Fatal("fourth request admitted over maxRequests 3")
	}
	h.clock.Advance(time.Second)
	for range 3 {
		h.releaseOne(results)
	}
	finishes, depths := h.obs.calls()
	wantFinishes := []finish{
		{"fast", 1, flowcontrol.Dispatched, 0},
		{"full", 0, flowcontrol.RejectedCapacity, 0},
		{"x", 0, flowcontrol.Dispatched, time.Second},
		{"x", 0, flowcontrol.Dispatched, time.Second},
		{"y", 0, flowcontrol.Dispatched, time.Second},
	}
	if diff := cmp.Diff(wantFinishes, finishes); diff != "" {
		t.Errorf("Finished calls (-want +got):\n%s", diff)
	}
	wantDepths := []depth{
		{"x", 0, 1, 10}, {"x", 0, 2, 15}, {"y", 0, 1, 7},
		{"x", 0, 1, 5}, {"x", 0, 0, 0}, {"y", 0, 0, 0},
	}
	if diff := cmp.Diff(wantDepths, depths); diff != "" {
		t.Errorf("Depth calls (-want +got):\n%s", diff)
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	got := []string{}
	for o := flowcontrol.Dispatched; o <= flowcontrol.RejectedNoEndpoints+1; o++ {
		got = append(got, o.String())
	}
	want := []string{"Dispatched", "RejectedCapacity", "EvictedTTL", "EvictedContextCancelled",
		"EvictedNoEndpoints", "RejectedShuttingDown", "RejectedNoEndpoints", "Outcome(7)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Outcome strings (-want +got):\n%s", diff)
	}
}
