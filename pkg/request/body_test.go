package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAPIForPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want API
	}{
		{path: "/v1/completions", want: Completions},
		{path: "/v1/chat/completions", want: ChatCompletions},
		{path: "/v1/chat/completions?x=1", want: ChatCompletions},
		{path: "/openai/v1/responses/", want: Responses},
		{path: "/v1/embeddings", want: Embeddings},
		{path: "/v1/conversations", want: Conversations},
		{path: "/v1/models", want: Other},
		{path: "/tokenize", want: Other},
	}
	for _, tc := range tests {
		if got := APIForPath(tc.path); got != tc.want {
			t.Errorf("APIForPath(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	type want struct {
		Model, CacheSalt, Prompt string
		Stream, IncludeUsage     bool
		MaxTokens                int
	}
	tests := []struct {
		name string
		api  API
		body string
		want want
	}{
		{name: "completion string", api: Completions,
			body: `{"model":"m","prompt":"hello \"x\"","stream":true,"stream_options":{"include_usage":true},"max_tokens":7}`,
			want: want{Model: "m", Prompt: `"hello \"x\""`, Stream: true, IncludeUsage: true, MaxTokens: 7}},
		{name: "completion list", api: Completions, body: `{"prompt":["a","b"], "model" : "m"}`,
			want: want{Model: "m", Prompt: `["a","b"]`}},
		{name: "chat", api: ChatCompletions,
			body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"cache_salt":"s","max_completion_tokens":3}`,
			want: want{Model: "m", Prompt: `[{"role":"user","content":"hi"}]`, CacheSalt: "s", MaxTokens: 3}},
		{name: "responses", api: Responses, body: `{"model":"m","input":"hi","max_output_tokens":2}`,
			want: want{Model: "m", Prompt: `"hi"`, MaxTokens: 2}},
		{name: "embeddings", api: Embeddings, body: "{\n \"input\": [\"a\"],\n \"model\": \"e\"\n}",
			want: want{Model: "e", Prompt: `["a"]`}},
		{name: "nested model ignored", api: Completions, body: `{"x":{"model":"no"},"model":"yes","prompt":"p"}`,
			want: want{Model: "yes", Prompt: `"p"`}},
		{name: "other api non-json", api: Other, body: `not json`, want: want{}},
		{name: "other api json", api: Other, body: `{"model":"m","text":"t"}`, want: want{Model: "m"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Parse(tc.api, []byte(tc.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := want{Model: b.Model, CacheSalt: b.CacheSalt, Prompt: string(b.Prompt), Stream: b.Stream,
				IncludeUsage: b.IncludeUsage, MaxTokens: b.MaxTokens}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestParseTools: the tool definitions are kept as sent (they shape the
// cached prefix), with where the template renders them: after the system
// prompt, else first. Absent, null or empty lists are none.
func TestParseTools(t *testing.T) {
	const sysMsg = `[{"role":"system","content":"be brief"}`
	for _, tc := range []struct {
		api      API
		body     string
		want     string
		wantAt   int
		atPrefix string // Prompt[:ToolsAt], when not empty
	}{
		{ChatCompletions, `{"model":"m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":{"name":"f"}}]}`, `[{"type":"function","function":{"name":"f"}}]`, 0, ""},
		{ChatCompletions, `{"model":"m","messages":` + sysMsg + `,{"role":"user","content":"q"}],"tools":[{"name":"f"}]}`, `[{"name":"f"}]`, len(sysMsg), sysMsg},
		{ChatCompletions, `{"model":"m","messages":[ {"content":"x","role":"developer"} ],"tools":[{"name":"f"}]}`, `[{"name":"f"}]`, 36, `[ {"content":"x","role":"developer"}`},
		{Messages, `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"q"}],"tools": [{"name":"bash","input_schema":{}}]}`, `[{"name":"bash","input_schema":{}}]`, 0, ""},
		{Messages, `{"model":"m","max_tokens":8,"system":"be brief","messages":[{"role":"user","content":"q"}],"tools":[{"name":"bash"}]}`, `[{"name":"bash"}]`, 11, "\"be brief\"\n"},
		{Responses, `{"model":"m","input":"q","tools":[{"type":"web_search"}]}`, `[{"type":"web_search"}]`, 0, ""},
		{ChatCompletions, `{"model":"m","messages":[{"role":"user","content":"q"}],"tools":null}`, ``, 0, ""},
		{ChatCompletions, `{"model":"m","messages":[{"role":"user","content":"q"}],"tools":[]}`, ``, 0, ""},
		{ChatCompletions, `{"model":"m","messages":[{"role":"user","content":"q"}]}`, ``, 0, ""},
	} {
		b, err := Parse(tc.api, []byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		if string(b.Tools) != tc.want || b.ToolsAt != tc.wantAt {
			t.Errorf("%s: tools %q at %d, want %q at %d", tc.body, b.Tools, b.ToolsAt, tc.want, tc.wantAt)
		}
		if tc.atPrefix != "" && string(b.Prompt[:b.ToolsAt]) != tc.atPrefix {
			t.Errorf("%s: prompt before the tools %q, want %q", tc.body, b.Prompt[:b.ToolsAt], tc.atPrefix)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		api     API
		body    string
		want    error
		message string
	}{
		{name: "empty", api: Completions, body: "  ", want: ErrMalformed, message: "empty"},
		{name: "truncated", api: Completions, body: `{"model":"m","prompt":"abc`, want: ErrMalformed, message: "invalid JSON"},
		{name: "syntax", api: ChatCompletions, body: `{"model":"m",}`, want: ErrMalformed, message: "byte 13"},
		{name: "array body", api: Completions, body: `["model"]`, want: ErrMalformed, message: "JSON object"},
		{name: "no model", api: Completions, body: `{"prompt":"x"}`, want: ErrMissingModel},
		{name: "empty model", api: Completions, body: `{"model":"","prompt":"x"}`, want: ErrMissingModel},
		{name: "model not string", api: Completions, body: `{"model":42,"prompt":"x"}`, want: ErrMalformed, message: `"model"`},
		{name: "stream not bool", api: Completions, body: `{"model":"m","stream":"yes","prompt":"x"}`, want: ErrMalformed, message: `"stream"`},
		{name: "no prompt", api: Completions, body: `{"model":"m"}`, want: ErrMissingPrompt, message: `"prompt"`},
		{name: "no messages", api: ChatCompletions, body: `{"model":"m","messages":[]}`, want: ErrMissingPrompt, message: "empty"},
		{name: "messages string", api: ChatCompletions, body: `{"model":"m","messages":"hi"}`, want: ErrMalformed, message: "array"},
		{name: "prompt number", api: Completions, body: `{"model":"m","prompt":5}`, want: ErrMalformed, message: "string or an array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.api, []byte(tc.body))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
}

func TestWithModel(t *testing.T) {
	t.Parallel()
	raw := `{ "prompt": "p", "model" : "old", "n": 1 }`
	b, err := Parse(Completions, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b.WithModel(`new"one`))
	want := `{ "prompt": "p", "model" : "new\"one", "n": 1 }`
	if got != want {
		t.Errorf("WithModel = %s, want %s", got, want)
	}
	if string(b.Raw) != raw {
		t.Errorf("WithModel modified the original body")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"model":"m","prompt":"x"}`))
	f.Add([]byte(`{"model":"m","messages":[{"a":"}"}]}`))
	f.Add([]byte(`{"a":"\\\"","model":"m","prompt":["\u00e9"]}`))
	f.Add([]byte(`{"model":"m","system":[{"type":"text","text":"x-anthropic-billing-header: a"},{"text":"s"}],"messages":[{"role":"user","content":"q"}]}`))
	f.Add([]byte(`{"model":"m","system":"s","messages":[1]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user"}],"tools":[{"name":"f"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, api := range []API{Other, Completions, ChatCompletions, Responses, Messages} {
			b, err := Parse(api, data)
			if err == nil && api != Other && (b.Model == "" || len(b.Prompt) == 0) {
				t.Fatalf("accepted body without model or prompt: %q", data)
			}
			if err == nil && api == Messages && !bytes.HasSuffix(b.Prompt, data[b.prompt.start:b.prompt.end]) {
				t.Fatalf("messages prompt %q does not end with the messages member of %q", b.Prompt, data)
			}
			if err == nil {
				_ = b.WithModel("x")
			}
			if err == nil && (b.ToolsAt < 0 || b.ToolsAt > len(b.Prompt)) {
				t.Fatalf("tools at %d of a %d-byte prompt: %q", b.ToolsAt, len(b.Prompt), data)
			}
			if err == nil && api != Other && !bytes.ContainsRune(data, '\\') {
				checkMembersAgainstStdlib(t, api, data, b)
			}
		}
	})
}

