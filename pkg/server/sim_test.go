package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/requestcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scorers"
	"github.com/openepp/openepp/pkg/server"
	"github.com/openepp/openepp/pkg/sim"
)

// startSims starts n simulators on 127.0.0.1 and returns them with their
// endpoint specs.
func startSims(t *testing.T, n int) ([]*sim.Instance, []endpoint.Spec) {
	t.Helper()
	insts := make([]*sim.Instance, n)
	specs := make([]endpoint.Spec, n)
	for i := range insts {
		inst, err := sim.Start(context.Background(), sim.Config{Model: testModel, Seed: uint64(i + 1)})
		if err != nil {
			t.Fatalf("simulator %d: %v", i, err)
		}
		t.Cleanup(func() {
			if err := inst.Close(); err != nil {
				t.Errorf("close simulator: %v", err)
			}
		})
		insts[i] = inst
		specs[i] = endpoint.Spec{Name: fmt.Sprintf("sim-%d", i), Address: "127.0.0.1", Port: inst.Port()}
	}
	return insts, specs
}

// simHarness is a server routing among three simulators, and the HTTP
// client that plays Envoy's upstream leg; integration tests only.
func simHarness(t *testing.T, tls bool) (*harness, *http.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	_, specs := startSims(t, 3)
	h := start(t, setup{endpoints: specs, tls: tls})
	httpc := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	t.Cleanup(httpc.CloseIdleConnections)
	return h, httpc
}

// TestEndToEndWithSimulators routes completions through the server to real
// simulators, proxies each to the chosen endpoint as Envoy would, plays the
// simulator's real response (JSON, then SSE) through the response phase and
// checks that the client gets exactly the simulator's bytes and that plugins
// saw the usage the simulator reported. The second request carries the same
// prompt and a subset hint pinning the first endpoint, so it hits the
// simulator's prefix cache.
func TestEndToEndWithSimulators(t *testing.T) {
	t.Parallel()
	h, httpc := simHarness(t, true)
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)
	var first string
	for _, stream := range []bool{false, true} {
		body := map[string]any{"model": testModel, "prompt": prompt, "max_tokens": 8}
		req := post("/v1/completions", nil, "x-request-id", uuid.NewString())
		if stream {
			body["stream"], body["stream_options"] = true, map[string]any{"include_usage": true}
			req.FilterMetadata = map[string]map[string]any{server.SubsetNamespace: {server.SubsetKey: []string{first}}}
		}
		req.Body = mustJSON(body)
		got := proxyExchange(t, h, httpc, req)
		if stream && got.Usage.CachedTokens == 0 {
			t.Errorf("second request on %s reported no cached tokens: %+v", got.Served, got.Usage)
		}
		first = got.Served
	}
}

// TestMessagesEndToEndWithSimulators is TestEndToEndWithSimulators for
// Anthropic's Messages API: the simulator's bytes reach the client
// unchanged, the plugins see the usage it reported (from message_start and
// message_delta when streamed), and the next turn of the conversation,
// pinned to the first endpoint, reads the shared prefix from its cache even
// though Claude Code's billing block changed.
func TestMessagesEndToEndWithSimulators(t *testing.T) {
	t.Parallel()
	h, httpc := simHarness(t, false)
	turns := []any{map[string]any{"role": "user", "content": strings.Repeat("Explain prefix caching in detail. ", 20)}}
	var first string
	for i, stream := range []bool{false, true} {
		system := []map[string]any{
			{"type": "text", "text": fmt.Sprintf("x-anthropic-billing-header: cc_version=2.1; cch=%04x;", i)},
			{"type": "text", "text": "You are a careful assistant."},
		}
		body := map[string]any{"model": testModel, "max_tokens": 6, "system": system, "messages": turns, "stream": stream}
		req := post("/v1/messages", mustJSON(body), "x-request-id", uuid.NewString())
		if stream {
			req.FilterMetadata = map[string]map[string]any{server.SubsetNamespace: {server.SubsetKey: []string{first}}}
		}
		got := proxyExchange(t, h, httpc, req)
		if stream && got.Usage.CachedTokens == 0 {
			t.Errorf("second turn on %s reported no cached tokens: %+v", got.Served, got.Usage)
		}
		first = got.Served
		turns = append(turns, map[string]any{"role": "assistant", "content": "It reuses KV blocks."},
			map[string]any{"role": "user", "content": "And across servers?"})
	}
}

