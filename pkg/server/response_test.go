package server_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/server"
)

// routed opens a stream and plays a scheduled request phase with id; the
// stream is left open for the response phase.
func (h *harness) routed(t testing.TB, id string, opts ...extproc.StreamOption) (*extproc.Stream, *extproc.Decision) {
	t.Helper()
	s := h.open(t, opts...)
	d, err := s.SendRequest(testCtx(t), post("/v1/completions", completion("tell me a story"), "x-request-id", id))
	if err != nil {
		t.Fatal(err)
	}
	if d.Immediate != nil {
		t.Fatalf("immediate response %d %q", d.Immediate.Status, d.Immediate.Body)
	}
	return s, d
}

// sseBody is an OpenAI streaming response whose usage event is split across
// chunk boundaries by the chunk sizes the tests use.
var sseBody = []byte("data: {\"id\":\"c1\",\"choices\":[{\"text\":\"Once\"}]}\n\n" +
	"data: {\"id\":\"c1\",\"choices\":[{\"text\":\" upon\"}]}\n\n" +
	"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14," +
	"\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n" +
	"data: [DONE]\n\n")

var jsonBody = []byte(`{"id":"c2","object":"text_completion","choices":[{"text":"Once upon"}],` +
	`"usage":{"prompt_tokens":30,"completion_tokens":7,"total_tokens":37,"prompt_tokens_details":{"cached_tokens":16}}}`)

// TestResponsePassThrough checks that the model server's response reaches
// the client unchanged, chunk for chunk, and that usage is read from JSON
// bodies and SSE data lines (cached tokens included), as plugins and the
// metrics see it.
func TestResponsePassThrough(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        []byte
		chunk       int
		trailers    http.Header
		want        request.Usage
	}{
		{name: "SSE", contentType: "text/event-stream", body: sseBody, chunk: 37,
			want: request.Usage{PromptTokens: 12, CompletionTokens: 2, TotalTokens: 14, CachedTokens: 8}},
		{name: "SSE one chunk", contentType: "text/event-stream; charset=utf-8", body: sseBody, chunk: 4096,
			want: request.Usage{PromptTokens: 12, CompletionTokens: 2, TotalTokens: 14, CachedTokens: 8}},
		{name: "JSON", contentType: "application/json", body: jsonBody, chunk: 16,
			want: request.Usage{PromptTokens: 30, CompletionTokens: 7, TotalTokens: 37, CachedTokens: 16}},
		{name: "JSON with trailers", contentType: "application/json", body: jsonBody, chunk: 50, trailers: http.Header{"Grpc-Status": {"0"}},
			want: request.Usage{PromptTokens: 30, CompletionTokens: 7, TotalTokens: 37, CachedTokens: 16}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, setup{})
			id := uuid.NewString()
			var tr extproc.Transcript
			s, d := h.routed(t, id, extproc.WithRecorder(&tr))
			hdr := http.Header{"Content-Type": {tc.contentType}, "X-Upstream": {"vllm"}}
			res, err := s.PlayResponse(testCtx(t), extproc.Response{
				Status: 200, Headers: hdr, Body: tc.body, ChunkSize: tc.chunk, Trailers: tc.trailers,
				FilterMetadata: map[string]map[string]any{server.LBNamespace: {server.ServedKey: d.Endpoints[0]}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != 200 || res.Headers.Get("X-Upstream") != "vllm" || res.Headers.Get("Content-Type") != tc.contentType {
				t.Errorf("downstream status %d headers %v, want the upstream's", res.Status, res.Headers)
			}
			if !bytes.Equal(res.Body, tc.body) {
				t.Errorf("downstream body %q, want %q", res.Body, tc.body)
			}
			checkChunkForChunk(t, &tr)
			resp := h.rec.completed(t, id)
			if diff := cmp.Diff(tc.want, resp.Usage); diff != "" || !resp.UsageKnown {
				t.Errorf("usage known=%v (-want +got):\n%s", resp.UsageKnown, diff)
			}
			if resp.Served != d.Endpoints[0] || resp.StatusCode != 200 || !resp.EndOfStream || resp.Cancelled {
				t.Errorf("response seen by plugins: %+v", resp)
			}
			h.waitIdle(t)
			checkUsageMetrics(t, h.reg, tc.want)
		})
	}
}

