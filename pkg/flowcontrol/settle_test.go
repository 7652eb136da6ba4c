package flowcontrol_test

import (
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/flowcontrol"
)

// TestWaitsForReleasedRequestToSettle: after releasing a request the
// dispatcher reads saturation again only once that request is scheduled
// (Settled) or the settle bound passes, so a detector that counts
// scheduled requests sees each one before the next is judged.
func TestWaitsForReleasedRequestToSettle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{Settle: time.Hour})
	results := make(chan string, 3)
	for _, name := range []string{"1", "2", "3"} {
		h.queueNamed(bg, name, flowcontrol.Request{}, results)
	}
	h.m.set(0) // room for everyone, as far as the detector can tell
	h.c.Wake()
	for _, want := range []string{"1", "2", "3"} {
		select {
		case got := <-results:
			if got != want {
				t.Fatalf("released %s, want %s", got, want)
			}
		case <-time.After(wait):
			t.Fatalf("request %s not released after the previous one settled", want)
		}
		select {
		case got := <-results:
			t.Fatalf("request %s released before %s settled", got, want)
		case <-time.After(30 * time.Millisecond):
		}
		h.c.Settled()
	}
}

// TestSettleBound: a released request that never reports Settled holds
// the queue only for the bound; a negative bound does not wait at all.
func TestSettleBound(t *testing.T) {
	t.Parallel()
	for _, settle := range []time.Duration{10 * time.Millisecond, -1} {
		h := newHarness(t, flowcontrol.Config{Settle: settle})
		results := make(chan string, 3)
		for _, name := range []string{"1", "2", "3"} {
			h.queueNamed(bg, name, flowcontrol.Request{}, results)
		}
		h.m.set(0)
		h.c.Wake()
		for range 3 {
			select {
			case <-results:
			case <-time.After(wait):
				t.Fatalf("settle %v: the queue stalled on a request that never settled", settle)
			}
		}
	}
}

// TestReconfigure: a reload's config applies to the queue in place: the
// requests waiting stay, in order, and the new saturation function decides
// their release; an invalid config is refused.
func TestReconfigure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{MaxRequests: 5})
	results := make(chan string, 3)
	h.queueNamed(bg, "1", flowcontrol.Request{}, results)
	h.queueNamed(bg, "2", flowcontrol.Request{}, results)
	err := h.c.Reconfigure(flowcontrol.Config{MaxRequests: 2, Saturation: func(time.Time) float64 { return 0 },
		PoolSize: func() int { return 1 }, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.c.Reconfigure(flowcontrol.Config{}); err == nil {
		t.Error("a config without a saturation function was accepted")
	}
	for _, want := range []string{"1", "2"} {
		select {
		case got := <-results:
			if got != want {
				t.Fatalf("released %s, want %s", got, want)
			}
		case <-time.After(wait):
			t.Fatalf("request %s still waits under the new saturation function", want)
		}
	}
}
