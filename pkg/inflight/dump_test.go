package inflight_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// ctx is the context of every hook call.
var ctx = context.Background()

// counterOver returns a counter whose handle's pool is pool, weighing each
// request tokens tokens (none when tokens is 0).
func counterOver(pool []*endpoint.Endpoint, tokens int) *inflight.Counter {
	var estimate inflight.Estimate
	if tokens > 0 {
		estimate = func(*scheduler.State, *scheduler.Request, *endpoint.Endpoint) int { return tokens }
	}
	h := &scheduler.Handle{Log: logr.Discard(), Endpoints: func() []*endpoint.Endpoint { return pool }}
	c := inflight.NewCounter(h, "test", time.Hour, estimate)
	return &c
}

// sendTo runs PreRequest for a new request routed to e and returns its state.
func sendTo(c *inflight.Counter, e *endpoint.Endpoint) *scheduler.State {
	st := newState()
	c.PreRequest(ctx, st, nil, &scheduler.Result{Primary: "p", Profiles: map[string]*scheduler.ProfileResult{"p": {Targets: []*endpoint.Endpoint{e}}}})
	return st
}

func TestCounterDumpState(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	c := counterOver(eps[:2], 10) // eps[2] has left the pool: shown by address
	first, moved := sendTo(c, eps[0]), sendTo(c, eps[0])
	sendTo(c, eps[1])
	sendTo(c, eps[2])
	c.ResponseHeaders(ctx, moved, nil, &scheduler.Response{Served: eps[1].HostPort})
	c.ResponseComplete(ctx, first, nil, &scheduler.Response{})

	want := map[string]any{
		"requests": 3.0, "tokens": 30.0, "tokensTracked": true, "requestTimeoutSeconds": 3600.0,
		"endpoints": map[string]any{
			"ep-0001":       map[string]any{"requests": 2.0, "tokens": 20.0},
			eps[2].HostPort: map[string]any{"requests": 1.0, "tokens": 10.0},
		},
		"moreEndpoints": 0.0,
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, c)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

// TestCounterDumpStateCapped: past scheduler.DumpLimit busy endpoints only
// the busiest are listed, the rest counted; the totals cover all.
func TestCounterDumpStateCapped(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(scheduler.DumpLimit+50, 1)
	c := counterOver(eps, 0)
	wantEndpoints := map[string]any{}
	for i, e := range eps {
		sendTo(c, e)
		if i < scheduler.DumpLimit { // the busiest
			sendTo(c, e)
			wantEndpoints[e.Name] = map[string]any{"requests": 2.0, "tokens": 0.0}
		}
	}
	want := map[string]any{
		"requests": float64(len(eps) + scheduler.DumpLimit), "tokens": 0.0, "tokensTracked": false,
		"requestTimeoutSeconds": 3600.0, "endpoints": wantEndpoints, "moreEndpoints": 50.0,
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, c)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

// TestCounterDumpWhileServing dumps while requests start, move and finish
// on other goroutines (run with -race): every dump is consistent, and the
// last one, after all requests finished, is empty.
func TestCounterDumpWhileServing(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(8, 1)
	c := counterOver(eps, 5)
	plugintest.DumpWhile(func() {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					st := sendTo(c, eps[(g+i)%len(eps)])
					c.ResponseHeaders(ctx, st, nil, &scheduler.Response{Served: eps[i%len(eps)].HostPort})
					c.ResponseComplete(ctx, st, nil, &scheduler.Response{})
				}
			})
		}
		wg.Wait()
	}, func() {
		st := c.Dump()
		sum := inflight.EndpointLoad{}
		for _, l := range st.Endpoints {
			sum.Requests += l.Requests
			sum.Tokens += l.Tokens
		}
		if sum.Requests != st.Requests || sum.Tokens != st.Tokens || st.Tokens != 5*st.Requests || st.Requests > 8 {
			t.Fatalf("inconsistent dump: %+v", st)
		}
		if _, err := json.Marshal(c.DumpState()); err != nil {
			t.Fatal(err)
		}
	})
	if st := c.Dump(); st.Requests != 0 || len(st.Endpoints) != 0 {
		t.Errorf("after every request finished: %+v", st)
	}
}

func ExampleCounter_DumpState() {
	eps := plugintest.Endpoints(2, 1)
	c := counterOver(eps, 0)
	sendTo(c, eps[1])
	raw, _ := json.Marshal(c.DumpState())
	fmt.Println(string(raw))
	// Output: {"requests":1,"tokens":0,"tokensTracked":false,"requestTimeoutSeconds":3600,"endpoints":{"ep-0001":{"requests":1,"tokens":0}},"moreEndpoints":0}
}
