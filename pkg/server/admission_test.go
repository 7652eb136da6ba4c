package server_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

// gate is an Admission under a microscope: it records what it was asked
// and how its passes were used, and refuses when told to.
type gate struct {
	mu        sync.Mutex
	refuse    error
	asked     []scheduler.Request
	bytes     []int
	scheduled int
	released  int
}

func (g *gate) Admit(_ context.Context, req *scheduler.Request, bodyBytes int) (server.Admitted, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = append(g.asked, *req)
	g.bytes = append(g.bytes, bodyBytes)
	if g.refuse != nil {
		return nil, g.refuse
	}
	return pass{g}, nil
}

type pass struct{ g *gate }

func (p pass) Scheduled() {
	p.g.mu.Lock()
	defer p.g.mu.Unlock()
	p.g.scheduled++
}

func (p pass) Released() {
	p.g.mu.Lock()
	defer p.g.mu.Unlock()
	p.g.released++
}

func (g *gate) counts() (asked, scheduled, released int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.asked), g.scheduled, g.released
}

// TestAdmissionSeesParsedRequestAndHearsItsEnd checks the contract with a
// flow controller: asked once per request with a body, with its fairness
// key, model and body size known; told when the request is scheduled and
// again when it ends; never asked for a bodyless request.
func TestAdmissionSeesParsedRequestAndHearsItsEnd(t *testing.T) {
	g := &gate{}
	h := start(t, setup{server: server.Options{Admission: g}})
	body := completion("hello")
	h.route(t, post("/v1/completions", body, "x-gateway-inference-fairness-id", "tenant-7"))
	h.waitIdle(t)
	asked, scheduled, released := g.counts()
	if asked != 1 || scheduled != 1 || released != 1 {
		t.Fatalf("asked %d, scheduled %d, released %d times; want 1 each", asked, scheduled, released)
	}
	if req := g.asked[0]; req.FairnessID != "tenant-7" || req.Model != testModel || g.bytes[0] != len(body) {
		t.Errorf("admission saw fairness %q, model %q, %d bytes", req.FairnessID, req.Model, g.bytes[0])
	}
	h.route(t, post("/v1/completions", completion("no fairness header")))
	h.waitIdle(t)
	if g.asked[1].FairnessID != "default-flow" {
		t.Errorf("fairness key without a header: %q, want default-flow", g.asked[1].FairnessID)
	}
	get := post("/v1/models", nil)
	get.Method = http.MethodGet
	h.route(t, get)
	h.waitIdle(t)
	if asked, _, _ := g.counts(); asked != 2 {
		t.Errorf("a bodyless request went through admission")
	}
}

// TestAdmissionPassEndsEvenWhenSchedulingFails: a request let in and then
// refused (no endpoints) still reports Scheduled and Released, or a flow
// controller would wait for it forever.
func TestAdmissionPassEndsEvenWhenSchedulingFails(t *testing.T) {
	g := &gate{}
	h := start(t, setup{endpoints: []endpoint.Spec{}, server: server.Options{Admission: g}})
	d := h.exchange(t, post("/v1/completions", completion("x")))
	requireImmediate(t, d, http.StatusServiceUnavailable, "rejected-no-endpoints", "no ready endpoints")
	h.waitIdle(t)
	if asked, scheduled, released := g.counts(); asked != 1 || scheduled != 1 || released != 1 {
		t.Fatalf("asked %d, scheduled %d, released %d times; want 1 each", asked, scheduled, released)
	}
}

// TestAdmissionRefusals: a Refusal chooses status and reason; any other
// error is a 500.
func TestAdmissionRefusals(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		reason string
	}{
		{&server.Refusal{Code: http.StatusTooManyRequests, Reason: "rejected-ttl-expired", Err: errors.New("waited too long")},
			http.StatusTooManyRequests, "rejected-ttl-expired"},
		{errors.New("broken queue"), http.StatusInternalServerError, "internal-error"},
	} {
		g := &gate{refuse: tc.err}
		h := start(t, setup{server: server.Options{Admission: g}})
		d := h.exchange(t, post("/v1/completions", completion("x"), "x-request-id", "refused"))
		requireImmediate(t, d, tc.status, tc.reason, tc.err.Error())
		h.waitIdle(t)
		if _, scheduled, released := g.counts(); scheduled != 0 || released != 0 {
			t.Errorf("%v: a refused request's pass was used (%d, %d)", tc.err, scheduled, released)
		}
		if pre, _ := h.rec.counts("refused"); pre != 0 {
			t.Errorf("%v: a refused request was scheduled", tc.err)
		}
	}
}

// waiter is a producer that waits, as a batching window does, calling the
// state's OnWait first; it reports how often the gate had heard
// Scheduled by then.
type waiter struct {
	g      *gate
	onWait chan int
}

func (waiter) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "waiter", Name: "waiter"}
}

func (w waiter) Produce(_ context.Context, state *scheduler.State, _ *scheduler.Request, _ []*endpoint.Endpoint) {
	if state.OnWait != nil {
		state.OnWait()
		_, scheduled, _ := w.g.counts()
		w.onWait <- scheduled
	}
}

// TestAdmissionSettledBeforeAWait: a producer about to wait for other
// requests settles the request's admission first (flow control then
// releases the next queued request), and only once.
func TestAdmissionSettledBeforeAWait(t *testing.T) {
	g := &gate{}
	w := waiter{g: g, onWait: make(chan int, 1)}
	h := start(t, setup{server: server.Options{Admission: g}, plugins: []scheduler.Plugin{w}})
	h.route(t, post("/v1/completions", completion("hello")))
	h.waitIdle(t)
	select {
	case n := <-w.onWait:
		if n != 1 {
			t.Errorf("the gate had heard Scheduled %d times when the producer began to wait, want 1", n)
		}
	default:
		t.Fatal("the producer found no OnWait in the state")
	}
	if asked, scheduled, released := g.counts(); asked != 1 || scheduled != 1 || released != 1 {
		t.Fatalf("asked %d, scheduled %d, released %d times; want 1 each (OnWait and the end of scheduling settle once)", asked, scheduled, released)
	}
}
