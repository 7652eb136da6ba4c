package server_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

// revokingGate is an Admission whose passes are Revocable: it keeps each
// request's revoke function and counts releases.
type revokingGate struct {
	mu       sync.Mutex
	revokes  []func()
	released int
}

func (g *revokingGate) Admit(context.Context, *scheduler.Request, int) (server.Admitted, error) {
	return revokingPass{g}, nil
}

type revokingPass struct{ g *revokingGate }

func (p revokingPass) Scheduled() {}

func (p revokingPass) Released() {
	p.g.mu.Lock()
	defer p.g.mu.Unlock()
	p.g.released++
}

func (p revokingPass) Dispatched(revoke func()) {
	p.g.mu.Lock()
	defer p.g.mu.Unlock()
	p.g.revokes = append(p.g.revokes, revoke)
}

func (g *revokingGate) revoke(t *testing.T, i int) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if i >= len(g.revokes) {
		t.Fatalf("request %d was never offered for revocation", i)
	}
	g.revokes[i]()
}

func (g *revokingGate) releases() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.released
}

func requireEvicted(t *testing.T, imm *extproc.ImmediateResponse) {
	t.Helper()
	if imm == nil {
		t.Fatal("no immediate response after the eviction")
	}
	if imm.Status != http.StatusTooManyRequests || imm.Headers.Get(server.DroppedReasonHeader) != server.EvictedReason ||
		imm.Headers.Get(server.LLMDDroppedReasonHeader) != server.EvictedReason {
		t.Fatalf("eviction answered %d %v %q, want 429 with reason evicted", imm.Status, imm.Headers, imm.Body)
	}
}

// TestEvictionWhileTheModelServerStreams: revoked mid-response, the
// request's stream gets an immediate 429 (Envoy resets the client's and
// the upstream's streams), the exchange stops, and its pass is released.
func TestEvictionWhileTheModelServerStreams(t *testing.T) {
	g, h, s, ctx := routedRevocable(t)
	sse := http.Header{"content-type": {"text/event-stream"}}
	if err := s.SendResponseHeaders(ctx, extproc.Response{Status: 200, Headers: sse}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SendResponseBody(ctx, []byte("data: {\"choices\":[{\"text\":\"a\"}]}\n\n"), false); err != nil {
		t.Fatal(err)
	}
	if chunk, err := s.RecvResponseBody(ctx); err != nil || len(chunk) == 0 {
		t.Fatalf("first chunk: %q %v", chunk, err)
	}
	g.revoke(t, 0)
	_, err := s.RecvResponseBody(ctx)
	var imm *extproc.ImmediateResponse
	if !errors.As(err, &imm) {
		t.Fatalf("after the eviction the body ended with %v, want the immediate response", err)
	}
	requireEvicted(t, imm)
	requireReleasedOnce(t, g, h, s)
	g.revoke(t, 0) // a late second revocation finds the stream over
}

// TestEvictionBeforeTheResponseStarts: revoked while the model server has
// not answered yet (queued or prefilling), the proxy gets the 429 to send
// the client.
func TestEvictionBeforeTheResponseStarts(t *testing.T) {
	g, h, s, ctx := routedRevocable(t)
	g.revoke(t, 0)
	select {
	case <-s.Ended():
	case <-ctx.Done():
		t.Fatal("the eviction never reached the proxy")
	}
	requireEvicted(t, s.Immediate())
	requireReleasedOnce(t, g, h, s)
}

// routedRevocable starts a server behind a revokingGate and routes one
// request on a stream left open.
func routedRevocable(t *testing.T) (*revokingGate, *harness, *extproc.Stream, context.Context) {
	t.Helper()
	g := &revokingGate{}
	h := start(t, setup{server: server.Options{Admission: g}})
	s := h.open(t)
	ctx := testCtx(t)
	if d, err := s.SendRequest(ctx, post("/v1/completions", completion("evicted"), "x-request-id", "evicted")); err != nil || d.Immediate != nil {
		t.Fatalf("not routed: %v %+v", err, d)
	}
	return g, h, s, ctx
}

// requireReleasedOnce closes s and checks that the server released the
// request's pass once.
func requireReleasedOnce(t *testing.T, g *revokingGate, h *harness, s *extproc.Stream) {
	t.Helper()
	_ = s.Close()
	h.waitIdle(t)
	if n := g.releases(); n != 1 {
		t.Errorf("released %d times, want 1", n)
	}
	if r := h.rec.completed(t, "evicted"); r.Termination != scheduler.TerminationEvicted || !r.Cancelled {
		t.Errorf("ResponseComplete saw termination %q (cancelled %v), want evicted", r.Termination, r.Cancelled)
	}
}
