package server_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/server"
)

// rewriteRules is a test server.Rewrites: requested model → target and the
// rule object's name; "*" is a catch-all.
type rewriteRules map[string]struct{ target, rule string }

func (r rewriteRules) Rewrite(model string, _ *rand.Rand) (string, string, bool) {
	hit, ok := r[model]
	if !ok {
		hit, ok = r["*"]
	}
	return hit.target, hit.rule, ok
}

var _ server.Rewrites = rewriteRules(nil)

// rewriteDecisions reads inference_extension_model_rewrite_decisions_total
// for the given label values.
func rewriteDecisions(t *testing.T, reg *prometheus.Registry, rule, model, target string) float64 {
	t.Helper()
	mfs := gather(t, reg)
	want := map[string]string{"model_rewrite_name": rule, "model_name": model, "target_model": target}
	for _, mf := range mfs {
		if mf.GetName() != "inference_extension_model_rewrite_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if cmp.Equal(got, want) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func bodyModel(t *testing.T, body []byte) string {
	t.Helper()
	var v struct{ Model string }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("forwarded body %q: %v", body, err)
	}
	return v.Model
}

// TestRewriteRuleChoosesModel checks that a matching rule overrides the
// rewrite headers, that the body and the plugins see the target, and that
// the decision is counted; without a rule the header still applies.
func TestRewriteRuleChoosesModel(t *testing.T) {
	t.Parallel()
	rules := rewriteRules{testModel: {target: "rule-target", rule: "my-rewrite"}}
	tests := []struct {
		name       string
		rules      rewriteRules
		headers    []string
		wantModel  string
		wantCounts float64
	}{
		{name: "rule beats llm-d header", rules: rules, headers: []string{"x-llm-d-model-name-rewrite", "hdr-target"}, wantModel: "rule-target", wantCounts: 1},
		{name: "rule beats gateway header", rules: rules, headers: []string{"x-gateway-model-name-rewrite", "hdr-target"}, wantModel: "rule-target", wantCounts: 1},
		{name: "rule without header", rules: rules, wantModel: "rule-target", wantCounts: 1},
		{name: "no rule keeps header", rules: rewriteRules{}, headers: []string{"x-gateway-model-name-rewrite", "hdr-target"}, wantModel: "hdr-target"},
		{name: "rule to the same model", rules: rewriteRules{testModel: {target: testModel, rule: "noop"}}, wantModel: testModel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, setup{server: server.Options{Rewrites: tc.rules}})
			req := post("/v1/completions", completion("hello"), append([]string{"x-request-id", "r1"}, tc.headers...)...)
			d := h.route(t, req)
			if got := bodyModel(t, d.Body); got != tc.wantModel {
				t.Errorf("forwarded model = %q, want %q", got, tc.wantModel)
			}
			seen := h.rec.request(t, "r1")
			if seen.Model != tc.wantModel || seen.IncomingModel != testModel {
				t.Errorf("plugins saw model %q (incoming %q), want %q (incoming %q)", seen.Model, seen.IncomingModel, tc.wantModel, testModel)
			}
			if got := rewriteDecisions(t, h.reg, "my-rewrite", testModel, "rule-target"); got != tc.wantCounts {
				t.Errorf("rewrite decisions = %v, want %v", got, tc.wantCounts)
			}
		})
	}
}

const rewriteTarget = "target-model-v2"

// rewriteResponse plays one rewritten request and the given response,
// returning what the client receives and the raw response-headers reply.
func rewriteResponse(t *testing.T, resp extproc.Response) (*extproc.ResponseResult, *extprocv3.HeadersResponse) {
	t.Helper()
	h := start(t, setup{server: server.Options{Rewrites: rewriteRules{testModel: {target: rewriteTarget, rule: "rw"}}}})
	var tr extproc.Transcript
	s := h.open(t, extproc.WithRecorder(&tr))
	ctx := testCtx(t)
	if _, err := s.SendRequest(ctx, post("/v1/completions", completion("hi"))); err != nil {
		t.Fatal(err)
	}
	out, err := s.PlayResponse(ctx, resp)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range tr.Messages() {
		if hr := m.Response.GetResponseHeaders(); hr != nil {
			return out, hr
		}
	}
	t.Fatal("no response_headers reply")
	return nil, nil
}

