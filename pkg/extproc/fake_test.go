package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// script is a fake processor's behaviour for one stream.
type script func(srv extprocv3.ExternalProcessor_ProcessServer) error

// fakeServer runs a script per stream and reports each stream's outcome.
type fakeServer struct {
	extprocv3.UnimplementedExternalProcessorServer
	run     script
	results chan error
}

func (f *fakeServer) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	err := f.run(srv)
	select {
	case f.results <- err:
	default:
	}
	return err
}

// serve starts impl on a loopback port and returns its address; the server
// stops when the test ends.
func serve(t testing.TB, impl extprocv3.ExternalProcessorServer, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(DefaultMaxMessageSize), grpc.MaxSendMsgSize(DefaultMaxMessageSize)}, opts...)
	srv := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(srv, impl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// dialTest dials addr in plaintext with a short close grace.
func dialTest(t testing.TB, addr string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithPlaintext(), WithCloseGrace(time.Second)}, opts...)
	c, err := Dial(context.Background(), addr, opts...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startFake serves run and returns a client for it plus the outcome channel.
func startFake(t *testing.T, run script) (*Client, chan error) {
	t.Helper()
	f := &fakeServer{run: run, results: make(chan error, 4)}
	return dialTest(t, serve(t, f)), f.results
}

// readRequest receives the request phase: headers, then body chunks until
// end_of_stream, or trailers.
func readRequest(srv extprocv3.ExternalProcessor_ProcessServer) ([]*extprocv3.ProcessingRequest, error) {
	var msgs []*extprocv3.ProcessingRequest
	for {
		m, err := srv.Recv()
		if err != nil {
			return msgs, fmt.Errorf("fake: receive: %w", err)
		}
		msgs = append(msgs, m)
		switch r := m.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if r.RequestHeaders.GetEndOfStream() {
				return msgs, nil
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			if r.RequestBody.GetEndOfStream() {
				return msgs, nil
			}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			return msgs, nil
		default:
			return msgs, fmt.Errorf("fake: unexpected %s during the request phase", requestKind(m))
		}
	}
}

// recvN receives n messages.
func recvN(srv extprocv3.ExternalProcessor_ProcessServer, n int) ([]*extprocv3.ProcessingRequest, error) {
	out := make([]*extprocv3.ProcessingRequest, 0, n)
	for range n {
		m, err := srv.Recv()
		if err != nil {
			return out, fmt.Errorf("fake: receive: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// sendAll sends msgs in order.
func sendAll(srv extprocv3.ExternalProcessor_ProcessServer, msgs ...*extprocv3.ProcessingResponse) error {
	for _, m := range msgs {
		if err := srv.Send(m); err != nil {
			return fmt.Errorf("fake: send: %w", err)
		}
	}
	return nil
}

// waitEnd blocks until the client ends the stream.
func waitEnd(srv extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		if _, err := srv.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// bodyOf concatenates the request or response body chunks of msgs.
func bodyOf(msgs []*extprocv3.ProcessingRequest) []byte {
	var b []byte
	for _, m := range msgs {
		b = append(b, m.GetRequestBody().GetBody()...)
		b = append(b, m.GetResponseBody().GetBody()...)
	}
	return b
}

func setHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)}}
}

func appendHeader(key, value string) *corev3.HeaderValueOption {
	o := setHeader(key, value)
	o.Append = wrapperspb.Bool(true)
	return o
}

// reqHeadersReply answers request headers with the given header mutation.
func reqHeadersReply(mut *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}},
	}}
}

func respHeadersReply(mut *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}},
	}}
}

func reqBodyReply(body string, eos bool) *extprocv3.ProcessingResponse {
	return streamedReply(true, []byte(body), eos)
}

func respBodyReply(body string, eos bool) *extprocv3.ProcessingResponse {
	return streamedReply(false, []byte(body), eos)
}

func reqTrailersReply(mut *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
		RequestTrailers: &extprocv3.TrailersResponse{HeaderMutation: mut},
	}}
}

func immediateReply(code int, body string, mut *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Body:    []byte(body),
			Headers: mut,
			Details: "test",
		},
	}}
}

// routed is the EPP's headers reply: destination header, clear_route_cache
// and the same value in envoy.lb dynamic metadata.
func routed(dest string) *extprocv3.ProcessingResponse {
	return (&NoopServer{Destination: dest}).headersReply()
}

// withLB sets the envoy.lb destination metadata of a reply.
func withLB(r *extprocv3.ProcessingResponse, value *structpb.Value) *extprocv3.ProcessingResponse {
	r.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{
		LBNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{DestinationHeader: value}}),
	}}
	return r
}

func headerValues(m *corev3.HeaderMap) map[string][]string {
	out := map[string][]string{}
	for _, h := range m.GetHeaders() {
		out[h.GetKey()] = append(out[h.GetKey()], string(h.GetRawValue())+valueMarker(h))
	}
	return out
}

// valueMarker flags a header sent in value instead of raw_value, which Envoy
// never does.
func valueMarker(h *corev3.HeaderValue) string {
	if h.GetValue() != "" {
		return " (VALUE FIELD SET)"
	}
	return ""
}