// checkChunkForChunk checks that each response_body reply carries exactly
// the bytes of the chunk sent before it: nothing buffered, nothing changed.
func checkChunkForChunk(t *testing.T, tr *extproc.Transcript) {
	t.Helper()
	var sent [][]byte
	var got [][]byte
	for _, m := range tr.Messages() {
		switch m.Kind() {
		case "send response_body":
			sent = append(sent, m.Request.GetResponseBody().GetBody())
		case "recv response_body":
			got = append(got, m.Response.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody())
		}
	}
	if diff := cmp.Diff(sent, got); diff != "" {
		t.Errorf("response chunks forwarded (-sent +forwarded):\n%s", diff)
	}
}

// checkUsageMetrics reads the token histograms of the server's metrics.
func checkUsageMetrics(t *testing.T, reg *prometheus.Registry, u request.Usage) {
	t.Helper()
	want := map[string]float64{
		"inference_objective_input_tokens":         float64(u.PromptTokens),
		"inference_objective_output_tokens":        float64(u.CompletionTokens),
		"inference_objective_prompt_cached_tokens": float64(u.CachedTokens),
	}
	for name, sum := range want {
		n, s := histogram(t, reg, name)
		if n != 1 || s != sum {
			t.Errorf("%s: count %d sum %v, want 1 observation of %v", name, n, s, sum)
		}
	}
	if v := metricValue(t, reg, "inference_objective_running_requests"); v != 0 {
		t.Errorf("inference_objective_running_requests = %v after the response ended", v)
	}
	if v := metricValue(t, reg, "inference_objective_request_total"); v != 1 {
		t.Errorf("inference_objective_request_total = %v, want 1", v)
	}
	if v := metricValue(t, reg, "inference_extension_scheduler_attempts_total"); v != 1 {
		t.Errorf("inference_extension_scheduler_attempts_total = %v, want 1", v)
	}
	// Time per output token is observed whenever the server reported some.
	if n, s := histogram(t, reg, "inference_objective_normalized_time_per_output_token_seconds"); (n == 1) != (u.CompletionTokens > 0) || s < 0 {
		t.Errorf("normalized time per output token: %d observations (sum %v) for %d output tokens", n, s, u.CompletionTokens)
	}
}

// gather reads the server's metrics page as the EPP serves it: with the
// families it serves under a second name.
func gather(t testing.TB, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	mfs, err := promalias.New(reg, server.RequestAliases).Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// histogram sums a histogram's count and sum over all label values.
func histogram(t testing.TB, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	t.Helper()
	mfs := gather(t, reg)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			count += m.GetHistogram().GetSampleCount()
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return count, sum
}

// metricValue sums a counter's or gauge's values over all label values.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs := gather(t, reg)
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

// TestResponseNotBuffered checks that a streamed chunk is forwarded before
// the next one is sent: tokens must reach the client as they are produced.
func TestResponseNotBuffered(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	s, _ := h.routed(t, uuid.NewString())
	ctx := testCtx(t)
	hdr := http.Header{"Content-Type": {"text/event-stream"}}
	if err := s.SendResponseHeaders(ctx, extproc.Response{Status: 200, Headers: hdr}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AwaitResponseHeaders(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ev := range bytes.SplitAfter(sseBody, []byte("\n\n"))[:4] {
		if err := s.SendResponseBody(ctx, ev, i == 3); err != nil {
			t.Fatal(err)
		}
		got, err := s.RecvResponseBody(ctx)
		if err != nil || !bytes.Equal(got, ev) {
			t.Fatalf("event %d: forwarded %q, %v; want %q before the next one is sent", i, got, err, ev)
		}
	}
}

// TestServedEndpoint checks that the served endpoint the proxy reports in
// envoy.lb filter metadata on response messages reaches plugins: here the
// proxy fell back to the second endpoint of the list.
func TestServedEndpoint(t *testing.T) {
	t.Parallel()
	h := start(t, setup{endpoints: endpointsAt(3), picker: maxScore(t, 2)})
	id := uuid.NewString()
	s, d := h.routed(t, id)
	_, err := s.PlayResponse(testCtx(t), extproc.Response{
		Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: jsonBody,
		FilterMetadata: map[string]map[string]any{server.LBNamespace: {server.ServedKey: d.Endpoints[1]}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.rec.completed(t, id); got.Served != d.Endpoints[1] {
		t.Errorf("served = %q, want the fallback %q the proxy reported", got.Served, d.Endpoints[1])
	}
}
