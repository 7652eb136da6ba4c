package sim

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

const testPrompt = "The quick brown fox jumps over the lazy dog."

// generateCases is the TestCompletionsNonStreaming table.
var generateCases = []struct {
	name       string
	path, body string
	object     string
	tokens     int
	prompt     int
}{
	{name: "completions default max tokens", path: "/v1/completions",
		body: fmt.Sprintf(`{"model":"alias","prompt":%q}`, testPrompt), object: "text_completion",
		tokens: 16, prompt: tokenize.Count(testPrompt)},
	{name: "completions max_tokens", path: "/v1/completions",
		body: fmt.Sprintf(`{"model":"alias","prompt":%q,"max_tokens":3}`, testPrompt), object: "text_completion",
		tokens: 3, prompt: tokenize.Count(testPrompt)},
	{name: "completions token ids", path: "/v1/completions",
		body: `{"model":"alias","prompt":[1,2,3,4,5],"max_tokens":2}`, object: "text_completion",
		tokens: 2, prompt: 5},
	{name: "chat max_completion_tokens wins", path: "/v1/chat/completions",
		body:   `{"model":"alias","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"max_completion_tokens":4}`,
		object: "chat.completion", tokens: 4,
		prompt: tokenize.Count("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")},
	{name: "chat content parts", path: "/v1/chat/completions",
		body:   `{"model":"alias","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":2}`,
		object: "chat.completion", tokens: 2,
		prompt: tokenize.Count("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")},
}

func TestCompletionsNonStreaming(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.ServedModelNames = []string{"base", "alias"}
	inst := start(t, cfg)
	c := client(t)
	for _, tc := range generateCases {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+tc.path, tc.body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			got := decode[chunk](t, r.body)
			if got.Object != tc.object || got.Model != "alias" || len(got.Choices) != 1 {
				t.Fatalf("object=%q model=%q choices=%d", got.Object, got.Model, len(got.Choices))
			}
			text := got.Choices[0].Text
			if got.Choices[0].Message != nil {
				text = got.Choices[0].Message.Content
			}
			if n := len(strings.Fields(text)); n != tc.tokens {
				t.Errorf("text %q has %d words, want %d", text, n, tc.tokens)
			}
			if f := got.Choices[0].Finish; f == nil || *f != "length" {
				t.Errorf("finish_reason = %v, want length", f)
			}
			u := got.Usage
			if u == nil || u.Prompt != tc.prompt || u.Completion != tc.tokens || u.Total != tc.prompt+tc.tokens {
				t.Errorf("usage = %+v, want prompt %d completion %d", u, tc.prompt, tc.tokens)
			}
		})
	}
}

func TestMultiplePrompts(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	r := post(t, client(t), inst.URL()+"/v1/completions", `{"prompt":["one two","three four five"],"max_tokens":2}`)
	got := decode[chunk](t, r.body)
	if len(got.Choices) != 2 || got.Choices[1].Index != 1 {
		t.Fatalf("choices = %+v", got.Choices)
	}
	if got.Model != "sim-model" {
		t.Errorf("model defaulted to %q, want the served name sim-model", got.Model)
	}
	if u := got.Usage; u.Prompt != 2+3 || u.Completion != 4 {
		t.Errorf("usage = %+v, want 5 prompt and 4 completion tokens", u)
	}
}

func TestPrefixCacheHitReported(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	system := strings.Repeat("You are a careful assistant that answers routing questions briefly. ", 20)
	ask := func(q string) int {
		body := fmt.Sprintf(`{"messages":[{"role":"system","content":%q},{"role":"user","content":%q}],"max_tokens":1}`, system, q)
		return decode[chunk](t, post(t, c, inst.URL()+"/v1/chat/completions", body).body).Usage.Details.Cached
	}
	if first := ask("What is a KV cache?"); first != 0 {
		t.Fatalf("first request cached %d tokens, want 0", first)
	}
	second := ask("And what is prefix caching?")
	systemTokens := tokenize.Count("<|im_start|>system\n" + system)
	if second < systemTokens-16 || second%16 != 0 {
		t.Fatalf("second request cached %d tokens, want whole blocks covering most of the %d system tokens", second, systemTokens)
	}
	if hits := inst.EngineMetrics().PrefixHits; hits != uint64(second) {
		t.Fatalf("engine counted %d hit tokens, usage reported %d", hits, second)
	}
}

