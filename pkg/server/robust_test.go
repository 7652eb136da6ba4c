package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/scheduler"
)

// rawStream opens an ext_proc stream without the Envoy-faithful client, to
// send what Envoy never would.
func rawStream(t *testing.T, h *harness) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ps, err := extprocv3.NewExternalProcessorClient(conn).Process(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func headersMsg(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: eos}}}
}

func bodyMsg(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

var (
	postHeaders = []string{":method", "POST", ":path", "/v1/completions", "x-request-id", "raw-1"}
	getModels   = headersMsg(true, ":method", "GET", ":path", "/v1/models")
	trailersMsg = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}
	respHeaders = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}}}}}}
	respBody = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte("x")}}}
)

// TestProtocolViolations checks that messages out of order end that stream
// with a gRPC error (Envoy then applies its failure mode) and nothing else:
// the server keeps serving, a stream stalled mid-body meanwhile included,
// and a request scheduled before the violation still completes once.
func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
		code codes.Code
	}{
		{name: "body before headers", msgs: []*extprocv3.ProcessingRequest{bodyMsg([]byte("{}"), true)}, code: codes.FailedPrecondition},
		{name: "trailers before headers", msgs: []*extprocv3.ProcessingRequest{trailersMsg}, code: codes.FailedPrecondition},
		{name: "response headers first", msgs: []*extprocv3.ProcessingRequest{respHeaders}, code: codes.FailedPrecondition},
		{name: "response headers before the request was answered",
			msgs: []*extprocv3.ProcessingRequest{headersMsg(false, postHeaders...), respHeaders}, code: codes.FailedPrecondition},
		{name: "second request headers",
			msgs: []*extprocv3.ProcessingRequest{headersMsg(false, postHeaders...), headersMsg(false, postHeaders...)}, code: codes.FailedPrecondition},
		{name: "request headers after routing", msgs: []*extprocv3.ProcessingRequest{getModels, getModels}, code: codes.FailedPrecondition},
		{name: "response body before response headers", msgs: []*extprocv3.ProcessingRequest{getModels, respBody}, code: codes.FailedPrecondition},
		{name: "body after end of stream",
			msgs: []*extprocv3.ProcessingRequest{headersMsg(false, postHeaders...), bodyMsg(completion("x"), true), bodyMsg([]byte("more"), true)},
			code: codes.FailedPrecondition},
		{name: "second response headers after scheduling",
			msgs: []*extprocv3.ProcessingRequest{headersMsg(false, postHeaders...), bodyMsg(completion("x"), true), respHeaders, respHeaders},
			code: codes.FailedPrecondition},
		{name: "no phase set", msgs: []*extprocv3.ProcessingRequest{{}}, code: codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, setup{})
			stalled := h.open(t)
			if err := stalled.SendRequestHeaders(testCtx(t), post("/v1/completions", nil), false); err != nil {
				t.Fatal(err)
			}
			if got := playRaw(t, h, tc.msgs); got != tc.code {
				t.Errorf("stream ended with %v, want %v", got, tc.code)
			}
			h.route(t, post("/v1/completions", completion("still serving")))
			stalled.Abort()
			h.waitIdle(t)
			pre, done := h.rec.counts("raw-1")
			if pre != done {
				t.Errorf("PreRequest ran %d times, ResponseComplete %d times", pre, done)
			}
			if done > 0 {
				if r := h.rec.completed(t, "raw-1"); r.Termination != scheduler.TerminationError {
					t.Errorf("ResponseComplete saw termination %q, want error", r.Termination)
				}
			}
		})
	}
}

// playRaw sends msgs, then reads replies until the stream ends, and returns
// the gRPC code it ended with.
func playRaw(t *testing.T, h *harness, msgs []*extprocv3.ProcessingRequest) codes.Code {
	t.Helper()
	ps := rawStream(t, h)
	for _, m := range msgs {
		if err := ps.Send(m); err != nil {
			break // the server ended the stream; Recv has its status
		}
	}
	for {
		_, err := ps.Recv()
		if errors.Is(err, io.EOF) {
			return codes.OK
		}
		if err != nil {
			return status.Code(err)
		}
	}
}

