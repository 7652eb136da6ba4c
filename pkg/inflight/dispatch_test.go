package inflight

import (
	"fmt"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
)

// logEpoch is the dispatch log tests' "now".
var logEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// logEndpoints returns n endpoints never scraped.
func logEndpoints(n int) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, n)
	for i := range out {
		out[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprintf("e%d", i), Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8000})
	}
	return out
}

// TestDispatchLogBounded: an endpoint that is never scraped, or leaves the
// pool, cannot grow the log without bound.
func TestDispatchLogBounded(t *testing.T) {
	t.Parallel()
	l := NewDispatchLog()
	for i := range 2*maxPendingDispatches + 100 {
		l.AddAddress("10.0.0.1:8000", logEpoch.Add(time.Duration(i)*time.Microsecond))
	}
	if n := l.Pending(); n != maxPendingDispatches+100 {
		t.Errorf("%d notes for one endpoint, want %d: trimmed to the cap %d at twice the cap", n,
			maxPendingDispatches+100, maxPendingDispatches)
	}
	// Much later, traffic to other endpoints sweeps the departed one away.
	later := logEpoch.Add(maxDispatchAge + time.Minute)
	for i := range dispatchSweepEvery {
		l.AddAddress("10.0.0.2:8000", later.Add(time.Duration(i)*time.Microsecond))
	}
	l.mu.Lock()
	_, kept := l.byEP[endpoint.HashHostPort("10.0.0.1:8000")]
	l.mu.Unlock()
	if kept {
		t.Error("notes of an endpoint without traffic for longer than maxDispatchAge were not swept")
	}
	// Old notes stop counting even if no scrape ever covers them.
	eps := logEndpoints(1)
	l2 := NewDispatchLog()
	l2.Add(eps[0], logEpoch)
	l2.AddAddress("10.0.9.9:8000", logEpoch.Add(2*maxDispatchAge))
	out := []float64{0}
	l2.AddUnscraped(eps, out)
	if out[0] != 0 {
		t.Errorf("a note older than maxDispatchAge counted: %v", out)
	}
}

// TestDispatchLogOutOfOrder: concurrently scheduled requests may note
// their dispatch slightly out of order; the log stays sorted.
func TestDispatchLogOutOfOrder(t *testing.T) {
	t.Parallel()
	l := NewDispatchLog()
	for _, ms := range []int{5, 3, 9, 1} {
		l.AddAddress("a", logEpoch.Add(time.Duration(ms)*time.Millisecond))
	}
	l.mu.Lock()
	got := append([]int64(nil), l.byEP[endpoint.HashHostPort("a")].ts...)
	l.mu.Unlock()
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("log not sorted: %v", got)
		}
	}
}

// TestDispatchLogAddressSpellings: another replica's dispatch to the same
// server, its address spelled another way, counts for the endpoint.
func TestDispatchLogAddressSpellings(t *testing.T) {
	t.Parallel()
	eps := logEndpoints(2)
	l := NewDispatchLog()
	l.Add(eps[0], logEpoch)
	l.AddAddress("[::ffff:10.0.0.1]:8000", logEpoch.Add(time.Millisecond))
	l.AddAddress("10.0.0.2:8001", logEpoch) // another port: another server
	out := make([]float64, 2)
	l.AddUnscraped(eps, out)
	if out[0] != 2 || out[1] != 0 {
		t.Errorf("unscraped %v, want [2 0]", out)
	}
}

// TestDispatchLogIndex: the index that spares repeated lookups stays right
// when the candidate slice is reordered in place, when an endpoint gains
// its first note, and when a scrape covers an endpoint's notes.
func TestDispatchLogIndex(t *testing.T) {
	t.Parallel()
	eps := logEndpoints(3)
	a, b, c := eps[0], eps[1], eps[2]
	l := NewDispatchLog()
	l.Add(a, logEpoch)
	l.Add(a, logEpoch.Add(time.Millisecond))
	l.Add(b, logEpoch)
	count := func(cands []*endpoint.Endpoint) []float64 {
		out := make([]float64, len(cands))
		l.AddUnscraped(cands, out)
		return out
	}
	cands := []*endpoint.Endpoint{a, b}
	for range 2 { // the second call reads the index
		if got := count(cands); got[0] != 2 || got[1] != 1 {
			t.Fatalf("a, b: %v, want [2 1]", got)
		}
	}
	cands[0], cands[1] = b, a // same slice, other order
	if got := count(cands); got[0] != 1 || got[1] != 2 {
		t.Fatalf("reordered in place: %v, want [1 2]", got)
	}
	l.Add(c, logEpoch)
	if got := count([]*endpoint.Endpoint{a, b, c}); got[0] != 2 || got[1] != 1 || got[2] != 1 {
		t.Fatalf("after c's first note: %v, want [2 1 1]", got)
	}
	a.SetMetrics(&endpoint.Metrics{UpdateTime: logEpoch.Add(time.Second)})
	for range 2 {
		if got := count([]*endpoint.Endpoint{a, b, c}); got[0] != 0 || got[1] != 1 {
			t.Fatalf("after a scrape of a: %v, want [0 1 1]", got)
		}
	}
	l.Add(a, logEpoch.Add(2*time.Second))
	if got := count([]*endpoint.Endpoint{a, b, c}); got[0] != 1 {
		t.Fatalf("a dispatch after the scrape: %v, want a at 1", got)
	}
}

// TestDispatchLogSameInstant: a dispatch noted at the very instant of a
// scrape counts (the scrape may have been taken before it): in virtual time
// (the fleet) many events share an instant, and treating them as scraped
// let a flow-control gate release every waiting request to one server.
func TestDispatchLogSameInstant(t *testing.T) {
	t.Parallel()
	eps := logEndpoints(1)
	eps[0].SetMetrics(&endpoint.Metrics{UpdateTime: logEpoch})
	l := NewDispatchLog()
	l.Add(eps[0], logEpoch)
	l.Add(eps[0], logEpoch.Add(-time.Millisecond))
	out := []float64{0}
	l.AddUnscraped(eps, out)
	if out[0] != 1 {
		t.Errorf("unscraped %v, want the dispatch at the scrape's instant only", out)
	}
}
