package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/requestcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

// costReporter is upstream's documented request-attribute-reporter.
func costReporter(t *testing.T) scheduler.Plugin {
	t.Helper()
	p, err := requestcontrol.AttributeReporterFactory("cost", json.RawMessage(`{"attributes": [{
  "key": {"name": "x-gateway-inference-request-cost"},
  "expression": "usage.prompt_tokens + usage.completion_tokens",
  "condition": "has(usage.prompt_tokens) && has(usage.completion_tokens)"}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const costKey = "x-gateway-inference-request-cost"

// TestReportedCostReachesTheProxy: with request-attribute-reporter
// configured, the proxy gets the request's token cost in its envoy.lb
// dynamic metadata when the simulator's response ends, JSON or streamed,
// in chunks as small as Envoy may cut them; a stream that carries no usage
// gets no cost (not 0).
func TestReportedCostReachesTheProxy(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	_, specs := startSims(t, 2)
	h := start(t, setup{endpoints: specs, plugins: []scheduler.Plugin{costReporter(t)}})
	httpc := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	t.Cleanup(httpc.CloseIdleConnections)
	prompt := strings.Repeat("Count my tokens, please. ", 30)
	for _, tc := range []struct {
		name         string
		stream, used bool
	}{
		{"json", false, true},
		{"stream with usage", true, true},
		{"stream without usage", true, false},
	} {
		body := map[string]any{"model": testModel, "prompt": prompt, "max_tokens": 12}
		if tc.stream {
			body["stream"] = true
			if tc.used {
				body["stream_options"] = map[string]any{"include_usage": true}
			}
		}
		req := post("/v1/completions", mustJSON(body), "x-request-id", uuid.NewString())
		ctx := testCtx(t)
		s := h.open(t)
		d, err := s.SendRequest(ctx, req)
		if err != nil || d.Immediate != nil {
			t.Fatalf("%s: request phase: %v %+v", tc.name, err, d)
		}
		upstream, err := forward(ctx, httpc, d)
		if err != nil {
			t.Fatal(err)
		}
		sent, err := io.ReadAll(upstream.Body)
		upstream.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.PlayResponse(ctx, extproc.Response{Status: upstream.StatusCode, Headers: upstream.Header,
			Body: sent, ChunkSize: 7})
		if err != nil {
			t.Fatalf("%s: response phase: %v", tc.name, err)
		}
		if string(res.Body) != string(sent) {
			t.Errorf("%s: client got %q, simulator sent %q", tc.name, res.Body, sent)
		}
		if diff := cmp.Diff(res.DynamicMetadata, s.ResponseMetadata()); diff != "" {
			t.Errorf("%s: Stream.ResponseMetadata differs from the result's (-result +stream):\n%s", tc.name, diff)
		}
		cost, reported := res.DynamicMetadata[server.LBNamespace][costKey]
		if !tc.used {
			if reported {
				t.Errorf("%s: cost %v reported without usage", tc.name, cost)
			}
			continue
		}
		u := usageOf(t, sent)
		if want := float64(u.PromptTokens + u.CompletionTokens); cost != want {
			t.Errorf("%s: reported cost %v, want %v (usage %+v)", tc.name, cost, want, u)
		}
	}
}

// TestReportedCostOnTrailersAndBodylessResponses: a response that ends with
// trailers (gRPC model servers) carries the metadata on the trailers'
// answer; one that ends at its headers, on theirs.
func TestReportedCostOnTrailersAndBodylessResponses(t *testing.T) {
	t.Parallel()
	p, err := requestcontrol.AttributeReporterFactory("cost", json.RawMessage(`{"attributes": [
  {"key": {"name": "`+costKey+`"}, "expression": "usage.total_tokens", "condition": "has(usage.total_tokens)"},
  {"key": {"namespace": "audit", "name": "responses"}, "expression": "1"}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, setup{plugins: []scheduler.Plugin{p}})
	ctx := testCtx(t)
	jsonType := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name string
		resp extproc.Response
		want map[string]map[string]any
	}{
		{"trailers", extproc.Response{Status: 200, Headers: jsonType, ChunkSize: 5, Trailers: http.Header{"Grpc-Status": {"0"}},
			Body: []byte(`{"id":"x","usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`)},
			map[string]map[string]any{"audit": {"responses": 1.0}, server.LBNamespace: {costKey: 13.0}}},
		{"headers only", extproc.Response{Status: 204, Headers: http.Header{}},
			map[string]map[string]any{"audit": {"responses": 1.0}}},
	} {
		s := h.open(t)
		d, err := s.SendRequest(ctx, post("/v1/completions", completion("hi")))
		if err != nil || d.Immediate != nil {
			t.Fatalf("%s: request phase: %v %+v", tc.name, err, d)
		}
		res, err := s.PlayResponse(ctx, tc.resp)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, res.DynamicMetadata); diff != "" {
			t.Errorf("%s: response metadata (-want +got):\n%s", tc.name, diff)
		}
	}
}
