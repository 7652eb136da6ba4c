package extproc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/openepp/openepp/pkg/certfile/certtest"
)

func TestAbortCancelsTheStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		abort func(s *Stream, cancel context.CancelFunc)
	}{
		{name: "Abort", abort: func(s *Stream, _ context.CancelFunc) { s.Abort() }},
		{name: "context cancelled", abort: func(_ *Stream, cancel context.CancelFunc) { cancel() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gotChunk := make(chan struct{})
			c, results := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error {
				if _, err := recvN(srv, 2); err != nil {
					return err
				}
				close(gotChunk)
				return waitEnd(srv)
			})
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			s, err := c.Open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SendRequestHeaders(ctx, Request{Method: "POST", Path: "/p"}, false); err != nil {
				t.Fatal(err)
			}
			if err := s.SendRequestBody(ctx, []byte("half"), false); err != nil {
				t.Fatal(err)
			}
			<-gotChunk
			tc.abort(s, cancel)
			if code := status.Code(<-results); code != codes.Canceled {
				t.Errorf("processor saw %v, want Canceled", code)
			}
			if _, err := s.AwaitDecision(context.Background()); err == nil {
				t.Errorf("AwaitDecision after abort succeeded")
			}
			if err := s.SendRequestBody(context.Background(), []byte("rest"), true); err == nil {
				t.Errorf("SendRequestBody after abort succeeded")
			}
			_ = s.Close()
		})
	}
}

func TestAbortReturnsErrAborted(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error { return waitEnd(srv) })
	ctx := testCtx(t)
	s, err := c.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendRequestHeaders(ctx, Request{Method: "POST", Path: "/p"}, false); err != nil {
		t.Fatal(err)
	}
	s.Abort()
	if _, err := s.AwaitDecision(ctx); !errors.Is(err, ErrAborted) {
		t.Errorf("AwaitDecision: %v, want ErrAborted", err)
	}
	if err := s.SendRequestBody(ctx, []byte("x"), true); !errors.Is(err, ErrAborted) {
		t.Errorf("SendRequestBody: %v, want ErrAborted", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Abort: %v, want nil", err)
	}
}

// sendReq plays SendRequest with req.
func sendReq(req Request) func(context.Context, *Stream) error {
	return func(ctx context.Context, s *Stream) error {
		_, err := s.SendRequest(ctx, req)
		return err
	}
}

// afterHeaders sends bodyless or open request headers, then runs next.
func afterHeaders(eos bool, next func(context.Context, *Stream) error) func(context.Context, *Stream) error {
	return func(ctx context.Context, s *Stream) error {
		if err := s.SendRequestHeaders(ctx, Request{Method: "POST", Path: "/"}, eos); err != nil {
			return err
		}
		return next(ctx, s)
	}
}

// badInput is a misuse of the API and the error it must produce.
type badInput struct {
	name    string
	play    func(context.Context, *Stream) error
	wantErr string
}

