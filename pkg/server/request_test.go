package server_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/server"
)

// TestRequestParsing checks each API path: valid bodies are routed with the
// body forwarded unchanged and the model seen by plugins; invalid ones get
// a 400 saying what is wrong.
func TestRequestParsing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		req     extproc.Request
		model   string // want routed with this model seen by plugins
		bodyHas string // else want 400 with this text
	}{
		{name: "completions, prompt string", req: post("/v1/completions", []byte(`{"model":"m1","prompt":"hello"}`)), model: "m1"},
		{name: "completions, prompt list", req: post("/v1/completions", []byte(`{"model":"m1","prompt":["a","b"]}`)), model: "m1"},
		{name: "chat completions", req: post("/v1/chat/completions", []byte(`{"model":"m2","messages":[{"role":"user","content":"hi"}]}`)), model: "m2"},
		{name: "responses", req: post("/v1/responses", []byte(`{"model":"m3","input":"hi","instructions":"be brief"}`)), model: "m3"},
		{name: "embeddings", req: post("/v1/embeddings", []byte(`{"model":"m4","input":["x","y"]}`)), model: "m4"},
		{name: "query string ignored", req: post("/v1/completions?x=1", []byte(`{"model":"m1","prompt":"q"}`)), model: "m1"},
		{name: "unknown path, JSON", req: post("/v1/foo", []byte(`{"model":"m5","anything":1}`)), model: "m5"},
		{name: "unknown path, not JSON", req: post("/v1/foo", []byte("plain text, not json"))},
		{name: "malformed JSON", req: post("/v1/completions", []byte(`{"model":"m1","prompt":`)), bodyHas: "invalid JSON"},
		{name: "not an object", req: post("/v1/completions", []byte(`["model"]`)), bodyHas: "JSON object"},
		{name: "missing model", req: post("/v1/completions", []byte(`{"prompt":"hello"}`)), bodyHas: "model not found"},
		{name: "empty model", req: post("/v1/chat/completions", []byte(`{"model":"","messages":[{"role":"user","content":"hi"}]}`)), bodyHas: "model not found"},
		{name: "model not a string", req: post("/v1/completions", []byte(`{"model":5,"prompt":"x"}`)), bodyHas: `field "model"`},
		{name: "missing prompt", req: post("/v1/completions", []byte(`{"model":"m1"}`)), bodyHas: `"prompt"`},
		{name: "empty messages", req: post("/v1/chat/completions", []byte(`{"model":"m1","messages":[]}`)), bodyHas: `"messages"`},
		{name: "whitespace body", req: post("/v1/completions", []byte("  \n")), bodyHas: "empty"},
		{name: "POST without body", req: post("/v1/chat/completions", nil), bodyHas: "needs a JSON body"},
	}
	h := start(t, setup{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := uuid.NewString()
			tc.req.Headers.Set("x-request-id", id)
			d := h.exchange(t, tc.req)
			if tc.bodyHas != "" {
				requireImmediate(t, d, http.StatusBadRequest, "bad-request", tc.bodyHas)
				return
			}
			if d.Immediate != nil || len(d.Endpoints) != 1 {
				t.Fatalf("want routed, got immediate %+v endpoints %v", d.Immediate, d.Endpoints)
			}
			if !bytes.Equal(d.Body, tc.req.Body) {
				t.Errorf("forwarded body %q, want %q", d.Body, tc.req.Body)
			}
			if got := h.rec.request(t, id); got.Model != tc.model || got.IncomingModel != tc.model {
				t.Errorf("plugins saw model %q (incoming %q), want %q", got.Model, got.IncomingModel, tc.model)
			}
		})
	}
}

// TestBodyLimit checks the 413 answer for bodies over --max-request-body-bytes,
// announced by content-length or found while chunks arrive.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 4096
	h := start(t, setup{server: server.Options{MaxRequestBodyBytes: limit}})
	t.Run("content-length", func(t *testing.T) {
		t.Parallel()
		req := post("/v1/completions", bigCompletion(limit+100))
		req.ChunkSize = 1024
		requireImmediate(t, h.exchange(t, req), http.StatusRequestEntityTooLarge, "body-too-large", "exceeds the limit of 4096 bytes")
	})
	t.Run("lying content-length", func(t *testing.T) {
		t.Parallel()
		req := post("/v1/completions", bigCompletion(limit+100), "content-length", "100")
		req.ChunkSize = 1024
		requireImmediate(t, h.exchange(t, req), http.StatusRequestEntityTooLarge, "body-too-large", "exceeds the limit")
	})
	t.Run("chunks without content-length", func(t *testing.T) {
		t.Parallel()
		s := h.open(t)
		ctx := testCtx(t)
		if err := s.SendRequestHeaders(ctx, post("/v1/completions", nil), false); err != nil {
			t.Fatal(err)
		}
		var err error
		for i := 0; err == nil && i < 10; i++ {
			err = s.SendRequestBody(ctx, bytes.Repeat([]byte("x"), 1000), false)
		}
		d, err := s.AwaitDecision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		requireImmediate(t, d, http.StatusRequestEntityTooLarge, "body-too-large", "5000 bytes exceeds the limit of 4096")
	})
	t.Run("exactly the limit", func(t *testing.T) {
		t.Parallel()
		body := completion(strings.Repeat("y", limit-len(completion(""))))
		if len(body) != limit {
			t.Fatalf("test body is %d bytes", len(body))
		}
		h.route(t, post("/v1/completions", body))
	})
}

