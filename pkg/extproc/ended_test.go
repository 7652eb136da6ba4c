package extproc

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// evictAfter answers the response-phase messages it is told to read with
// replies, then waits for evict and sends an unsolicited eviction, as llm-d's
// in-flight eviction does while the client is not waiting for anything.
func evictAfter(evict <-chan struct{}, read int, replies ...*extprocv3.ProcessingResponse) script {
	return routeThenRun(func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		if _, err := recvN(srv, read); err != nil {
			return err
		}
		if err := sendAll(srv, replies...); err != nil {
			return err
		}
		<-evict
		if err := sendAll(srv, immediateReply(429, "evicted", mutation(setHeader("x-llm-d-request-dropped-reason", "evicted")))); err != nil {
			return err
		}
		return waitEnd(srv)
	})
}

// unsolicited is a point where the client waits for nothing and the
// processor evicts.
type unsolicited struct {
	name      string
	read      int // response-phase messages the processor reads first
	replies   []*extprocv3.ProcessingResponse
	client    func(context.Context, *Stream) error // what the client did before
	wantPhase string
	after     func(context.Context, *Stream) (send, wait error) // a later send and a later wait
}

func unsolicitedCases() []unsolicited {
	return []unsolicited{{
		name: "after the decision, upstream not answered yet", wantPhase: "request",
		client: func(context.Context, *Stream) error { return nil },
		after: func(ctx context.Context, s *Stream) (error, error) {
			res, err := s.AwaitResponseHeaders(ctx)
			return s.SendResponseHeaders(ctx, Response{Status: 200}, false), immediateOf(res, err)
		},
	}, {
		name: "response headers sent, their reply not in yet", read: 1, wantPhase: "response",
		client: func(ctx context.Context, s *Stream) error {
			return s.SendResponseHeaders(ctx, Response{Status: 200}, false)
		},
		after: func(ctx context.Context, s *Stream) (error, error) {
			_, err := s.RecvResponseBody(ctx)
			return s.SendResponseBody(ctx, []byte("x"), true), err
		},
	}, {
		name: "response headers answered, client waits for nothing", read: 1, replies: []*extprocv3.ProcessingResponse{respHeadersReply(nil)}, wantPhase: "response",
		client: func(ctx context.Context, s *Stream) error {
			if err := s.SendResponseHeaders(ctx, Response{Status: 200}, false); err != nil {
				return err
			}
			_, err := s.AwaitResponseHeaders(ctx)
			return err
		},
		after: func(ctx context.Context, s *Stream) (error, error) {
			_, err := s.AwaitResponseTrailers(ctx)
			return s.SendResponseTrailers(ctx, http.Header{"X-Usage": {"1"}}), err
		},
	}}
}

func TestUnsolicitedImmediateResponse(t *testing.T) {
	t.Parallel()
	for _, tc := range unsolicitedCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			evict := make(chan struct{})
			c, results := startFake(t, evictAfter(evict, tc.read, tc.replies...))
			ctx := testCtx(t)
			s := openRouted(ctx, t, c)
			if err := tc.client(ctx, s); err != nil {
				t.Fatal(err)
			}
			if s.Err() != nil || s.Immediate() != nil {
				t.Fatalf("before the eviction: Err %v, Immediate %v", s.Err(), s.Immediate())
			}
			close(evict)
			select {
			case <-s.Ended():
			case <-ctx.Done():
				t.Fatal("Ended not closed after an unsolicited immediate response")
			}
			want := &ImmediateResponse{Status: 429, Body: []byte("evicted"), Details: "test", Phase: tc.wantPhase,
				Headers: http.Header{"Content-Type": {"text/plain"}, "X-Llm-D-Request-Dropped-Reason": {"evicted"}}}
			if diff := cmp.Diff(want, s.Immediate(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Immediate (-want +got):\n%s", diff)
			}
			var imm *ImmediateResponse
			if err := s.Err(); !errors.As(err, &imm) || imm != s.Immediate() {
				t.Errorf("Err = %v, want the immediate response", err)
			}
			sendErr, waitErr := tc.after(ctx, s)
			if !errors.Is(sendErr, ErrExchangeEnded) {
				t.Errorf("send after the eviction: %v, want ErrExchangeEnded", sendErr)
			}
			if imm = nil; !errors.As(waitErr, &imm) || imm != s.Immediate() {
				t.Errorf("wait after the eviction: %v, want the immediate response", waitErr)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := <-results; err != nil {
				t.Errorf("processor: %v", err)
			}
		})
	}
}

// immediateOf turns AwaitResponseHeaders' outcome into the immediate
// response it carries, as an error.
func immediateOf(res *ResponseResult, err error) error {
	if err != nil || res.Immediate == nil {
		return errors.Join(err, errors.New("no immediate response"))
	}
	return res.Immediate
}

func TestEndedOnlyWhenEndedEarly(t *testing.T) {
	t.Parallel()
	t.Run("normal end leaves it open", func(t *testing.T) {
		t.Parallel()
		c, _ := startFake(t, echoServer)
		ctx := testCtx(t)
		s := openRouted(ctx, t, c)
		if _, err := s.PlayResponse(ctx, Response{Status: 200, Body: []byte("ok")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.Ended():
			t.Errorf("Ended closed after a normal exchange, Err %v", s.Err())
		default:
		}
	})
	t.Run("a spurious reply closes it", func(t *testing.T) {
		t.Parallel()
		c, _ := startFake(t, routeThenRun(func(srv extprocv3.ExternalProcessor_ProcessServer) error {
			if err := sendAll(srv, routed(dest)); err != nil {
				return err
			}
			return waitEnd(srv)
		}))
		ctx := testCtx(t)
		s := openRouted(ctx, t, c)
		select {
		case <-s.Ended():
		case <-time.After(5 * time.Second):
			t.Fatal("Ended not closed after a protocol violation")
		}
		var pe *ProtocolError
		if err := s.Err(); !errors.As(err, &pe) || s.Immediate() != nil {
			t.Errorf("Err = %v, Immediate %v; want a ProtocolError and none", err, s.Immediate())
		}
	})
}

// TestCloseAfterAbortOnlyCancels: Close after Abort (the proxy's deferred
// cleanup) must not half-close first, or the processor would see a clean end
// instead of the reset Envoy sends.
func TestCloseAfterAbortOnlyCancels(t *testing.T) {
	t.Parallel()
	for i := range 10 { // the half-close used to win the race every time
		c, results := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error { return waitEnd(srv) })
		ctx := testCtx(t)
		s, err := c.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendRequestHeaders(ctx, Request{Method: "POST", Path: "/"}, false); err != nil {
			t.Fatal(err)
		}
		s.Abort()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if code := status.Code(<-results); code != codes.Canceled {
			t.Fatalf("run %d: processor saw %v, want Canceled", i, code)
		}
	}
}