// checkMembersAgainstStdlib compares the model and prompt Parse read (in
// its single pass) with encoding/json's reading of the same body. Bodies
// with escapes are skipped: the stdlib unescapes keys, Parse matches them
// as sent.
func checkMembersAgainstStdlib(t *testing.T, api API, data []byte, b *Body) {
	t.Helper()
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		t.Fatalf("Parse accepted %q, encoding/json did not: %v", data, err)
	}
	var model string
	if err := json.Unmarshal(members["model"], &model); err != nil || model != b.Model {
		t.Fatalf("%q: model %q, encoding/json reads %q (%v)", data, b.Model, model, err)
	}
	if got, want := data[b.prompt.start:b.prompt.end], members[promptField[api]]; !bytes.Equal(got, want) {
		t.Fatalf("%q: prompt member %q, encoding/json reads %q", data, got, want)
	}
}

func BenchmarkParse(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		body := []byte(`{"model":"m","stream":true,"messages":[{"role":"system","content":"` +
			strings.Repeat("lorem ipsum ", size/12) + `"},{"role":"user","content":"q"}]}`)
		b.Run(fmt.Sprintf("prompt=%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Parse(ChatCompletions, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range []string{`{}`, `[1,-0.5e+3,"\u00e9\n",true,null]`, `{"a":"b\\"}`, `01`, `"\x01"`, `1.`, `-`, `[1,]`, `{"a" 1}`, " \t\"x\"\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _ := validJSON(data)
		if want := json.Valid(data); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", data, got, want)
		}
	})
}

// TestParseAllocations keeps parsing at three allocations (the Body and
// what decoding the model and stream fields needs): a closure escaping from
// the validator once cost two more per request.
func TestParseAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation measurement")
	}
	body := []byte(`{"model":"m","stream":true,"messages":[{"role":"system","content":"` +
		strings.Repeat("lorem ipsum ", 100) + `"},{"role":"user","content":"q"}],"tools":[{"name":"f"}]}`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Parse(ChatCompletions, body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 {
		t.Errorf("Parse allocates %.0f times per body, budget 3", allocs)
	}
}
