package scorers

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestNoHitLRUFilterNarrowsColdRequests: a cold request keeps the
// candidates that never took a cold request, then the least recent one;
// its targets become the most recent; a warm request passes untouched.
func TestNoHitLRUFilterNarrowsColdRequests(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	f := mustBuild[*NoHitLRUFilter](t, NoHitLRUFilterRegistration(), "", nil)
	f.source = coldSource()
	route := func() []string {
		st := scState()
		kept := f.Filter(scCtx, st, nil, eps)
		f.PreRequest(scCtx, st, nil, scResult(kept[0]))
		return addrs(kept...)
	}
	if got := route(); len(got) != 3 {
		t.Fatalf("first cold request kept %v, want every never-used candidate", got)
	}
	if got, want := route(), addrs(eps[1], eps[2]); !slices.Equal(got, want) {
		t.Errorf("second kept %v, want the two never used %v", got, want)
	}
	route()
	// Every candidate took one now: ep-0 longest ago.
	if got, want := route(), addrs(eps[0]); !slices.Equal(got, want) {
		t.Errorf("kept %v, want the least recent %v", got, want)
	}
	f.source = warmSource(eps[2])
	if got := f.Filter(scCtx, scState(), nil, eps); len(got) != 3 {
		t.Errorf("warm request narrowed to %v", addrs(got...))
	}
}

// TestNoHitLRUFilterLoadGate: the kept endpoint is given up when its
// in-flight tokens are more than maxTokensInFlightPenalty above the
// fewest.
func TestNoHitLRUFilterLoadGate(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	f := mustBuild[*NoHitLRUFilter](t, NoHitLRUFilterRegistration(), `{"maxTokensInFlightPenalty": 1000}`, nil)
	f.source = coldSource()
	books := inflight.New(nil, time.Minute)
	f.inFlight = books
	st := scState()
	f.PreRequest(scCtx, st, nil, scResult(eps[1])) // not cold in this state: ignored
	coldKey.Set(st, true)
	f.PreRequest(scCtx, st, nil, scResult(eps[1]))
	if got := f.Filter(scCtx, scState(), nil, eps); len(got) != 1 || got[0] != eps[0] {
		t.Fatalf("kept %v, want the never-used %s", addrs(got...), eps[0].HostPort)
	}
	books.Start(scheduler.NewState(7, scEpoch), eps[0].HostPort, 5000)
	if got := f.Filter(scCtx, scState(), nil, eps); len(got) != 2 {
		t.Errorf("kept %v though it has 5,000 tokens in flight against 0", addrs(got...))
	}
}

func TestNoHitLRUFilterParams(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`{"lruSize": 0}`:                    "lruSize",
		`{"maxTTFTPenaltyMs": -1}`:          "maxTTFTPenaltyMs",
		`{"maxTokensInFlightPenalty": -5}`:  "maxTokensInFlightPenalty",
		`{"inFlightLoadProducerName": ""}`:  "inFlightLoadProducerName",
		`{"lruSize": 4, "stickiness": 0.5}`: "stickiness",
	} {
		if _, err := NoHitLRUFilterFactory("f", []byte(raw), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming %s", raw, err, want)
		}
	}
}
