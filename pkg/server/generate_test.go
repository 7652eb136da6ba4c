package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/server"
)

// tokenPrompt is a long token-ID prompt, as an RL rollout sends.
func tokenPrompt(n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 1000 + i%97
	}
	return ids
}

// TestGenerateEndToEndWithSimulators is TestEndToEndWithSimulators for
// vLLM's token-in API: the plugins see the token IDs (exactly counted), the
// simulator's answer reaches the client unchanged with its usage seen, and
// the same rollout prompt, pinned to the first endpoint, hits its cache.
func TestGenerateEndToEndWithSimulators(t *testing.T) {
	t.Parallel()
	h, httpc := simHarness(t, false)
	ids := tokenPrompt(300)
	var first string
	for _, stream := range []bool{false, true} {
		body := map[string]any{"token_ids": ids, "sampling_params": map[string]any{"max_tokens": 5, "temperature": 0}}
		id := uuid.NewString()
		req := post(request.GeneratePath, nil, "x-request-id", id)
		if stream {
			body["stream"], body["stream_options"] = true, map[string]any{"include_usage": true}
			req.FilterMetadata = map[string]map[string]any{server.SubsetNamespace: {server.SubsetKey: []string{first}}}
		} else {
			body["model"] = testModel // optional: the second request goes without
		}
		req.Body = mustJSON(body)
		got := proxyExchange(t, h, httpc, req)
		seen := h.rec.request(t, id)
		if seen.Body.API != request.Generate || len(seen.Body.TokenIDs()) != len(ids) || seen.Body.EstimatedPromptTokens() != len(ids) {
			t.Errorf("plugins saw API %v with %d token IDs, want generate with %d", seen.Body.API, len(seen.Body.TokenIDs()), len(ids))
		}
		if got.Usage.PromptTokens != len(ids) || got.Usage.CompletionTokens != 5 {
			t.Errorf("usage %+v, want %d prompt and 5 completion tokens", got.Usage, len(ids))
		}
		if stream && got.Usage.CachedTokens == 0 {
			t.Errorf("second request on %s reported no cached tokens: %+v", got.Served, got.Usage)
		}
		first = got.Served
	}
}

// TestGenerateBadInput: a token-in request the EPP cannot read is answered
// 400 with what is wrong, never routed blind.
func TestGenerateBadInput(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	for body, mentioned := range map[string]string{
		`{"token_ids":`:                         "invalid JSON",
		`{"model":"m"}`:                         `"token_ids" is required`,
		`{"token_ids":[]}`:                      "must not be empty",
		`{"token_ids":"the prompt as text"}`:    "must be an array",
		`{"token_ids":[1,2,-3]}`:                "token_ids[2]",
		`{"token_ids":[1],"sampling_params":7}`: "sampling_params",
	} {
		d := h.exchange(t, post(request.GeneratePath, []byte(body)))
		requireImmediate(t, d, http.StatusBadRequest, d.Immediate.Headers.Get(server.DroppedReasonHeader), mentioned)
	}
	for body, mentioned := range map[string]string{
		`{"text":"a","input_ids":[1]}`:   "not both",
		`{"input_ids":[1,"2"]}`:          "input_ids[1]",
		`{"text":"a","lora_path":false}`: "lora_path",
	} {
		d := h.exchange(t, post("/generate", []byte(body)))
		requireImmediate(t, d, http.StatusBadRequest, d.Immediate.Headers.Get(server.DroppedReasonHeader), mentioned)
	}
}

// TestGenerateModelRewrite: a rewrite reaches a token-in body that named
// no model, so vLLM serves the target rather than its default.
func TestGenerateModelRewrite(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	d := h.exchange(t, post(request.GeneratePath, []byte(`{"token_ids":[1,2,3]}`), "x-gateway-model-name-rewrite", "other-model"))
	if d.Immediate != nil {
		t.Fatalf("immediate %d %s", d.Immediate.Status, d.Immediate.Body)
	}
	var got struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(d.Body, &got); err != nil || got.Model != "other-model" {
		t.Errorf("body sent upstream %s (%v), want model other-model", d.Body, err)
	}
}

// TestSGLangGenerateEndToEndWithSimulators is the same for SGLang's native
// /generate: input_ids then text, the usage read from meta_info, and the
// repeated IDs, pinned to the first endpoint, hitting its cache.
func TestSGLangGenerateEndToEndWithSimulators(t *testing.T) {
	t.Parallel()
	h, httpc := simHarness(t, false)
	ids := tokenPrompt(200)
	var first string
	for _, stream := range []bool{false, true} {
		id := uuid.NewString()
		body := map[string]any{"input_ids": ids, "sampling_params": map[string]any{"max_new_tokens": 4}, "stream": stream}
		req := post("/generate", mustJSON(body), "x-request-id", id)
		if stream {
			req.FilterMetadata = map[string]map[string]any{server.SubsetNamespace: {server.SubsetKey: []string{first}}}
		}
		got := proxyExchange(t, h, httpc, req)
		seen := h.rec.request(t, id)
		if seen.Body.API != request.SGLangGenerate || len(seen.Body.TokenIDs()) != len(ids) || seen.Body.MaxTokens != 4 {
			t.Errorf("plugins saw API %v, %d IDs, max tokens %d", seen.Body.API, len(seen.Body.TokenIDs()), seen.Body.MaxTokens)
		}
		if got.Usage.PromptTokens != len(ids) || got.Usage.CompletionTokens != 4 {
			t.Errorf("usage %+v, want %d prompt and 4 completion tokens", got.Usage, len(ids))
		}
		if stream && got.Usage.CachedTokens == 0 {
			t.Errorf("second request on %s reported no cached tokens: %+v", got.Served, got.Usage)
		}
		first = got.Served
	}
	got := proxyExchange(t, h, httpc, post("/generate", []byte(`{"text":"Tell me a story.","sampling_params":{"max_new_tokens":3}}`), "x-request-id", uuid.NewString()))
	if got.Usage.CompletionTokens != 3 || got.Usage.PromptTokens == 0 {
		t.Errorf("text prompt usage %+v", got.Usage)
	}
}

// TestOtherGenerateAPIsAreRouted: other servers' generate endpoints are not
// taken for SGLang's: TGI's body on its own /generate (no SGLang prompt
// member) and Triton's /v2/models/{model}/generate are routed on load
// alone, never refused.
func TestOtherGenerateAPIsAreRouted(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	for path, body := range map[string]string{
		"/generate":                    `{"inputs":"Once upon","parameters":{"max_new_tokens":5}}`,
		"/v2/models/ensemble/generate": `{"text_input":"Once upon","max_tokens":5}`,
	} {
		if d := h.exchange(t, post(path, []byte(body))); d.Immediate != nil {
			t.Errorf("%s: refused %d %s", path, d.Immediate.Status, d.Immediate.Body)
		}
	}
}
