package request

import (
	"errors"
	"strings"
	"testing"
)

func TestMessagesPath(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]API{
		"/v1/messages":              Messages,
		"/anthropic/v1/messages/":   Messages,
		"/v1/messages?beta=true":    Messages,
		"/v1/messages/count_tokens": Other,
		"/v1/threads/t1/messages":   Other,
	} {
		if got := APIForPath(path); got != want {
			t.Errorf("APIForPath(%q) = %v, want %v", path, got, want)
		}
	}
	if !Messages.IsAnthropic() || ChatCompletions.IsAnthropic() {
		t.Error("IsAnthropic: only Messages speaks Anthropic's format")
	}
}

func TestParseMessages(t *testing.T) {
	t.Parallel()
	const msgs = `[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, body, prompt string
	}{
		{name: "no system", body: `{"model":"m","max_tokens":5,"messages":` + msgs + `}`, prompt: msgs},
		{name: "null system", body: `{"model":"m","system":null,"messages":` + msgs + `}`, prompt: msgs},
		{name: "empty system", body: `{"model":"m","system":"","messages":` + msgs + `}`, prompt: msgs},
		{name: "string system after messages", body: `{"model":"m","messages":` + msgs + `,"system":"be brief"}`,
			prompt: `"be brief"` + "\n" + msgs},
		{name: "block system", body: `{"model":"m","system":[{"type":"text","text":"be brief"}],"messages":` + msgs + `}`,
			prompt: `[{"type":"text","text":"be brief"}]` + "\n" + msgs},
		{name: "billing block dropped",
			body:   `{"model":"m","system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2; cch=81f3;"}, {"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],"messages":` + msgs + `}`,
			prompt: `[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}]` + "\n" + msgs},
		{name: "only a billing block", body: `{"model":"m","system":[{"type":"text","text":"x-anthropic-billing-header: cch=1;"}],"messages":` + msgs + `}`,
			prompt: msgs},
		{name: "header text elsewhere kept", body: `{"model":"m","system":[{"type":"text","text":"see x-anthropic-billing-header"}],"messages":` + msgs + `}`,
			prompt: `[{"type":"text","text":"see x-anthropic-billing-header"}]` + "\n" + msgs},
	}
	for _, tc := range tests {
		b, err := Parse(Messages, []byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(b.Prompt) != tc.prompt || b.Model != "m" {
			t.Errorf("%s: prompt %s model %q, want %s", tc.name, b.Prompt, b.Model, tc.prompt)
		}
	}
}

// Two Claude Code requests differ in the billing block's hash and in the
// latest turn only: their hashed prompts must share everything before it.
func TestMessagesPromptsShareBillingFreePrefix(t *testing.T) {
	t.Parallel()
	body := func(hash, turn string) string {
		return `{"model":"m","max_tokens":64,"stream":true,"system":[{"type":"text","text":"x-anthropic-billing-header: cch=` + hash +
			`;"},{"type":"text","text":"You are a coding agent."}],"messages":[{"role":"user","content":"fix the bug"},` +
			`{"role":"assistant","content":"done"},{"role":"user","content":"` + turn + `"}]}`
	}
	a, err := Parse(Messages, []byte(body("aaaa", "thanks")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(Messages, []byte(body("bbbb", "now add a test")))
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	for shared < min(len(a.Prompt), len(b.Prompt)) && a.Prompt[shared] == b.Prompt[shared] {
		shared++
	}
	if want := strings.Index(string(a.Prompt), `"thanks"`); shared < want {
		t.Errorf("prompts share %d bytes, want at least %d (everything before the last turn):\n%s\n%s", shared, want, a.Prompt, b.Prompt)
	}
	if !a.Stream || a.MaxTokens != 64 {
		t.Errorf("stream %v max_tokens %d", a.Stream, a.MaxTokens)
	}
}

func TestParseMessagesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       error
		mention    string
	}{
		{"no messages", `{"model":"m","max_tokens":5}`, ErrMissingPrompt, `"messages"`},
		{"empty messages", `{"model":"m","messages":[]}`, ErrMissingPrompt, `"messages"`},
		{"string messages", `{"model":"m","messages":"hi"}`, ErrMalformed, `"messages"`},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, ErrMissingModel, "model"},
		{"numeric system", `{"model":"m","system":7,"messages":[{"role":"user","content":"hi"}]}`, ErrMalformed, `"system"`},
		{"bad max_tokens", `{"model":"m","max_tokens":"x","messages":[{"role":"user","content":"hi"}]}`, ErrMalformed, "max_tokens"},
		{"not JSON", `{"model":"m",`, ErrMalformed, "invalid JSON"},
	}
	for _, tc := range tests {
		_, err := Parse(Messages, []byte(tc.body))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: error %v, want %v mentioning %s", tc.name, err, tc.want, tc.mention)
		}
	}
}

func TestAnthropicUsage(t *testing.T) {
	t.Parallel()
	u, ok := ParseUsage([]byte(`{"id":"msg_1","type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":90,"cache_creation_input_tokens":5,"output_tokens":7}}`))
	if want := (Usage{PromptTokens: 105, CompletionTokens: 7, TotalTokens: 112, CachedTokens: 90}); !ok || u != want {
		t.Errorf("message usage %+v, want %+v", u, want)
	}
	// vLLM's form: the whole prompt in input_tokens, no cache fields.
	u, _ = ParseUsage([]byte(`{"type":"message","usage":{"input_tokens":100,"output_tokens":7}}`))
	if u.PromptTokens != 100 || u.CachedTokens != 0 {
		t.Errorf("vLLM usage %+v", u)
	}
}

func TestAnthropicStreamUsage(t *testing.T) {
	t.Parallel()
	stream := "event: message_start\n" +
		`data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":3,"cache_read_input_tokens":40,"output_tokens":0}}}` + "\n\n" +
		"event: content_block_delta\n" +
		`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}` + "\n\n" +
		"event: message_delta\n" +
		`data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}` + "\n\n" +
		"event: message_stop\n" + `data: {"type":"message_stop"}` + "\n\n"
	for _, cut := range []int{1, 7, 64, len(stream)} {
		var s StreamUsage
		for rest := stream; rest != ""; {
			n := min(cut, len(rest))
			s.Write([]byte(rest[:n]))
			rest = rest[n:]
		}
		s.Flush()
		u, ok := s.Usage()
		if want := (Usage{PromptTokens: 43, CompletionTokens: 12, TotalTokens: 55, CachedTokens: 40}); !ok || u != want {
			t.Errorf("chunks of %d: usage %+v, want %+v", cut, u, want)
		}
	}
}