// TestRewriteResponseBack checks that the client gets its own model name
// back in every body form, whatever the chunking, and that a length change
// drops content-length.
func TestRewriteResponseBack(t *testing.T) {
	t.Parallel()
	sent, back := `"model":"`+rewriteTarget+`"`, `"model":"`+testModel+`"`
	spaced, spacedBack := `"model": "`+rewriteTarget+`"`, `"model": "`+testModel+`"`
	jsonBody := `{"id":"c1","object":"text_completion",` + sent + `,"choices":[{"text":"x"}],"other":{"model":"` + rewriteTarget + `-x"}}`
	sse := "data: {\"id\":\"c1\"," + sent + ",\"choices\":[]}\n\ndata: {\"id\":\"c2\", " + spaced + "}\n\ndata: [DONE]\n\n"
	tests := []struct {
		name       string
		body       string
		sse        bool
		chunk      int
		trailers   bool
		want       string
		wantLength bool // content-length removed
	}{
		{name: "json whole", body: jsonBody, chunk: 1 << 20, want: rewriteWant(jsonBody, sent, back), wantLength: true},
		{name: "json byte by byte", body: jsonBody, chunk: 1, want: rewriteWant(jsonBody, sent, back), wantLength: true},
		{name: "json spaced, 7-byte chunks", body: "{" + spaced + "}", chunk: 7, want: "{" + spacedBack + "}", wantLength: true},
		{name: "sse, 5-byte chunks", body: sse, sse: true, chunk: 5, want: rewriteWant(rewriteWant(sse, sent, back), spaced, spacedBack), wantLength: true},
		{name: "trailers end a held tail", body: `{"id":1,"model":"` + rewriteTarget, chunk: 1 << 20, trailers: true, want: `{"id":1,"model":"` + rewriteTarget, wantLength: true},
		{name: "other model untouched", body: `{"model":"someone-else"}`, chunk: 3, want: `{"model":"someone-else"}`, wantLength: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := extproc.Response{Status: 200, Headers: http.Header{}, Body: []byte(tc.body), ChunkSize: tc.chunk}
			resp.Headers.Set("content-length", strconv.Itoa(len(tc.body)))
			resp.Headers.Set("content-type", "application/json")
			if tc.sse {
				resp.Headers.Set("content-type", "text/event-stream")
			}
			if tc.trailers {
				resp.Trailers = http.Header{"grpc-status": {"0"}}
			}
			out, hr := rewriteResponse(t, resp)
			if diff := cmp.Diff(tc.want, string(out.Body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			removed := hr.GetResponse().GetHeaderMutation().GetRemoveHeaders()
			if got := len(removed) == 1 && removed[0] == "content-length"; got != tc.wantLength {
				t.Errorf("removed headers = %v, want content-length removed: %v", removed, tc.wantLength)
			}
		})
	}
}

func rewriteWant(body, from, to string) string {
	return string(bytes.ReplaceAll([]byte(body), []byte(from), []byte(to)))
}

// TestRewriteKeepsLengthWhenNamesMatch checks that content-length stays
// when the names have the same length (the body length cannot change).
func TestRewriteKeepsLengthWhenNamesMatch(t *testing.T) {
	t.Parallel()
	h := start(t, setup{server: server.Options{Rewrites: rewriteRules{testModel: {target: "BASE-MODEL", rule: "rw"}}}})
	var tr extproc.Transcript
	s := h.open(t, extproc.WithRecorder(&tr))
	ctx := testCtx(t)
	if _, err := s.SendRequest(ctx, post("/v1/completions", completion("hi"))); err != nil {
		t.Fatal(err)
	}
	body := `{"model":"BASE-MODEL"}`
	resp := extproc.Response{Status: 200, Headers: http.Header{"Content-Length": {strconv.Itoa(len(body))}}, Body: []byte(body)}
	out, err := s.PlayResponse(ctx, resp)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out.Body), `{"model":"`+testModel+`"}`; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	for _, m := range tr.Messages() {
		if hr := m.Response.GetResponseHeaders(); hr != nil && hr.GetResponse().GetHeaderMutation() != nil {
			t.Errorf("unexpected header mutation %v", hr.GetResponse().GetHeaderMutation())
		}
	}
}

// TestRewriteStreamsWithoutDelay checks that SSE events are forwarded as
// soon as their chunk arrives: only a tail that may start a split pattern
// waits for the next chunk.
func TestRewriteStreamsWithoutDelay(t *testing.T) {
	t.Parallel()
	h := start(t, setup{server: server.Options{Rewrites: rewriteRules{testModel: {target: rewriteTarget, rule: "rw"}}}})
	s := h.open(t)
	ctx := testCtx(t)
	if _, err := s.SendRequest(ctx, post("/v1/completions", completion("hi"))); err != nil {
		t.Fatal(err)
	}
	hdr := http.Header{"Content-Type": {"text/event-stream"}}
	if err := s.SendResponseHeaders(ctx, extproc.Response{Status: 200, Headers: hdr}, false); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ send, want string }{
		{send: "data: {\"model\":\"" + rewriteTarget + "\",\"n\":1}\n\n", want: "data: {\"model\":\"" + testModel + "\",\"n\":1}\n\n"},
		{send: "data: {\"n\":2,\"mo", want: "data: {\"n\":2,"},
		{send: "del\":\"" + rewriteTarget + "\"}\n\n", want: "\"model\":\"" + testModel + "\"}\n\n"},
	}
	for i, st := range steps {
		if err := s.SendResponseBody(ctx, []byte(st.send), i == len(steps)-1); err != nil {
			t.Fatal(err)
		}
		got, err := s.RecvResponseBody(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if string(got) != st.want {
			t.Errorf("step %d: forwarded %q, want %q", i, got, st.want)
		}
	}
}

// TestRewriteSkipsBodiesWithoutModel checks that a catch-all rule leaves a
// body without a model (an unknown API passed through) and its response
// untouched.
func TestRewriteSkipsBodiesWithoutModel(t *testing.T) {
	t.Parallel()
	h := start(t, setup{server: server.Options{Rewrites: rewriteRules{"*": {target: "anything", rule: "catch-all"}}}})
	s := h.open(t)
	ctx := testCtx(t)
	body := []byte("not json at all")
	d, err := s.SendRequest(ctx, post("/v1/custom", body))
	if err != nil || d.Immediate != nil {
		t.Fatalf("request: %v %v", err, d.Immediate)
	}
	if !bytes.Equal(d.Body, body) {
		t.Errorf("forwarded %q, want the body unchanged", d.Body)
	}
	resp := `{"model":"anything"}`
	out, err := s.PlayResponse(ctx, extproc.Response{Status: 200, Headers: http.Header{}, Body: []byte(resp)})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Body) != resp {
		t.Errorf("response %q, want it unchanged", out.Body)
	}
	if got := rewriteDecisions(t, h.reg, "catch-all", "", "anything"); got != 0 {
		t.Errorf("rewrite decisions = %v, want 0", got)
	}
}
