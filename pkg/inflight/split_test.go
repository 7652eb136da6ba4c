package inflight_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
)

// TestStartSplit: a disaggregated request charges its prefill endpoint until
// ReleasePrefill and its decode endpoint until Finish; every way a request
// ends releases both legs exactly once.
func TestStartSplit(t *testing.T) {
	t.Parallel()
	tr, eps := books(3)
	decode, prefill, other := eps[0], eps[1], eps[2]

	st := newState()
	tr.StartSplit(st, decode.HostPort, 10, prefill.HostPort, 400)
	if diff := cmp.Diff([][2]int{{1, 10}, {1, 400}, {0, 0}}, loads(tr, eps...)); diff != "" {
		t.Errorf("after StartSplit (-want +got):\n%s", diff)
	}
	tr.ReleasePrefill(st)
	tr.ReleasePrefill(st) // twice: nothing more
	if diff := cmp.Diff([][2]int{{1, 10}, {0, 0}, {0, 0}}, loads(tr, eps...)); diff != "" {
		t.Errorf("after ReleasePrefill (-want +got):\n%s", diff)
	}
	if !tr.Finish(st) {
		t.Fatal("Finish released nothing")
	}
	checkEmpty(t, tr)

	// Finish before the prefill is released frees both legs; the same
	// endpoint for both is an ordinary request.
	st = newState()
	tr.StartSplit(st, decode.HostPort, 10, prefill.HostPort, 400)
	tr.Finish(st)
	checkEmpty(t, tr)
	st = newState()
	tr.StartSplit(st, decode.HostPort, 10, decode.HostPort, 400)
	if diff := cmp.Diff([][2]int{{1, 10}, {0, 0}}, loads(tr, decode, prefill)); diff != "" {
		t.Errorf("same endpoint for both (-want +got):\n%s", diff)
	}
	tr.Finish(st)

	// The TTL releases both legs.
	clock := &fakeClock{}
	tr2 := inflight.New(clock, time.Hour)
	tr2.StartSplit(newState(), decode.HostPort, 10, prefill.HostPort, 400)
	clock.Advance(2 * time.Hour)
	if expired, _ := tr2.Sweep(clock.Now(), nil); expired != 1 {
		t.Errorf("expired = %d, want 1", expired)
	}
	checkEmpty(t, tr2)

	// The prefill endpoint departs: its leg goes, the decode leg stays.
	// A decode endpoint departs: the request's prefill endpoint is
	// relieved of it too.
	a, b := newState(), newState()
	tr.StartSplit(a, decode.HostPort, 10, prefill.HostPort, 400)
	tr.StartSplit(b, other.HostPort, 20, decode.HostPort, 300)
	tr.Sweep(epoch, []*endpoint.Endpoint{decode, other})
	if diff := cmp.Diff([][2]int{{2, 310}, {0, 0}, {1, 20}}, loads(tr, eps...)); diff != "" {
		t.Errorf("after the prefill endpoint left (-want +got):\n%s", diff)
	}
	tr.Sweep(epoch, []*endpoint.Endpoint{decode})
	if diff := cmp.Diff([][2]int{{1, 10}, {0, 0}, {0, 0}}, loads(tr, eps...)); diff != "" {
		t.Errorf("after the other decode endpoint left (-want +got):\n%s", diff)
	}
	tr.ReleasePrefill(a) // its leg is gone already: nothing to release
	tr.Finish(a)
	checkEmpty(t, tr)
}