func badInputs() []badInput {
	return []badInput{
		{name: "missing method", wantErr: "needs a method", play: sendReq(Request{Path: "/"})},
		{name: "bad header name", wantErr: "invalid header name", play: sendReq(Request{Method: "GET", Path: "/", Headers: http.Header{"Bad Name": {"1"}}})},
		{name: "bad header value", wantErr: "invalid character", play: sendReq(Request{Method: "GET", Path: "/", Headers: http.Header{"X-A": {"a\r\nb"}}})},
		{name: "negative chunk size", wantErr: "chunk size", play: sendReq(Request{Method: "GET", Path: "/", ChunkSize: -1})},
		{name: "unsupported metadata", wantErr: "filter metadata", play: sendReq(Request{Method: "GET", Path: "/", FilterMetadata: map[string]map[string]any{"ns": {"k": struct{}{}}}})},
		{name: "body before headers", wantErr: "headers not sent", play: func(ctx context.Context, s *Stream) error {
			return s.SendRequestBody(ctx, []byte("x"), true)
		}},
		{name: "body after end_of_stream", wantErr: "already ended", play: afterHeaders(false, func(ctx context.Context, s *Stream) error {
			if err := s.SendRequestBody(ctx, []byte("x"), true); err != nil {
				return err
			}
			return s.SendRequestBody(ctx, []byte("y"), false)
		})},
		{name: "headers twice", wantErr: "already sent", play: afterHeaders(true, func(ctx context.Context, s *Stream) error {
			return s.SendRequestHeaders(ctx, Request{Method: "GET", Path: "/"}, true)
		})},
		{name: "response before decision", wantErr: "before the request phase ended", play: afterHeaders(true, func(ctx context.Context, s *Stream) error {
			return s.SendResponseHeaders(ctx, Response{Status: 200}, true)
		})},
		{name: "invalid status", wantErr: "invalid response status", play: func(ctx context.Context, s *Stream) error {
			return s.SendResponseHeaders(ctx, Response{Status: 0}, true)
		}},
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error { return waitEnd(srv) })
	for _, tc := range badInputs() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			s, err := c.Open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Abort()
			if err := tc.play(ctx, s); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestLargeBodySingleMessage sends a 25 MiB body as one request_body message,
// the multimodal case that needs raised gRPC message limits.
func TestLargeBodySingleMessage(t *testing.T) {
	t.Parallel()
	c := dialTest(t, serve(t, &NoopServer{Destination: "10.0.0.1:8000"}))
	body := bytes.Repeat([]byte("0123456789abcdef"), 25<<20/16)
	d, err := c.RoundTrip(testCtx(t), Request{Method: "POST", Path: "/v1/chat/completions", Body: body, ChunkSize: len(body)})
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	if !bytes.Equal(d.Body, body) {
		t.Errorf("echoed body differs: %d bytes, want %d", len(d.Body), len(body))
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "ca")
	certPEM, keyPEM := ca.Server(t, "epp")
	cert := certtest.KeyPair(t, certPEM, keyPEM)
	addr := serve(t, &NoopServer{Destination: "10.0.0.1:8000"}, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	tests := []struct {
		name   string
		opt    Option
		wantOK bool
	}{
		{name: "skip verification", opt: WithInsecureSkipVerify(), wantOK: true},
		{name: "verified against its CA", opt: WithTLSConfig(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}), wantOK: true},
		{name: "verification fails against the system roots", opt: WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}), wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Dial(testCtx(t), addr, tc.opt, WithCloseGrace(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.RoundTrip(testCtx(t), Request{Method: "GET", Path: "/v1/models"})
			if (err == nil) != tc.wantOK {
				t.Errorf("RoundTrip error = %v, want success %v", err, tc.wantOK)
			}
		})
	}
}

// BenchmarkRoundTrip measures the transport floor: one exchange against the
// NoopServer over loopback gRPC, request phase only and request plus
// response phase.
func BenchmarkRoundTrip(b *testing.B) {
	c := dialTest(b, serve(b, &NoopServer{Destination: "10.0.0.1:8000"}))
	req := Request{
		Method: "POST", Path: "/v1/completions", Authority: "gw",
		Headers: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"bench"}},
		Body:    bytes.Repeat([]byte("x"), 1<<10),
	}
	ctx := context.Background()
	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.RoundTrip(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("exchange", func(b *testing.B) {
		b.ReportAllocs()
		resp := Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: bytes.Repeat([]byte("y"), 1<<10)}
		for b.Loop() {
			if err := exchange(ctx, c, req, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func exchange(ctx context.Context, c *Client, req Request, resp Response) error {
	s, err := c.Open(ctx)
	if err != nil {
		return err
	}
	if _, err := s.SendRequest(ctx, req); err != nil {
		_ = s.Close()
		return err
	}
	if _, err := s.PlayResponse(ctx, resp); err != nil {
		_ = s.Close()
		return err
	}
	return s.Close()
}

// TestMessageTooLarge checks that a chunk above the configured gRPC limit
// fails clearly instead of hanging.
func TestMessageTooLarge(t *testing.T) {
	t.Parallel()
	c := dialTest(t, serve(t, &NoopServer{}), WithMaxMessageSize(1<<10))
	_, err := c.RoundTrip(testCtx(t), Request{Method: "POST", Path: "/", Body: make([]byte, 4<<10), ChunkSize: 4 << 10})
	var se *StreamError
	if !errors.As(err, &se) || se.Code != codes.ResourceExhausted {
		t.Fatalf("error = %v, want a StreamError with code ResourceExhausted", err)
	}
}