// TestLargeBodies checks the sizes Envoy really sends: a 10 MiB prompt in
// 1 KiB chunks, and a 25 MiB multimodal body in one chunk, which needs the
// gRPC receive limit raised with --max-request-body-bytes as pkg/epp does.
func TestLargeBodies(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	tests := []struct {
		name  string
		limit int
		size  int
		chunk int
	}{
		{name: "10 MiB in 1 KiB chunks", size: 10 << 20, chunk: 1 << 10},
		{name: "25 MiB in one chunk", limit: 26 << 20, size: 25 << 20, chunk: 26 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, setup{server: server.Options{MaxRequestBodyBytes: tc.limit}})
			body := bigCompletion(tc.size)
			req := post("/v1/completions", body)
			req.ChunkSize = tc.chunk
			d := h.route(t, req)
			if !bytes.Equal(d.Body, body) {
				t.Errorf("forwarded %d bytes, want the %d sent", len(d.Body), len(body))
			}
		})
	}
}

// TestBodylessRequest checks GET /v1/models (headers with end_of_stream):
// routed without scheduling to a random endpoint.
func TestBodylessRequest(t *testing.T) {
	t.Parallel()
	h := start(t, setup{endpoints: endpointsAt(4)})
	seen := map[string]int{}
	for range 40 {
		d := h.route(t, extproc.Request{Method: http.MethodGet, Path: "/v1/models"})
		if len(d.Endpoints) != 1 || d.Body != nil {
			t.Fatalf("endpoints %v body %q, want one endpoint and no body", d.Endpoints, d.Body)
		}
		seen[d.Endpoints[0]]++
	}
	if len(seen) < 2 {
		t.Errorf("40 bodyless requests all went to %v; want a random spread", seen)
	}
}

// TestRequestID checks x-request-id: kept when the client sent one,
// otherwise generated, set as a request header and used as the plugins'
// request ID.
func TestRequestID(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	t.Run("kept", func(t *testing.T) {
		t.Parallel()
		d := h.route(t, post("/v1/completions", completion("x"), "X-Request-Id", "client-id-1"))
		if got := d.Headers.Get("x-request-id"); got != "client-id-1" {
			t.Errorf("upstream x-request-id = %q, want the client's", got)
		}
		for _, sh := range d.SetHeaders {
			if sh.Key == "x-request-id" {
				t.Errorf("x-request-id re-set to %q although the client sent one", sh.Value)
			}
		}
		h.rec.request(t, "client-id-1")
	})
	for _, req := range []extproc.Request{post("/v1/completions", completion("x")), {Method: "GET", Path: "/v1/models"}} {
		t.Run("generated for "+req.Method, func(t *testing.T) {
			t.Parallel()
			d := h.route(t, req)
			id := d.Headers.Get("x-request-id")
			if _, err := uuid.Parse(id); err != nil {
				t.Fatalf("upstream x-request-id %q is not a UUID: %v", id, err)
			}
			want := []extproc.HeaderValue{{Key: "x-request-id", Value: id}}
			if diff := cmp.Diff(want, setHeadersNamed(d, "x-request-id")); diff != "" {
				t.Errorf("x-request-id mutation (-want +got):\n%s", diff)
			}
			if req.Method == http.MethodPost {
				h.rec.request(t, id)
			}
		})
	}
}

func setHeadersNamed(d *extproc.Decision, name string) []extproc.HeaderValue {
	var out []extproc.HeaderValue
	for _, sh := range d.SetHeaders {
		if sh.Key == name {
			out = append(out, sh)
		}
	}
	return out
}

