package extproc

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// deferredRouter behaves like the EPP: it reads the whole request, then
// sends the routed headers reply and the body re-chunked in three pieces.
func deferredRouter(seen chan<- []*extprocv3.ProcessingRequest) script {
	return func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		msgs, err := readRequest(srv)
		if err != nil {
			return err
		}
		seen <- msgs
		body := bytes.ToUpper(bodyOf(msgs))
		third := len(body) / 3
		if err := sendAll(srv, routed("10.0.0.7:8000"),
			reqBodyReply(string(body[:third]), false),
			reqBodyReply(string(body[third:2*third]), false),
			reqBodyReply(string(body[2*third:]), true)); err != nil {
			return err
		}
		return waitEnd(srv)
	}
}

func TestRoundTripDeferredHeadersReply(t *testing.T) {
	t.Parallel()
	seen := make(chan []*extprocv3.ProcessingRequest, 1)
	c, _ := startFake(t, deferredRouter(seen))
	body := strings.Repeat("abcdefgh", 640) // 5 KiB: five 1 KiB chunks
	tr := &Transcript{}
	d, err := c.RoundTrip(testCtx(t), Request{
		Method: "POST", Path: "/v1/completions", Authority: "gw.local",
		Headers:        http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"rid-1"}},
		Body:           []byte(body),
		ChunkSize:      1 << 10,
		FilterMetadata: map[string]map[string]any{SubsetNamespace: {SubsetKey: []string{"10.0.0.7:8000"}}},
	}, WithRecorder(tr))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	want := &Decision{
		Method: "POST", Path: "/v1/completions", Authority: "gw.local", Scheme: "http",
		Headers: http.Header{
			"Content-Type": {"application/json"}, "X-Request-Id": {"rid-1"},
			"X-Gateway-Destination-Endpoint": {"10.0.0.7:8000"},
		},
		SetHeaders:        []HeaderValue{{Key: DestinationHeader, Value: "10.0.0.7:8000"}},
		ClearRouteCache:   true,
		DynamicMetadata:   map[string]map[string]any{LBNamespace: {DestinationHeader: "10.0.0.7:8000"}},
		DestinationHeader: "10.0.0.7:8000",
		Endpoints:         []string{"10.0.0.7:8000"},
		LBDestination:     "10.0.0.7:8000",
		Body:              []byte(strings.ToUpper(body)),
	}
	if diff := cmp.Diff(want, d, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
	wantKinds := []string{"send request_headers"}
	for range 5 {
		wantKinds = append(wantKinds, "send request_body")
	}
	wantKinds = append(wantKinds, "recv request_headers", "recv request_body", "recv request_body", "recv request_body")
	if diff := cmp.Diff(wantKinds, tr.Kinds()); diff != "" {
		t.Errorf("message order (-want +got):\n%s", diff)
	}
	checkSentLikeEnvoy(t, <-seen)
}

// checkSentLikeEnvoy asserts the request phase messages look like Envoy's.
func checkSentLikeEnvoy(t *testing.T, msgs []*extprocv3.ProcessingRequest) {
	t.Helper()
	hdrs := msgs[0].GetRequestHeaders()
	wantHeaders := map[string][]string{
		":authority": {"gw.local"}, ":path": {"/v1/completions"}, ":method": {"POST"}, ":scheme": {"http"},
		"content-type": {"application/json"}, "x-request-id": {"rid-1"}, "content-length": {"5120"},
	}
	if diff := cmp.Diff(wantHeaders, headerValues(hdrs.GetHeaders())); diff != "" {
		t.Errorf("request headers (-want +got):\n%s", diff)
	}
	if hdrs.GetEndOfStream() {
		t.Errorf("headers carry end_of_stream although a body follows")
	}
	wantMeta, _ := structpb.NewStruct(map[string]any{SubsetKey: []any{"10.0.0.7:8000"}})
	for i, m := range msgs {
		if diff := cmp.Diff(wantMeta, m.GetMetadataContext().GetFilterMetadata()[SubsetNamespace], protocmp.Transform()); diff != "" {
			t.Errorf("message %d metadata_context (-want +got):\n%s", i, diff)
		}
		if (m.GetProtocolConfig() != nil) != (i == 0) {
			t.Errorf("message %d: protocol_config present = %v, want only on the first", i, m.GetProtocolConfig() != nil)
		}
		if b := m.GetRequestBody(); b != nil && b.GetEndOfStream() != (i == len(msgs)-1) {
			t.Errorf("message %d: end_of_stream = %v", i, b.GetEndOfStream())
		}
	}
}

func TestBodylessRequest(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		msgs, err := readRequest(srv)
		if err != nil {
			return err
		}
		if len(msgs) != 1 || !msgs[0].GetRequestHeaders().GetEndOfStream() {
			return errors.New("want a single request_headers message with end_of_stream")
		}
		if err := sendAll(srv, routed("10.0.0.1:8000,10.0.0.2:8000")); err != nil {
			return err
		}
		return waitEnd(srv)
	})
	d, err := c.RoundTrip(testCtx(t), Request{Method: "GET", Path: "/v1/models"})
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	if diff := cmp.Diff([]string{"10.0.0.1:8000", "10.0.0.2:8000"}, d.Endpoints); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	if d.Body != nil || d.Authority != "localhost" {
		t.Errorf("body %q authority %q, want none and localhost", d.Body, d.Authority)
	}
}

