package extproc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// answer reads the request phase, sends replies, then waits for the end.
func answer(replies ...*extprocv3.ProcessingResponse) script {
	return func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		if _, err := readRequest(srv); err != nil {
			return err
		}
		if err := sendAll(srv, replies...); err != nil {
			return err
		}
		return waitEnd(srv)
	}
}

// playDefault sends a 10-byte body in 4-byte chunks and closes.
func playDefault(ctx context.Context, s *Stream) error {
	_, err := s.SendRequest(ctx, Request{Method: "POST", Path: "/v1/completions", Body: []byte("0123456789"), ChunkSize: 4})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

func playWithTrailers(ctx context.Context, s *Stream) error {
	_, err := s.SendRequest(ctx, Request{Method: "POST", Path: "/p", Body: []byte("0123456789"), Trailers: http.Header{"X-T": {"1"}}})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

func bodyMutationReply(bm *extprocv3.BodyMutation, status extprocv3.CommonResponse_ResponseStatus) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{Status: status, BodyMutation: bm},
	}}}
}

func mutation(opts ...*corev3.HeaderValueOption) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{SetHeaders: opts}
}

// violation is a processor misbehaviour and the error the client must give.
type violation struct {
	name    string
	server  script
	client  func(context.Context, *Stream) error // playDefault when nil
	wantErr string
}

const dest = "10.0.0.1:8000"

func replaceReply() *extprocv3.ProcessingResponse {
	r := routed(dest)
	r.GetRequestHeaders().GetResponse().Status = extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	return r
}

func headersWithBodyReply() *extprocv3.ProcessingResponse {
	r := routed(dest)
	r.GetRequestHeaders().GetResponse().BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("x")}}
	return r
}

func bothValuesReply() *extprocv3.ProcessingResponse {
	o := setHeader("x-a", "raw")
	o.Header.Value = "plain"
	return reqHeadersReply(mutation(o))
}

func timeoutReply() *extprocv3.ProcessingResponse {
	r := routed(dest)
	r.OverrideMessageTimeout = durationpb.New(1e9)
	return r
}

func tooManyReply() *extprocv3.ProcessingResponse {
	opts := make([]*corev3.HeaderValueOption, maxHeadersCount+1)
	for i := range opts {
		opts[i] = setHeader("x-h", "v")
	}
	return reqHeadersReply(mutation(opts...))
}

// earlyEOSServer ends the body as soon as it saw the first chunk.
func earlyEOSServer(srv extprocv3.ExternalProcessor_ProcessServer) error {
	if _, err := recvN(srv, 2); err != nil {
		return err
	}
	return sendAll(srv, routed(dest), reqBodyReply("abc", true))
}

// oneChunkClient sends one chunk without end_of_stream and waits.
func oneChunkClient(ctx context.Context, s *Stream) error {
	defer s.Close()
	if err := s.SendRequestHeaders(ctx, Request{Method: "POST", Path: "/p"}, false); err != nil {
		return err
	}
	if err := s.SendRequestBody(ctx, []byte("abc"), false); err != nil {
		return err
	}
	_, err := s.AwaitDecision(ctx)
	return err
}