// TestControlHeaders checks the control headers under both the GIE
// (x-gateway-*) and llm-d (x-llm-d-*) names, in any case: model rewrite
// (body rewritten, content-length restated), objective and fairness ID.
func TestControlHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		kv        []string
		model     string
		objective string
		priority  int
		fairness  string
	}{
		{name: "none", model: testModel, fairness: "default-flow"},
		{name: "llm-d rewrite", kv: []string{"X-LLM-D-Model-Name-Rewrite", "rewritten-model"}, model: "rewritten-model", fairness: "default-flow"},
		{name: "gateway rewrite", kv: []string{"X-Gateway-Model-Name-Rewrite", "gw-model"}, model: "gw-model", fairness: "default-flow"},
		{name: "llm-d wins", kv: []string{"x-gateway-model-name-rewrite", "gw", "x-llm-d-model-name-rewrite", "llmd"}, model: "llmd", fairness: "default-flow"},
		{name: "gateway objective and fairness", kv: []string{"X-Gateway-Inference-Objective", "critical", "X-Gateway-Inference-Fairness-Id", "tenant-a"},
			model: testModel, objective: "critical", priority: 5, fairness: "tenant-a"},
		{name: "llm-d objective and fairness", kv: []string{"X-Llm-D-Inference-Objective", "batch", "X-LLM-D-Inference-Fairness-ID", "tenant-b"},
			model: testModel, objective: "batch", priority: -1, fairness: "tenant-b"},
	}
	h := start(t, setup{server: server.Options{Objectives: objectives{"critical": 5, "batch": -1}}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := uuid.NewString()
			body := completion("rewrite me")
			d := h.route(t, post("/v1/completions", body, append(tc.kv, "x-request-id", id)...))
			got := h.rec.request(t, id)
			want := controlView{Model: tc.model, Incoming: testModel, Objective: tc.objective, Priority: tc.priority, Fairness: tc.fairness}
			if diff := cmp.Diff(want, controlView{Model: got.Model, Incoming: got.IncomingModel, Objective: got.Objective, Priority: got.Priority, Fairness: got.FairnessID}); diff != "" {
				t.Errorf("plugins saw (-want +got):\n%s", diff)
			}
			wantBody := bytes.Replace(body, []byte(`"`+testModel+`"`), []byte(strconv.Quote(tc.model)), 1)
			if !bytes.Equal(d.Body, wantBody) {
				t.Errorf("forwarded body %s, want %s", d.Body, wantBody)
			}
		})
	}
}

type controlView struct {
	Model, Incoming, Objective string
	Priority                   int
	Fairness                   string
}

// objectives maps InferenceObjective names to priorities.
type objectives map[string]int

func (o objectives) Priority(name string) (int, bool) {
	p, ok := o[name]
	return p, ok
}

// TestRewriteRestatesContentLength checks the content-length the EPP sends
// with a rewritten body, under both header names. Envoy drops it in
// FULL_DUPLEX_STREAMED mode (the client does too), so the raw header reply
// is inspected.
func TestRewriteRestatesContentLength(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	for _, name := range []string{"X-LLM-D-Model-Name-Rewrite", "X-Gateway-Model-Name-Rewrite"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var tr extproc.Transcript
			body := completion("count me")
			d := h.route(t, post("/v1/completions", body, name, "a-much-longer-model-name"), extproc.WithRecorder(&tr))
			if !bytes.Contains(d.Body, []byte(`"a-much-longer-model-name"`)) {
				t.Fatalf("body not rewritten: %s", d.Body)
			}
			var cl string
			for _, m := range tr.Messages() {
				for _, o := range m.Response.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
					if o.GetHeader().GetKey() == "content-length" {
						cl = string(o.GetHeader().GetRawValue())
					}
				}
			}
			if want := strconv.Itoa(len(d.Body)); cl != want || len(d.Body) == len(body) {
				t.Errorf("content-length set to %q, want %s (original %d bytes)", cl, want, len(body))
			}
		})
	}
}

// TestEmptyBody checks a body that ends without a byte, by an empty
// end_of_stream chunk or by trailers: 400 on an API path, routed elsewhere.
func TestEmptyBody(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	tests := []struct {
		name     string
		path     string
		trailers bool
		status   int
	}{
		{name: "empty end_of_stream chunk", path: "/v1/completions", status: http.StatusBadRequest},
		{name: "trailers right after headers", path: "/v1/chat/completions", trailers: true, status: http.StatusBadRequest},
		{name: "unknown path", path: "/v1/foo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := h.open(t)
			ctx := testCtx(t)
			if err := s.SendRequestHeaders(ctx, post(tc.path, nil), false); err != nil {
				t.Fatal(err)
			}
			var err error
			if tc.trailers {
				err = s.SendRequestTrailers(ctx, http.Header{})
			} else {
				err = s.SendRequestBody(ctx, nil, true)
			}
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.AwaitDecision(ctx)
			switch {
			case err != nil:
				t.Fatal(err)
			case tc.status != 0:
				requireImmediate(t, d, tc.status, "bad-request", "needs a JSON body")
			case d.Immediate != nil || len(d.Endpoints) != 1:
				t.Errorf("want routed, got %+v", d.Immediate)
			}
		})
	}
}
