package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/types/known/structpb"
)

// routeThenRun answers a routed request phase, then runs rest.
func routeThenRun(rest func(extprocv3.ExternalProcessor_ProcessServer) error) script {
	return func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		msgs, err := readRequest(srv)
		if err != nil {
			return err
		}
		replies := []*extprocv3.ProcessingResponse{routed("10.0.0.1:8000")}
		if !msgs[0].GetRequestHeaders().GetEndOfStream() {
			replies = append(replies, reqBodyReply(string(bodyOf(msgs)), true))
		}
		if err := sendAll(srv, replies...); err != nil {
			return err
		}
		return rest(srv)
	}
}

// splitEcho replies to each response body chunk with two halves, the last
// carrying request-cost metadata, after checking the served endpoint.
func splitEcho(srv extprocv3.ExternalProcessor_ProcessServer) error {
	hdrs, err := srv.Recv()
	if err != nil {
		return err
	}
	served := hdrs.GetMetadataContext().GetFilterMetadata()[LBNamespace].GetFields()[ServedKey].GetStringValue()
	subset := hdrs.GetMetadataContext().GetFilterMetadata()[SubsetNamespace]
	if served != "10.0.0.1:8000" || subset == nil {
		return fmt.Errorf("response metadata_context: served %q, subset %v", served, subset)
	}
	mut := &extprocv3.HeaderMutation{
		SetHeaders:    []*corev3.HeaderValueOption{setHeader("x-went-into-resp-headers", "true"), setHeader(":status", "201")},
		RemoveHeaders: []string{"x-internal"},
	}
	if err := sendAll(srv, respHeadersReply(mut)); err != nil {
		return err
	}
	for {
		m, err := srv.Recv()
		if err != nil {
			return err
		}
		if t := m.GetResponseTrailers(); t != nil {
			return sendAll(srv, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
				ResponseTrailers: &extprocv3.TrailersResponse{HeaderMutation: mutation(setHeader("x-usage", "42"))},
			}})
		}
		b := m.GetResponseBody()
		half := len(b.GetBody()) / 2
		last := respBodyReply(string(b.GetBody()[half:]), b.GetEndOfStream())
		if b.GetEndOfStream() {
			last.DynamicMetadata, _ = structpb.NewStruct(map[string]any{LBNamespace: map[string]any{"x-gateway-inference-request-cost": 42.0}})
		}
		if err := sendAll(srv, respBodyReply(string(b.GetBody()[:half]), false), last); err != nil {
			return err
		}
	}
}

func TestPlayResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		resp Response
		want *ResponseResult
	}{{
		name: "body with end_of_stream",
		resp: Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}, "X-Internal": {"1"}, "Content-Length": {"26"}},
			Body: []byte("abcdefghijklmnopqrstuvwxyz"), ChunkSize: 10},
		want: &ResponseResult{Status: 201, Headers: http.Header{"Content-Type": {"application/json"}, "X-Went-Into-Resp-Headers": {"true"}},
			Body:            []byte("abcdefghijklmnopqrstuvwxyz"),
			DynamicMetadata: map[string]map[string]any{LBNamespace: {"x-gateway-inference-request-cost": 42.0}}},
	}, {
		name: "body then trailers",
		resp: Response{Status: 200, Body: []byte("grpc-frame"), Trailers: http.Header{"Grpc-Status": {"0"}}},
		want: &ResponseResult{Status: 201, Headers: http.Header{"X-Went-Into-Resp-Headers": {"true"}},
			Body: []byte("grpc-frame"), Trailers: http.Header{"Grpc-Status": {"0"}, "X-Usage": {"42"}}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := startFake(t, routeThenRun(splitEcho))
			ctx := testCtx(t)
			s, err := c.Open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			subset := map[string]map[string]any{SubsetNamespace: {SubsetKey: []string{"10.0.0.1:8000"}}}
			if _, err := s.SendRequest(ctx, Request{Method: "POST", Path: "/v1/completions", Body: []byte("{}"), FilterMetadata: subset}); err != nil {
				t.Fatalf("SendRequest: %v", err)
			}
			tc.resp.FilterMetadata = map[string]map[string]any{LBNamespace: {ServedKey: "10.0.0.1:8000"}}
			got, err := s.PlayResponse(ctx, tc.resp)
			if err != nil {
				t.Fatalf("PlayResponse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

// echoServer routes and then echoes every response-phase message at once.
var echoServer = routeThenRun(func(srv extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		m, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		reply, err := responsePhaseEcho(m)
		if err != nil {
			return err
		}
		if err := srv.Send(reply); err != nil {
			return err
		}
	}
})

// TestResponseStreaming checks that each forwarded chunk can be read before
// the next one is sent, as SSE needs.
func TestResponseStreaming(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, echoServer)
	ctx := testCtx(t)
	s := openRouted(ctx, t, c)
	if err := s.SendResponseHeaders(ctx, Response{Status: 200, Headers: http.Header{"Content-Type": {"text/event-stream"}}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AwaitResponseHeaders(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		event := fmt.Sprintf("data: {\"n\":%d}\n\n", i)
		if err := s.SendResponseBody(ctx, []byte(event), false); err != nil {
			t.Fatal(err)
		}
		got, err := s.RecvResponseBody(ctx)
		if err != nil || string(got) != event {
			t.Fatalf("chunk %d: got %q, %v; want %q", i, got, err, event)
		}
	}
	if err := s.SendResponseBody(ctx, nil, true); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RecvResponseBody(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after end_of_stream: got %q, %v; want io.EOF", got, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func openRouted(ctx context.Context, t *testing.T, c *Client) *Stream {
	t.Helper()
	s, err := c.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.SendRequest(ctx, Request{Method: "GET", Path: "/"}); err != nil {
		t.Fatalf("SendRequest: %v", err)
	}
	return s
}

// TestResponseHeadersReplyDeferred checks that PlayResponse does not
// deadlock when the processor holds the response headers reply until the
// response body ends.
func TestResponseHeadersReplyDeferred(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, routeThenRun(func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		msgs, err := recvN(srv, 4) // headers and three chunks
		if err != nil {
			return err
		}
		if err := sendAll(srv, respHeadersReply(nil), respBodyReply(string(bodyOf(msgs)), true)); err != nil {
			return err
		}
		return waitEnd(srv)
	}))
	ctx := testCtx(t)
	s := openRouted(ctx, t, c)
	got, err := s.PlayResponse(ctx, Response{Status: 200, Body: []byte("0123456789"), ChunkSize: 4})
	if err != nil {
		t.Fatalf("PlayResponse: %v", err)
	}
	if string(got.Body) != "0123456789" {
		t.Errorf("body %q", got.Body)
	}
}

func TestImmediateResponseMidResponse(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, routeThenRun(func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		if _, err := recvN(srv, 2); err != nil {
			return err
		}
		if err := sendAll(srv, respHeadersReply(nil), respBodyReply("partial", false), immediateReply(500, "model server error", nil)); err != nil {
			return err
		}
		return waitEnd(srv)
	}))
	ctx := testCtx(t)
	s := openRouted(ctx, t, c)
	if err := s.SendResponseHeaders(ctx, Response{Status: 200}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SendResponseBody(ctx, []byte("partial"), false); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RecvResponseBody(ctx); err != nil || string(got) != "partial" {
		t.Fatalf("first chunk: %q, %v", got, err)
	}
	_, err := s.RecvResponseBody(ctx)
	var imm *ImmediateResponse
	if !errors.As(err, &imm) || imm.Status != 500 || imm.Phase != "response" {
		t.Fatalf("error = %v, want a 500 immediate response in the response phase", err)
	}
	if err := s.SendResponseBody(ctx, []byte("more"), true); !errors.Is(err, ErrExchangeEnded) {
		t.Errorf("send after immediate response: %v, want ErrExchangeEnded", err)
	}
}