func violations() []violation {
	full := reqBodyReply("0123456789", true)
	body := func(bm *extprocv3.BodyMutation) *extprocv3.ProcessingResponse { return bodyMutationReply(bm, 0) }
	return []violation{
		{name: "body reply before headers reply", server: answer(full, routed(dest)), wantErr: "body reply before the headers reply"},
		{name: "body mutation replaces the body", server: answer(routed(dest), body(&extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("x")}})), wantErr: "body_mutation.body is not allowed"},
		{name: "body mutation clears the body", server: answer(routed(dest), body(&extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}})), wantErr: "clear_body is not allowed"},
		{name: "body reply without mutation", server: answer(routed(dest), body(nil)), wantErr: "without body_mutation.streamed_response"},
		{name: "CONTINUE_AND_REPLACE on headers", server: answer(replaceReply()), wantErr: "CONTINUE_AND_REPLACE"},
		{name: "CONTINUE_AND_REPLACE on body", server: answer(routed(dest), bodyMutationReply(full.GetRequestBody().GetResponse().GetBodyMutation(), extprocv3.CommonResponse_CONTINUE_AND_REPLACE)), wantErr: "CONTINUE_AND_REPLACE"},
		{name: "headers reply carrying a body", server: answer(headersWithBodyReply()), wantErr: "headers reply carries a body_mutation"},
		{name: "second headers reply", server: answer(routed(dest), routed(dest)), wantErr: "second headers reply"},
		{name: "response reply during request phase", server: answer(respHeadersReply(nil)), wantErr: "while the request phase is still in progress"},
		{name: "response reply before response headers", server: answer(routed(dest), full, respHeadersReply(nil)), wantErr: "whose headers were not sent"},
		{name: "trailers reply without trailers", server: answer(routed(dest), reqTrailersReply(nil)), wantErr: "no request trailers were sent"},
		{name: "body reply after end_of_stream", server: answer(routed(dest), full, reqBodyReply("more", false)), wantErr: "spurious message"},
		{name: "empty message", server: answer(&extprocv3.ProcessingResponse{}), wantErr: "has no response set"},
		{name: "streamed immediate response", server: answer(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{}}), wantErr: "not supported"},
		{name: "invalid header value", server: answer(reqHeadersReply(mutation(setHeader("x-a", "a\nb")))), wantErr: "invalid character"},
		{name: "invalid header name", server: answer(reqHeadersReply(&extprocv3.HeaderMutation{RemoveHeaders: []string{"bad name"}})), wantErr: "invalid header name"},
		{name: "value and raw_value", server: answer(bothValuesReply()), wantErr: "both value and raw_value"},
		{name: "too many mutations", server: answer(tooManyReply()), wantErr: "above Envoy's limit"},
		{name: "override_message_timeout with a reply", server: answer(timeoutReply()), wantErr: "override_message_timeout"},
		{name: "destination without port", server: answer(routed("10.0.0.1"), full), wantErr: "not ip:port"},
		{name: "destination is a name", server: answer(routed("pod-a:8000"), full), wantErr: "not ip:port"},
		{name: "destination differs from metadata", server: answer(withLB(routed(dest), structpb.NewStringValue("10.0.0.2:8000")), full), wantErr: "differs from dynamic metadata"},
		{name: "metadata destination not a string", server: answer(withLB(routed(dest), structpb.NewListValue(&structpb.ListValue{})), full), wantErr: "want a string"},
		{name: "destination set twice", server: answer(reqHeadersReply(mutation(setHeader(DestinationHeader, dest), appendHeader(DestinationHeader, dest))), full), wantErr: "has 2 values"},
		{name: "end_of_stream while trailers follow", server: answer(routed(dest), full), client: playWithTrailers, wantErr: "continues with trailers"},
		{name: "trailers reply before headers reply", server: answer(reqTrailersReply(nil), routed(dest)), client: playWithTrailers, wantErr: "trailers reply before the headers reply"},
		{name: "end_of_stream before the client's", server: earlyEOSServer, client: oneChunkClient, wantErr: "before the client sent end_of_stream"},
	}
}

func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	for _, tc := range violations() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := startFake(t, tc.server)
			ctx := testCtx(t)
			s, err := c.Open(ctx)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			play := tc.client
			if play == nil {
				play = playDefault
			}
			err = play(ctx, s)
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want a ProtocolError mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestStreamFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		server      script
		wantCode    codes.Code
		wantPending string
	}{{
		name: "processor ends the stream early",
		server: func(srv extprocv3.ExternalProcessor_ProcessServer) error {
			_, err := recvN(srv, 1)
			return err
		},
		wantCode: codes.OK, wantPending: "request_headers reply",
	}, {
		name: "processor fails the stream",
		server: func(srv extprocv3.ExternalProcessor_ProcessServer) error {
			if _, err := readRequest(srv); err != nil {
				return err
			}
			if err := sendAll(srv, routed("10.0.0.1:80")); err != nil {
				return err
			}
			return status.Error(codes.ResourceExhausted, "body too large")
		},
		wantCode: codes.ResourceExhausted, wantPending: "request_body streamed_response with end_of_stream",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := startFake(t, tc.server)
			_, err := c.RoundTrip(testCtx(t), Request{Method: "POST", Path: "/p", Body: []byte("body")})
			var se *StreamError
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want a StreamError", err)
			}
			if se.Code != tc.wantCode || se.Pending != tc.wantPending {
				t.Errorf("StreamError code %v pending %q, want %v %q", se.Code, se.Pending, tc.wantCode, tc.wantPending)
			}
		})
	}
}

func TestUnreachableProcessor(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	c := dialTest(t, addr)
	_, err = c.RoundTrip(testCtx(t), Request{Method: "GET", Path: "/"})
	var se *StreamError
	if !errors.As(err, &se) || se.Code != codes.Unavailable {
		t.Fatalf("error = %v, want a StreamError with code Unavailable", err)
	}
}

func TestProcessorEndsBeforeResponsePhase(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		if _, err := readRequest(srv); err != nil {
			return err
		}
		return sendAll(srv, routed("10.0.0.1:80"))
	})
	ctx := testCtx(t)
	s, err := c.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.SendRequest(ctx, Request{Method: "GET", Path: "/"}); err != nil {
		t.Fatalf("SendRequest: %v", err)
	}
	_, err = s.PlayResponse(ctx, Response{Status: 200, Body: []byte("ok")})
	var se *StreamError
	if !errors.As(err, &se) {
		t.Fatalf("PlayResponse error = %v, want a StreamError", err)
	}
}