func TestImmediateResponse(t *testing.T) {
	t.Parallel()
	dropped := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-llm-d-request-dropped-reason", "rejected-saturated")}}
	tests := []struct {
		name      string
		afterMsgs int // request messages read before answering
		reply     *extprocv3.ProcessingResponse
		want      *ImmediateResponse
	}{{
		name: "at headers", afterMsgs: 1, reply: immediateReply(429, "saturated", dropped),
		want: &ImmediateResponse{Status: 429, Body: []byte("saturated"), Details: "test", Phase: "request",
			Headers: http.Header{"Content-Type": {"text/plain"}, "X-Llm-D-Request-Dropped-Reason": {"rejected-saturated"}}},
	}, {
		name: "mid body", afterMsgs: 3, reply: immediateReply(400, "model not found in request body", nil),
		want: &ImmediateResponse{Status: 400, Body: []byte("model not found in request body"), Details: "test", Phase: "request",
			Headers: http.Header{"Content-Type": {"text/plain"}}},
	}, {
		name: "no status means 200", afterMsgs: 1, reply: &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{}}},
		want: &ImmediateResponse{Status: 200, Phase: "request", Headers: http.Header{}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error {
				if _, err := recvN(srv, tc.afterMsgs); err != nil {
					return err
				}
				return sendAll(srv, tc.reply)
			})
			d, err := c.RoundTrip(testCtx(t), Request{Method: "POST", Path: "/v1/completions", Body: bytes.Repeat([]byte("x"), 10<<10), ChunkSize: 1 << 10})
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			if diff := cmp.Diff(tc.want, d.Immediate, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("immediate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIgnoredMutations(t *testing.T) {
	t.Parallel()
	valueOnly := setHeader("x-value-only", "")
	valueOnly.Header.Value = "lost"
	mut := &extprocv3.HeaderMutation{
		RemoveHeaders: []string{":path", "host", "x-drop-me", "x-envoy-original-path"},
		SetHeaders: []*corev3.HeaderValueOption{
			setHeader(":authority", "evil"), setHeader("x-envoy-upstream-rq-timeout-ms", "1"),
			setHeader(":path", "/v1/chat/completions"), appendHeader("x-multi", "b"),
			setHeader("content-length", "3"), valueOnly, appendHeader(":path", "/x"),
		},
	}
	c, _ := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		if _, err := readRequest(srv); err != nil {
			return err
		}
		r := reqHeadersReply(mut)
		r.GetRequestHeaders().GetResponse().ClearRouteCache = true
		if err := sendAll(srv, r); err != nil {
			return err
		}
		return waitEnd(srv)
	})
	d, err := c.RoundTrip(testCtx(t), Request{Method: "GET", Path: "/v1/completions",
		Headers: http.Header{"X-Drop-Me": {"1"}, "X-Multi": {"a"}, "Content-Length": {"0"}}})
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	wantHeaders := http.Header{"X-Multi": {"a", "b"}, "X-Value-Only": {""}}
	if diff := cmp.Diff(wantHeaders, d.Headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if d.Path != "/v1/chat/completions" || d.Authority != "localhost" {
		t.Errorf("path %q authority %q, want the :path change only", d.Path, d.Authority)
	}
	wantIgnored := []string{
		`remove ":path": pseudo headers and host may never be removed`,
		`remove "host": pseudo headers and host may never be removed`,
		`remove "x-envoy-original-path": x-envoy headers may not be modified`,
		`set ":authority": routing headers may not be modified`,
		`set "x-envoy-upstream-rq-timeout-ms": x-envoy headers may not be modified`,
		`set "x-value-only": value field ignored, Envoy reads raw_value only and sets an empty value`,
		`set ":path": pseudo headers take a single value`,
	}
	if diff := cmp.Diff(wantIgnored, d.Ignored); diff != "" {
		t.Errorf("ignored (-want +got):\n%s", diff)
	}
	if !d.ClearRouteCache {
		t.Errorf("clear_route_cache with a header mutation was not honoured")
	}
}

func TestTrailers(t *testing.T) {
	t.Parallel()
	c, _ := startFake(t, func(srv extprocv3.ExternalProcessor_ProcessServer) error {
		msgs, err := readRequest(srv)
		if err != nil {
			return err
		}
		if msgs[len(msgs)-1].GetRequestTrailers() == nil || msgs[len(msgs)-2].GetRequestBody().GetEndOfStream() {
			return errors.New("want body without end_of_stream, then trailers")
		}
		if err := sendAll(srv, routed("10.0.0.1:80"), reqBodyReply(string(bodyOf(msgs)), false),
			reqTrailersReply(&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-checksum", "ok")}})); err != nil {
			return err
		}
		return waitEnd(srv)
	})
	d, err := c.RoundTrip(testCtx(t), Request{Method: "POST", Path: "/p", Body: []byte("hello"), Trailers: http.Header{"X-Checksum": {"bad"}}})
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	if diff := cmp.Diff(http.Header{"X-Checksum": {"ok"}}, d.Trailers); diff != "" {
		t.Errorf("trailers (-want +got):\n%s", diff)
	}
	if string(d.Body) != "hello" {
		t.Errorf("body %q, want hello", d.Body)
	}
}

func TestParseEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "10.0.0.1:8000", want: []string{"10.0.0.1:8000"}},
		{in: "10.0.0.1:8000, 10.0.0.2:8001", want: []string{"10.0.0.1:8000", "10.0.0.2:8001"}},
		{in: "[fd00::1]:8000", want: []string{"[fd00::1]:8000"}},
		{in: "", wantErr: "empty"},
		{in: "10.0.0.1", wantErr: "not ip:port"},
		{in: "pod-a:8000", wantErr: "not ip:port"},
		{in: "10.0.0.1:0", wantErr: "port 0"},
		{in: "10.0.0.1:8000,", wantErr: "not ip:port"},
	}
	for _, tc := range tests {
		got, err := ParseEndpoints(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseEndpoints(%q) error = %v, want it to mention %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseEndpoints(%q): %v", tc.in, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseEndpoints(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