func TestStreaming(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	tests := []struct {
		name      string
		path      string
		body      string
		wantUsage bool
		chat      bool
	}{
		{name: "completions", path: "/v1/completions", body: `{"model":"sim-model","prompt":"hello there","max_tokens":4,"stream":true}`},
		{name: "completions with usage", path: "/v1/completions", wantUsage: true,
			body: `{"model":"sim-model","prompt":"hello there","max_tokens":4,"stream":true,"stream_options":{"include_usage":true}}`},
		{name: "chat with usage", path: "/v1/chat/completions", wantUsage: true, chat: true,
			body: `{"model":"sim-model","messages":[{"role":"user","content":"hello"}],"max_tokens":4,"stream":true,"stream_options":{"include_usage":true}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+tc.path, tc.body)
			if ct := r.header.Get("Content-Type"); ct != "text/event-stream" {
				t.Fatalf("Content-Type = %q", ct)
			}
			events := sseEvents(t, r.body)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("last event %q, want [DONE]", events[len(events)-1])
			}
			events = events[:len(events)-1]
			if tc.chat {
				first := decode[chunk](t, []byte(events[0]))
				if d := first.Choices[0].Delta; d == nil || d.Role != "assistant" {
					t.Fatalf("first chat chunk %s lacks the assistant role", events[0])
				}
				events = events[1:]
			}
			if tc.wantUsage {
				u := decode[chunk](t, []byte(events[len(events)-1]))
				if u.Usage == nil || u.Usage.Completion != 4 || len(u.Choices) != 0 {
					t.Fatalf("usage chunk = %s", events[len(events)-1])
				}
				events = events[:len(events)-1]
			}
			if len(events) != 4 {
				t.Fatalf("%d token chunks, want 4: %q", len(events), events)
			}
			for k, ev := range events {
				ch := decode[chunk](t, []byte(ev))
				if ch.Usage != nil {
					t.Errorf("token chunk %d carries usage", k)
				}
				last := k == len(events)-1
				if f := ch.Choices[0].Finish; (f != nil) != last {
					t.Errorf("chunk %d finish_reason = %v", k, f)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Capacity.MaxModelLen = 64
	inst := start(t, cfg)
	c := client(t)
	tests := []struct {
		name, path, body string
		status           int
		typ              string
	}{
		{name: "unknown model", path: "/v1/completions", body: `{"model":"nope","prompt":"x"}`, status: 404, typ: "NotFoundError"},
		{name: "malformed json", path: "/v1/completions", body: `{"prompt":`, status: 400, typ: "BadRequestError"},
		{name: "wrong field type", path: "/v1/completions", body: `{"prompt":"x","stream":"yes"}`, status: 400, typ: "BadRequestError"},
		{name: "missing prompt", path: "/v1/completions", body: `{}`, status: 400, typ: "BadRequestError"},
		{name: "empty prompt", path: "/v1/completions", body: `{"prompt":""}`, status: 400, typ: "BadRequestError"},
		{name: "bad token id", path: "/v1/completions", body: `{"prompt":[1,-2]}`, status: 400, typ: "BadRequestError"},
		{name: "zero max tokens", path: "/v1/completions", body: `{"prompt":"x","max_tokens":0}`, status: 400, typ: "BadRequestError"},
		{name: "too long", path: "/v1/completions", body: `{"prompt":"x","max_tokens":100}`, status: 400, typ: "BadRequestError"},
		{name: "stream options without stream", path: "/v1/completions", body: `{"prompt":"x","stream_options":{"include_usage":true}}`, status: 400, typ: "BadRequestError"},
		{name: "no messages", path: "/v1/chat/completions", body: `{"messages":[]}`, status: 400, typ: "BadRequestError"},
		{name: "image part without image_url", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, status: 400, typ: "BadRequestError"},
		{name: "unknown part type", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":[{"type":"file","file":{}}]}]}`, status: 400, typ: "BadRequestError"},
		{name: "missing role", path: "/v1/chat/completions", body: `{"messages":[{"content":"x"}]}`, status: 400, typ: "BadRequestError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			e := decode[wireError](t, r.body)
			if e.Error.Type != tc.typ || e.Error.Code != tc.status || e.Error.Message == "" {
				t.Fatalf("error body = %s", r.body)
			}
		})
	}
	if r := do(t, c, http.MethodGet, inst.URL()+"/v1/completions", ""); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/completions = %d, want 405", r.status)
	}
	if m := inst.EngineMetrics(); m.Waiting+m.Running != 0 {
		t.Errorf("rejected requests left work in the engine: %+v", m)
	}
}

