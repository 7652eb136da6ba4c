package server_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/scheduler"
)

// lifecycleWant is what the plugins must have seen once the stream is over.
type lifecycleWant struct {
	scheduled   bool // PreRequest ran, so ResponseComplete must run once
	maybe       bool // scheduling raced with the abort: completes == pre
	endOfStream bool
	cancelled   bool
	status      int
	bodyBytes   int
}

var jsonHeaders = http.Header{"Content-Type": {"application/json"}}

// playFunc plays part of an exchange on a fresh stream.
type playFunc func(ctx context.Context, s *extproc.Stream, req extproc.Request) error

// lifecycleCases are the ways a stream can end, with what plugins must see.
func lifecycleCases() []struct {
	name string
	play playFunc
	want lifecycleWant
} {
	return []struct {
		name string
		play playFunc
		want lifecycleWant
	}{
		{name: "complete response", play: respondWith(extproc.Response{Status: 200, Headers: jsonHeaders, Body: jsonBody}),
			want: lifecycleWant{scheduled: true, endOfStream: true, status: 200, bodyBytes: len(jsonBody)}},
		{name: "headers-only response", play: respondWith(extproc.Response{Status: 204}),
			want: lifecycleWant{scheduled: true, endOfStream: true, status: 204}},
		{name: "response ended by trailers", play: respondWith(extproc.Response{Status: 200, Headers: jsonHeaders, Body: jsonBody, Trailers: http.Header{"X-T": {"1"}}}),
			want: lifecycleWant{scheduled: true, endOfStream: true, status: 200, bodyBytes: len(jsonBody)}},
		{name: "rejected with 400", play: rejected},
		{name: "aborted mid-request before the body ended", play: abortMidBody},
		{name: "aborted right after the last body chunk", play: abortAfterBody, want: lifecycleWant{maybe: true, cancelled: true}},
		{name: "aborted after the decision", play: afterDecision((*extproc.Stream).Abort), want: lifecycleWant{scheduled: true, cancelled: true}},
		{name: "closed after the decision", play: afterDecision(func(s *extproc.Stream) { _ = s.Close() }),
			want: lifecycleWant{scheduled: true, cancelled: true}},
		{name: "aborted after the response headers", play: abortMidResponse(nil), want: lifecycleWant{scheduled: true, cancelled: true, status: 200}},
		{name: "aborted mid-response body", play: abortMidResponse(sseBody[:40]),
			want: lifecycleWant{scheduled: true, cancelled: true, status: 200, bodyBytes: 40}},
	}
}

// TestResponseCompleteOnce checks the ResponseComplete contract: exactly
// once for every scheduled request however its stream ends (normally,
// aborted by Envoy when the client goes away at any point, or closed
// without a response), never for a request that was not scheduled; and the
// running-requests gauge returns to zero.
func TestResponseCompleteOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range lifecycleCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, setup{})
			id := uuid.NewString()
			req := post("/v1/completions", completion("lifecycle"), "x-request-id", id)
			if err := tc.play(testCtx(t), h.open(t), req); err != nil {
				t.Fatal(err)
			}
			h.waitIdle(t)
			checkLifecycle(t, h, id, tc.want)
		})
	}
}

func respondWith(resp extproc.Response) playFunc {
	return func(ctx context.Context, s *extproc.Stream, req extproc.Request) error {
		_, err := playAll(ctx, s, req, resp)
		return err
	}
}

func rejected(ctx context.Context, s *extproc.Stream, req extproc.Request) error {
	req.Body = []byte(`{"prompt":"no model"}`)
	_, err := s.SendRequest(ctx, req)
	return err
}

func abortMidBody(ctx context.Context, s *extproc.Stream, req extproc.Request) error {
	defer s.Abort()
	if err := s.SendRequestHeaders(ctx, req, false); err != nil {
		return err
	}
	return s.SendRequestBody(ctx, req.Body[:10], false)
}

func abortAfterBody(ctx context.Context, s *extproc.Stream, req extproc.Request) error {
	defer s.Abort()
	if err := s.SendRequestHeaders(ctx, req, false); err != nil {
		return err
	}
	return s.SendRequestBody(ctx, req.Body, true)
}

func afterDecision(end func(*extproc.Stream)) playFunc {
	return func(ctx context.Context, s *extproc.Stream, req extproc.Request) error {
		defer end(s)
		_, err := s.SendRequest(ctx, req)
		return err
	}
}

func abortMidResponse(chunk []byte) playFunc {
	return func(ctx context.Context, s *extproc.Stream, req extproc.Request) error {
		defer s.Abort()
		return startResponse(ctx, s, req, chunk)
	}
}

func checkLifecycle(t *testing.T, h *harness, id string, want lifecycleWant) {
	t.Helper()
	pre, done := h.rec.counts(id)
	switch {
	case want.maybe && (pre != done || pre > 1):
		t.Fatalf("PreRequest ran %d times, ResponseComplete %d times; want equal, at most once", pre, done)
	case !want.maybe && want.scheduled && (pre != 1 || done != 1):
		t.Fatalf("PreRequest ran %d times, ResponseComplete %d times; want once each", pre, done)
	case !want.maybe && !want.scheduled && (pre != 0 || done != 0):
		t.Fatalf("PreRequest ran %d times, ResponseComplete %d times; want never", pre, done)
	}
	if v := metricValue(t, h.reg, "inference_objective_running_requests"); v != 0 {
		t.Errorf("inference_objective_running_requests = %v after the stream ended", v)
	}
	if done == 0 {
		return
	}
	got := h.rec.completed(t, id)
	view := func(r scheduler.Response) lifecycleWant {
		return lifecycleWant{endOfStream: r.EndOfStream, cancelled: r.Cancelled, status: r.StatusCode, bodyBytes: r.BodyBytes}
	}
	want.scheduled, want.maybe = false, false
	if view(got) != want {
		t.Errorf("ResponseComplete saw %+v, want %+v", view(got), want)
	}
	cause := scheduler.TerminationNatural
	if want.cancelled { // these cases end by the proxy's hand, never the EPP's
		cause = scheduler.TerminationClientDisconnect
	}
	if got.Termination != cause {
		t.Errorf("ResponseComplete saw termination %q, want %q", got.Termination, cause)
	}
}

// playAll plays a whole exchange on s.
func playAll(ctx context.Context, s *extproc.Stream, req extproc.Request, resp extproc.Response) (*extproc.ResponseResult, error) {
	if _, err := s.SendRequest(ctx, req); err != nil {
		return nil, err
	}
	return s.PlayResponse(ctx, resp)
}

// startResponse plays the request, the response headers and, when chunk is
// not nil, one response body chunk, waiting for each to be answered.
func startResponse(ctx context.Context, s *extproc.Stream, req extproc.Request, chunk []byte) error {
	if _, err := s.SendRequest(ctx, req); err != nil {
		return err
	}
	return partialResponse(ctx, s, chunk)
}

// partialResponse sends the response headers and, when chunk is not nil,
// one response body chunk, waiting for each to be answered.
func partialResponse(ctx context.Context, s *extproc.Stream, chunk []byte) error {
	resp := extproc.Response{Status: 200, Headers: http.Header{"Content-Type": {"text/event-stream"}}}
	if err := s.SendResponseHeaders(ctx, resp, false); err != nil {
		return err
	}
	if _, err := s.AwaitResponseHeaders(ctx); err != nil {
		return err
	}
	if chunk == nil {
		return nil
	}
	if err := s.SendResponseBody(ctx, chunk, false); err != nil {
		return err
	}
	_, err := s.RecvResponseBody(ctx)
	return err
}