// TestMixedCaseHeaderNames checks that header names are matched without
// regard to case, even from a client that does not lower-case them as
// Envoy does.
func TestMixedCaseHeaderNames(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	ps := rawStream(t, h)
	msgs := []*extprocv3.ProcessingRequest{
		headersMsg(false, ":method", "POST", ":path", "/v1/completions", "X-Request-ID", "mixed-1", "X-LLM-D-Model-Name-Rewrite", "new-model"),
		bodyMsg(completion("case"), true),
	}
	for _, m := range msgs {
		if err := ps.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	var body []byte
	for !strings.Contains(string(body), "new-model") {
		resp, err := ps.Recv()
		if err != nil {
			t.Fatalf("recv: %v (body so far %q)", err, body)
		}
		body = append(body, resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()...)
	}
	if got := h.rec.request(t, "mixed-1"); got.Model != "new-model" {
		t.Errorf("plugins saw model %q, want the rewrite", got.Model)
	}
	_ = ps.CloseSend()
}

// TestHostileBodies checks bodies and headers meant to crash or mislead a
// parser: each gets a clear answer and the server stays up.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		req    extproc.Request
		status int // 0: routed
	}{
		{name: "deep nesting", req: post("/v1/completions", []byte(`{"model":"m","prompt":`+strings.Repeat("[", 100000))), status: 400},
		{name: "deep nesting, valid", req: post("/v1/completions", []byte(`{"model":"m","prompt":"p","x":`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`}`)), status: 400},
		{name: "trailing garbage", req: post("/v1/completions", []byte(`{"model":"m","prompt":"p"} {}`)), status: 400},
		{name: "NUL bytes", req: post("/v1/completions", []byte("{\"model\":\"m\x00\",\"prompt\":\"p\"}")), status: 400},
		{name: "invalid UTF-8 in prompt", req: post("/v1/completions", []byte("{\"model\":\"m\",\"prompt\":\"\xff\xfe\"}"))},
		{name: "duplicate model", req: post("/v1/completions", []byte(`{"model":"a","model":"b","prompt":"p"}`))},
		{name: "huge number", req: post("/v1/completions", []byte(`{"model":"m","prompt":"p","max_tokens":1e999}`)), status: 400},
		{name: "negative content-length", req: post("/v1/completions", completion("p"), "content-length", "-1")},
		{name: "non-numeric content-length", req: post("/v1/completions", completion("p"), "content-length", "ten")},
		{name: "overflowing content-length", req: post("/v1/completions", completion("p"), "content-length", "99999999999999999999999")},
	}
	h := start(t, setup{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := h.exchange(t, tc.req)
			switch {
			case tc.status == 0 && d.Immediate != nil:
				t.Errorf("want routed, got %d %q", d.Immediate.Status, d.Immediate.Body)
			case tc.status != 0 && d.Immediate == nil:
				t.Errorf("want %d, got routed to %v", tc.status, d.Endpoints)
			case tc.status != 0 && d.Immediate.Status != tc.status:
				t.Errorf("status %d %q, want %d", d.Immediate.Status, d.Immediate.Body, tc.status)
			}
		})
	}
	h.route(t, post("/v1/completions", completion("still up")))
}

// TestConcurrentStreams runs 200 exchanges at once, mixing complete
// responses, clients going away mid-response and bad requests, and checks
// every answer, ResponseComplete once per scheduled request and no stream
// left behind.
func TestConcurrentStreams(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	const n = 200
	h := start(t, setup{endpoints: endpointsAt(10), tls: true})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- concurrentExchange(t, h, i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	h.waitIdle(t)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	if len(h.rec.pre) != n*3/4 || len(h.rec.completes) != n*3/4 {
		t.Errorf("%d requests scheduled, %d completed; want %d each", len(h.rec.pre), len(h.rec.completes), n*3/4)
	}
	for id, c := range h.rec.completes {
		if len(c) != 1 {
			t.Errorf("request %s completed %d times", id, len(c))
		}
	}
}

// concurrentExchange plays exchange i of TestConcurrentStreams: a bad
// request when i%4 == 1, a client gone mid-response when i%4 == 0, else a
// complete exchange.
func concurrentExchange(t *testing.T, h *harness, i int) error {
	ctx := testCtx(t)
	s, err := h.client.Open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	req := post("/v1/completions", completion(fmt.Sprintf("request %d", i)), "x-request-id", fmt.Sprintf("req-%d", i))
	if i%4 == 1 {
		req.Body = []byte(`{"prompt":"no model"}`)
	}
	d, err := s.SendRequest(ctx, req)
	switch {
	case err != nil:
		return fmt.Errorf("request %d: %w", i, err)
	case i%4 == 1 && (d.Immediate == nil || d.Immediate.Status != http.StatusBadRequest):
		return fmt.Errorf("request %d: want 400, got %+v", i, d.Immediate)
	case i%4 == 1:
		return nil
	case d.Immediate != nil || len(d.Endpoints) != 1:
		return fmt.Errorf("request %d: want routed, got %+v", i, d.Immediate)
	case i%4 == 0:
		err := partialResponse(ctx, s, sseBody[:20])
		s.Abort()
		return err
	}
	res, err := s.PlayResponse(ctx, extproc.Response{Status: 200, Headers: jsonHeaders, Body: jsonBody})
	if err != nil {
		return fmt.Errorf("request %d: %w", i, err)
	}
	if !bytes.Equal(res.Body, jsonBody) {
		return fmt.Errorf("request %d: response body %q", i, res.Body)
	}
	return nil
}

// TestZeroGRPCOptions checks that a server built with zero GRPCOptions
// serves ordinary requests: zero limits must mean gRPC's defaults, not
// "no message may have a body".
func TestZeroGRPCOptions(t *testing.T) {
	t.Parallel()
	h := start(t, setup{rawGRPC: true})
	h.route(t, post("/v1/completions", completion("default limits")))
}