func TestModelsHealthAndLoRAs(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Model = "meta/llama"
	cfg.ServedModelNames = []string{"llama", "default"}
	cfg.LoRAs = []string{"sql-lora"}
	inst := start(t, cfg)
	c := client(t)
	if r := do(t, c, http.MethodGet, inst.URL()+"/health", ""); r.status != 200 {
		t.Fatalf("/health = %d", r.status)
	}
	ids := func() []string {
		list := decode[wireModelList](t, do(t, c, http.MethodGet, inst.URL()+"/v1/models", "").body)
		var out []string
		for _, m := range list.Data {
			parent := ""
			if m.Parent != nil {
				parent = *m.Parent
			}
			out = append(out, m.ID+"<"+parent)
		}
		return out
	}
	if diff := cmp.Diff([]string{"llama<", "default<", "sql-lora<meta/llama"}, ids()); diff != "" {
		t.Fatalf("/v1/models (-want +got):\n%s", diff)
	}
	if r := post(t, c, inst.URL()+"/v1/load_lora_adapter", `{"lora_name":"new","lora_path":"/x"}`); r.status != 200 {
		t.Fatalf("load adapter = %d %s", r.status, r.body)
	}
	if r := post(t, c, inst.URL()+"/v1/load_lora_adapter", `{"lora_name":"new"}`); r.status != 400 {
		t.Fatalf("loading twice = %d", r.status)
	}
	r := post(t, c, inst.URL()+"/v1/completions", `{"model":"new","prompt":"x","max_tokens":1}`)
	if r.status != 200 || decode[chunk](t, r.body).Model != "new" {
		t.Fatalf("completion on loaded adapter = %d %s", r.status, r.body)
	}
	if r := post(t, c, inst.URL()+"/v1/unload_lora_adapter", `{"lora_name":"new"}`); r.status != 200 {
		t.Fatalf("unload = %d", r.status)
	}
	if r := post(t, c, inst.URL()+"/v1/unload_lora_adapter", `{"lora_name":"new"}`); r.status != 404 {
		t.Fatalf("unload twice = %d", r.status)
	}
	if diff := cmp.Diff([]string{"llama<", "default<", "sql-lora<meta/llama"}, ids()); diff != "" {
		t.Fatalf("/v1/models after unload (-want +got):\n%s", diff)
	}
}

func TestRequestIDAndEndpointHeaders(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	req, _ := http.NewRequest(http.MethodPost, inst.URL()+"/v1/completions", strings.NewReader(`{"prompt":"x","max_tokens":1}`))
	req.Header.Set("x-request-id", "abc-123")
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := [2]string{resp.Header.Get("x-request-id"), resp.Header.Get(EndpointHeader)}; got != [2]string{"abc-123", inst.HostPort()} {
		t.Fatalf("headers = %v", got)
	}
}

// TestRealTimePacing checks the HTTP server follows the engine's clock:
// TTFT 30ms then 10ms per token.
func TestRealTimePacing(t *testing.T) {
	t.Parallel()
	inst := start(t, Config{Latency: Latency{
		TimeToFirstToken: Ptr(30 * time.Millisecond), InterTokenLatency: Ptr(10 * time.Millisecond),
	}})
	c := client(t)
	began := time.Now()
	r := post(t, c, inst.URL()+"/v1/completions", `{"prompt":"pace me","max_tokens":5}`)
	took := time.Since(began)
	if r.status != 200 || took < 70*time.Millisecond || took > 2*time.Second {
		t.Fatalf("status %d after %v, want 200 after 30ms + 4×10ms", r.status, took)
	}
}