// proxyExchange plays one exchange with the simulator chosen by the server
// as upstream and returns what the plugins saw at ResponseComplete.
func proxyExchange(t *testing.T, h *harness, httpc *http.Client, req extproc.Request) scheduler.Response {
	t.Helper()
	ctx := testCtx(t)
	id := req.Headers.Get("x-request-id")
	s := h.open(t)
	d, err := s.SendRequest(ctx, req)
	if err != nil || d.Immediate != nil {
		t.Fatalf("request phase: %v %+v", err, d)
	}
	upstream, err := forward(ctx, httpc, d)
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Body.Close()
	sent, err := playUpstream(ctx, s, upstream, d.Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	res, err := collectBody(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res, sent) {
		t.Errorf("client got %q, simulator sent %q", res, sent)
	}
	want := usageOf(t, sent)
	resp := h.rec.completed(t, id)
	if diff := cmp.Diff(want, resp.Usage); diff != "" || !resp.UsageKnown {
		t.Errorf("usage seen by plugins (-simulator +plugins):\n%s", diff)
	}
	if resp.Served != d.Endpoints[0] || resp.StatusCode != http.StatusOK || !resp.EndOfStream {
		t.Errorf("response seen by plugins: served %q status %d eos %v", resp.Served, resp.StatusCode, resp.EndOfStream)
	}
	return resp
}

// forward sends the request Envoy would send upstream to the chosen
// endpoint, as the ORIGINAL_DST cluster does.
func forward(ctx context.Context, httpc *http.Client, d *extproc.Decision) (*http.Response, error) {
	url := "http://" + d.Endpoints[0] + d.Path
	hr, err := http.NewRequestWithContext(ctx, d.Method, url, bytes.NewReader(d.Body))
	if err != nil {
		return nil, err
	}
	hr.Header = d.Headers.Clone()
	resp, err := httpc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get(sim.EndpointHeader) != d.Endpoints[0] {
		resp.Body.Close()
		return nil, fmt.Errorf("upstream %s answered %s from %q", url, resp.Status, resp.Header.Get(sim.EndpointHeader))
	}
	return resp, nil
}

// playUpstream plays the upstream response through the response phase as
// it arrives, read by read, and returns the bytes sent.
func playUpstream(ctx context.Context, s *extproc.Stream, upstream *http.Response, served string) ([]byte, error) {
	resp := extproc.Response{
		Status: upstream.StatusCode, Headers: upstream.Header,
		FilterMetadata: map[string]map[string]any{server.LBNamespace: {server.ServedKey: served}},
	}
	if err := s.SendResponseHeaders(ctx, resp, false); err != nil {
		return nil, err
	}
	res, err := s.AwaitResponseHeaders(ctx)
	if err != nil {
		return nil, err
	}
	if res.Headers.Get(sim.EndpointHeader) != served {
		return nil, fmt.Errorf("downstream headers %v lost the upstream's", res.Headers)
	}
	var sent []byte
	buf := make([]byte, 4096)
	for {
		n, rerr := upstream.Body.Read(buf)
		eof := errors.Is(rerr, io.EOF)
		if rerr != nil && !eof {
			return nil, rerr
		}
		if n > 0 || eof {
			chunk := bytes.Clone(buf[:n])
			sent = append(sent, chunk...)
			if err := s.SendResponseBody(ctx, chunk, eof); err != nil {
				return nil, err
			}
		}
		if eof {
			return sent, nil
		}
	}
}

func collectBody(ctx context.Context, s *extproc.Stream) ([]byte, error) {
	var out []byte
	for {
		chunk, err := s.RecvResponseBody(ctx)
		out = append(out, chunk...)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// usageOf decodes the usage the simulator reported, independently of the
// server's parser: the JSON body's, or the SSE event's that carries one;
// for Anthropic's format, the prompt from message_start (input plus cache
// reads) and the output from the last message_delta.
func usageOf(t *testing.T, body []byte) request.Usage {
	t.Helper()
	type anthropicUsage struct {
		Input     *int `json:"input_tokens"`
		CacheRead int  `json:"cache_read_input_tokens"`
		Output    int  `json:"output_tokens"`
	}
	type wire struct {
		Usage *struct {
			Prompt     int `json:"prompt_tokens"`
			Completion int `json:"completion_tokens"`
			Total      int `json:"total_tokens"`
			Details    struct {
				Cached int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
			anthropicUsage
		} `json:"usage"`
		Message struct {
			Usage *anthropicUsage `json:"usage"`
		} `json:"message"`
		MetaInfo *struct { // SGLang's /generate
			Prompt     int `json:"prompt_tokens"`
			Completion int `json:"completion_tokens"`
			Cached     int `json:"cached_tokens"`
		} `json:"meta_info"`
	}
	docs := [][]byte{body}
	if bytes.HasPrefix(body, []byte("data: ")) || bytes.HasPrefix(body, []byte("event: ")) {
		docs = nil
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if line, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: ")); ok && bytes.HasPrefix(line, []byte("{")) {
				docs = append(docs, bytes.Clone(line))
			}
		}
	}
	var anthropic, sglang *request.Usage
	for _, doc := range docs {
		var w wire
		if err := json.Unmarshal(doc, &w); err != nil {
			t.Fatalf("simulator sent invalid JSON %q: %v", doc, err)
		}
		if m := w.MetaInfo; m != nil { // every chunk: the last is final
			sglang = &request.Usage{PromptTokens: m.Prompt, CompletionTokens: m.Completion, TotalTokens: m.Prompt + m.Completion, CachedTokens: m.Cached}
			continue
		}
		a := w.Message.Usage
		if u := w.Usage; u != nil {
			if u.Input == nil && u.Output == 0 {
				return request.Usage{PromptTokens: u.Prompt, CompletionTokens: u.Completion, TotalTokens: u.Total, CachedTokens: u.Details.Cached}
			}
			a = &u.anthropicUsage
		}
		if a == nil {
			continue
		}
		if anthropic == nil {
			anthropic = &request.Usage{}
		}
		if a.Input != nil {
			anthropic.PromptTokens, anthropic.CachedTokens = *a.Input+a.CacheRead, a.CacheRead
		}
		anthropic.CompletionTokens = a.Output
		anthropic.TotalTokens = anthropic.PromptTokens + anthropic.CompletionTokens
	}
	if anthropic != nil {
		return *anthropic
	}
	if sglang != nil {
		return *sglang
	}
	t.Fatalf("simulator response carries no usage: %q", body)
	return request.Usage{}
}

// TestPrefillBacklogBooksFollowTheExchange routes a streamed completion
// through a server whose only scorer is prefill-backlog-scorer: the request
// enters the scorer's books when routed and leaves them through the
// response hooks the server runs, so nothing is left once it is answered.
func TestPrefillBacklogBooksFollowTheExchange(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	_, specs := startSims(t, 2)
	params := scorers.PrefillBacklogParams{PrefixMatchInfoProducerName: "unused", BaseTokens: 1, RequestTimeout: scorers.Duration(time.Minute)}
	backlog, err := scorers.NewPrefillBacklog("backlog", params, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, setup{endpoints: specs, scorers: []scheduler.WeightedScorer{{Scorer: backlog, Weight: 1}}})
	httpc := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	t.Cleanup(httpc.CloseIdleConnections)

	body := map[string]any{"model": testModel, "prompt": strings.Repeat("tokens ", 100), "max_tokens": 4,
		"stream": true, "stream_options": map[string]any{"include_usage": true}}
	req := post("/v1/completions", mustJSON(body), "x-request-id", uuid.NewString())
	ctx := testCtx(t)
	s := h.open(t)
	d, err := s.SendRequest(ctx, req)
	if err != nil || d.Immediate != nil {
		t.Fatalf("request phase: %v %+v", err, d)
	}
	// No prefix source: the whole prompt is uncached.
	routed := h.rec.request(t, req.Headers.Get("x-request-id"))
	want := routed.Body.EstimatedPromptTokens()
	if _, tokens := backlog.Tracker().Of(d.Endpoints[0]); tokens != want || want < 100 {
		t.Fatalf("books of %s after routing: %d tokens, want %d", d.Endpoints[0], tokens, want)
	}
	upstream, err := forward(ctx, httpc, d)
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Body.Close()
	if _, err := playUpstream(ctx, s, upstream, d.Endpoints[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := collectBody(ctx, s); err != nil {
		t.Fatal(err)
	}
	h.rec.completed(t, req.Headers.Get("x-request-id"))
	if flights, busy := backlog.Tracker().Size(); flights != 0 || busy != 0 {
		t.Fatalf("after the answer: %d requests on %d endpoints still in the books", flights, busy)
	}
}

// TestServedVerifierAnswersTheServedEndpoint runs GIE's conformance plugin
// destination-endpoint-served-verifier through the server: the client sees
// the endpoint the proxy reported having served it, and a response whose
// proxy reports none says so.
func TestServedVerifierAnswersTheServedEndpoint(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	_, specs := startSims(t, 2)
	verifier, err := requestcontrol.ServedVerifierFactory("verifier", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, setup{endpoints: specs, plugins: []scheduler.Plugin{verifier}})
	for _, reported := range []bool{true, false} {
		ctx := testCtx(t)
		s := h.open(t)
		body := map[string]any{"model": testModel, "prompt": "hello", "max_tokens": 2}
		d, err := s.SendRequest(ctx, post("/v1/completions", mustJSON(body), "x-request-id", uuid.NewString()))
		if err != nil || d.Immediate != nil {
			t.Fatalf("request phase: %v %+v", err, d)
		}
		resp := extproc.Response{Status: http.StatusOK, Headers: http.Header{"Content-Type": {"application/json"}}}
		want := requestcontrol.ServedMissing
		if reported {
			resp.FilterMetadata = map[string]map[string]any{server.LBNamespace: {server.ServedKey: d.Endpoints[0]}}
			want = d.Endpoints[0]
		}
		if err := s.SendResponseHeaders(ctx, resp, false); err != nil {
			t.Fatal(err)
		}
		res, err := s.AwaitResponseHeaders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Headers.Get(requestcontrol.ServedTestHeader); got != want {
			t.Errorf("served reported %v: %s = %q, want %q", reported, requestcontrol.ServedTestHeader, got, want)
		}
		if err := s.SendResponseBody(ctx, []byte(`{}`), true); err != nil {
			t.Fatal(err)
		}
		if _, err := collectBody(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}
