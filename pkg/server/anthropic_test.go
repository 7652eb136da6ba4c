package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/server"
)

func messages(system any, turns ...string) []byte {
	var msgs []map[string]any
	for i, turn := range turns {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, map[string]any{"role": role, "content": turn})
	}
	body := map[string]any{"model": testModel, "max_tokens": 8, "messages": msgs}
	if system != nil {
		body["system"] = system
	}
	return mustJSON(body)
}

// TestMessagesRequestsAreParsed: a /v1/messages request reaches the plugins
// as the Messages API with its system prompt in front of the messages, the
// billing block left out.
func TestMessagesRequestsAreParsed(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	system := []map[string]any{
		{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=0f3a;"},
		{"type": "text", "text": "You are a coding agent."},
	}
	id := uuid.NewString()
	d := h.exchange(t, post("/v1/messages", messages(system, "fix it"), "x-request-id", id))
	if d.Immediate != nil {
		t.Fatalf("immediate %d %s", d.Immediate.Status, d.Immediate.Body)
	}
	req := h.rec.request(t, id)
	want := `[{"text":"You are a coding agent.","type":"text"}]` + "\n" + `[{"content":"fix it","role":"user"}]`
	if req.Body.API != request.Messages || string(req.Body.Prompt) != want || req.Model != testModel {
		t.Errorf("plugins saw API %v model %q prompt %s, want messages %s", req.Body.API, req.Model, req.Body.Prompt, want)
	}
}

// TestMessagesErrorsAreAnthropicShaped: an Anthropic client gets the JSON
// error body its SDK decodes, with the type matching the status; OpenAI
// paths keep plain text.
func TestMessagesErrorsAreAnthropicShaped(t *testing.T) {
	t.Parallel()
	h := start(t, setup{})
	empty := start(t, setup{endpoints: []endpoint.Spec{}})
	tests := []struct {
		name           string
		h              *harness
		body           []byte
		status         int
		typ, mentioned string
	}{
		{"malformed", h, []byte(`{"model":`), http.StatusBadRequest, "invalid_request_error", "invalid JSON"},
		{"no messages", h, []byte(`{"model":"m","max_tokens":3}`), http.StatusBadRequest, "invalid_request_error", "is required for messages"},
		{"system of a wrong type", h, []byte(`{"model":"m","system":3,"messages":[{"role":"user","content":"x"}]}`),
			http.StatusBadRequest, "invalid_request_error", "must be a string or an array of text blocks"},
		{"no endpoints", empty, messages(nil, "hi"), http.StatusServiceUnavailable, "overloaded_error", "no ready endpoints"},
	}
	for _, tc := range tests {
		d := tc.h.exchange(t, post("/v1/messages", tc.body))
		requireImmediate(t, d, tc.status, d.Immediate.Headers.Get(server.DroppedReasonHeader), tc.mentioned)
		var e struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal(d.Immediate.Body, &e); err != nil || e.Type != "error" || e.Error.Type != tc.typ {
			t.Errorf("%s: body %s (%v), want an Anthropic %s error", tc.name, d.Immediate.Body, err, tc.typ)
		}
		if ct := d.Immediate.Headers.Get("content-type"); ct != "application/json" {
			t.Errorf("%s: content-type %q", tc.name, ct)
		}
	}
	d := h.exchange(t, post("/v1/chat/completions", []byte(`{"model":`)))
	if ct := d.Immediate.Headers.Get("content-type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("OpenAI path error content-type %q, want plain text", ct)
	}
}

// TestUnparsedAPIsRouteOnLoad: a family no configured parser covers is
// routed as an unknown path is (no prompt, no 400 for a body the parser
// would refuse).
func TestUnparsedAPIsRouteOnLoad(t *testing.T) {
	t.Parallel()
	h := start(t, setup{server: server.Options{Unparsed: request.AnthropicAPIs}})
	id := uuid.NewString()
	d := h.exchange(t, post("/v1/messages", []byte(`{"model":"`+testModel+`","messages":"not a list"}`), "x-request-id", id))
	if d.Immediate != nil {
		t.Fatalf("immediate %d %s, want routed", d.Immediate.Status, d.Immediate.Body)
	}
	if req := h.rec.request(t, id); req.Body.API != request.Other || len(req.Body.Prompt) != 0 || req.Model != testModel {
		t.Errorf("plugins saw API %v prompt %q model %q", req.Body.API, req.Body.Prompt, req.Model)
	}
	d = h.exchange(t, post("/v1/chat/completions", []byte(`{"model":"m","messages":"not a list"}`)))
	requireImmediate(t, d, http.StatusBadRequest, "bad-request", `"messages"`)
}
