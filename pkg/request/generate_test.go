package request

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGeneratePath(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]API{
		"/inference/v1/generate":         Generate,
		"/inference/v1/generate?x=1":     Generate,
		"/prefix/inference/v1/generate/": Generate,
		"/generate":                      SGLangGenerate, // SGLang's native API is not vLLM's
		"/generate/":                     SGLangGenerate,
		"/sglang/generate":               Other, // a prefix is not SGLang's path
		"/v2/models/ensemble/generate":   Other, // Triton's generate extension
	} {
		if got := APIForPath(path); got != want {
			t.Errorf("APIForPath(%q) = %v, want %v", path, got, want)
		}
	}
	if !AllAPIs.Has(Generate) || OpenAIAPIs.Has(Generate) || Generate.IsAnthropic() {
		t.Error("generate must be its own family")
	}
}

func TestParseGenerate(t *testing.T) {
	t.Parallel()
	body := `{"model":"m","token_ids":[1, 22 ,333,4294967295],"sampling_params":{"max_tokens":8,"temperature":0},` +
		`"stream":true,"stream_options":{"include_usage":true},"cache_salt":"s","max_tokens":99}`
	b, err := Parse(Generate, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint32{1, 22, 333, 4294967295}, b.TokenIDs()); diff != "" {
		t.Errorf("token IDs (-want +got):\n%s", diff)
	}
	if b.Model != "m" || !b.Stream || !b.IncludeUsage || b.CacheSalt != "s" {
		t.Errorf("fields: %+v", b)
	}
	if b.MaxTokens != 8 {
		t.Errorf("MaxTokens = %d, want sampling_params.max_tokens 8 (a top-level max_tokens is not vLLM's)", b.MaxTokens)
	}
	if b.EstimatedPromptTokens() != 4 {
		t.Errorf("EstimatedPromptTokens = %d, want the exact 4", b.EstimatedPromptTokens())
	}
}

// Prefix matching hashes Prompt, so spacing must not change it.
func TestGeneratePromptIgnoresSpacing(t *testing.T) {
	t.Parallel()
	a, err := Parse(Generate, []byte(`{"token_ids":[5,6,7],"sampling_params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(Generate, []byte("{\"token_ids\": [ 5,\n 6 , 7 ] ,\"sampling_params\":{}}"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Prompt) != string(b.Prompt) || len(a.Prompt) != 12 {
		t.Errorf("prompts %x and %x, want the same 12 bytes", a.Prompt, b.Prompt)
	}
}

func TestGenerateModelIsOptional(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"token_ids":[1]}`, `{"model":null,"token_ids":[1]}`, ` { "token_ids":[1]}`} {
		b, err := Parse(Generate, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if b.Model != "" {
			t.Errorf("%s: model %q", body, b.Model)
		}
		// A rewrite must reach vLLM even without a model to replace.
		var got struct {
			Model    string   `json:"model"`
			TokenIDs []uint32 `json:"token_ids"`
		}
		if err := json.Unmarshal(b.WithModel("target"), &got); err != nil || got.Model != "target" || len(got.TokenIDs) != 1 {
			t.Errorf("%s: WithModel gave %s (%v)", body, b.WithModel("target"), err)
		}
	}
}

func TestParseGenerateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body, want string
		is         error
	}{
		{`{"model":"m"}`, `"token_ids" is required`, ErrMissingPrompt},
		{`{"model":"m","token_ids":null}`, `"token_ids" is required`, ErrMissingPrompt},
		{`{"model":"m","token_ids":[]}`, "must not be empty", ErrMissingPrompt},
		{`{"model":"m","token_ids":"hello"}`, "must be an array", ErrMalformed},
		{`{"model":"m","token_ids":[1,"2"]}`, "token_ids[1]", ErrMalformed},
		{`{"model":"m","token_ids":[1,-2]}`, "non-negative integer", ErrMalformed},
		{`{"model":"m","token_ids":[1.5]}`, "token_ids[0]", ErrMalformed},
		{`{"model":"m","token_ids":[1e3]}`, "token_ids[0]", ErrMalformed},
		{`{"model":"m","token_ids":[4294967296]}`, "below 2^32", ErrMalformed},
		{`{"model":"m","token_ids":[[1]]}`, "token_ids[0]", ErrMalformed},
		{`{"model":"m","token_ids":[1],"sampling_params":{"max_tokens":"x"}}`, "sampling_params", ErrMalformed},
		{`{"model":"m","token_ids":[1,]}`, "invalid JSON", ErrMalformed},
	}
	for _, tc := range tests {
		_, err := Parse(Generate, []byte(tc.body))
		if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %v containing %q", tc.body, err, tc.is, tc.want)
		}
	}
}

func FuzzParseGenerate(f *testing.F) {
	f.Add([]byte(`{"token_ids":[1,2,3],"sampling_params":{"max_tokens":4}}`))
	f.Add([]byte(`{"model":"m","token_ids":[ 0 , 4294967295 ]}`))
	f.Add([]byte(`{"token_ids":[1.0, -1, "x", []]}`))
	f.Add([]byte(`{"input_ids":[1,2],"sampling_params":{"max_new_tokens":3},"lora_path":"a"}`))
	f.Add([]byte(`{"text":["a"],"input_ids":null,"input_embeds":[[1]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := Parse(Generate, data); err == nil {
			var want struct {
				TokenIDs []uint32 `json:"token_ids"`
			}
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatalf("Parse accepted %q, encoding/json did not: %v", data, err)
			}
			if diff := cmp.Diff(want.TokenIDs, b.TokenIDs()); diff != "" {
				t.Fatalf("%q: token IDs (-stdlib +Parse):\n%s", data, diff)
			}
			_ = b.WithModel("x")
		}
		if b, err := Parse(SGLangGenerate, data); err == nil && b.TokenIDs() != nil {
			var want struct {
				InputIDs []uint32 `json:"input_ids"`
			}
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatalf("Parse accepted %q, encoding/json did not: %v", data, err)
			}
			if diff := cmp.Diff(want.InputIDs, b.TokenIDs()); diff != "" {
				t.Fatalf("%q: input IDs (-stdlib +Parse):\n%s", data, diff)
			}
		}
	})
}

// BenchmarkParseGenerate is BenchmarkParse for token-in bodies of about the
// same sizes, token IDs of a 150k vocabulary drawn Zipf-like (frequent IDs
// are small, so lengths vary as in real prompts), against encoding/json
// decoding the same IDs, the baseline.
func BenchmarkParseGenerate(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		var sb strings.Builder
		sb.WriteString(`{"model":"m","stream":true,"sampling_params":{"max_tokens":8},"token_ids":[`)
		z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 10, 150_000)
		for i := 0; sb.Len() < size; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(strconv.FormatUint(z.Uint64(), 10))
		}
		sb.WriteString("]}")
		body := []byte(sb.String())
		b.Run(fmt.Sprintf("prompt=%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Parse(Generate, body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("prompt=%dKiB/encoding-json", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var v struct {
					TokenIDs []uint32 `json:"token_ids"`
				}
				if err := json.Unmarshal(body, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestParseSGLang(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		prompt     string // as Prompt, or the packed IDs' decimal list
		ids        []uint32
		model      string
		maxTokens  int
	}{
		{name: "text", body: `{"text":"Once upon","sampling_params":{"max_new_tokens":9,"max_tokens":3},"stream":true}`,
			prompt: `"Once upon"`, maxTokens: 9},
		{name: "input_ids", body: `{"input_ids":[3, 4,5],"lora_path":"adapter-a","model":"ignored"}`,
			ids: []uint32{3, 4, 5}, model: "adapter-a"},
		{name: "text batch", body: `{"text":["a","b"],"sampling_params":[{"max_new_tokens":1},{"max_new_tokens":2}],"lora_path":["x","y"],"cache_salt":["s","t"]}`,
			prompt: `["a","b"]`},
		{name: "ids batch", body: `{"input_ids":[[1,2],[3]]}`, prompt: `[[1,2],[3]]`},
		{name: "embeddings", body: `{"input_embeds":[[0.1,0.2]]}`},
		{name: "TGI's body", body: `{"inputs":"hi","parameters":{"max_new_tokens":5}}`},
		{name: "nulls", body: `{"text":null,"input_ids":[7]}`, ids: []uint32{7}},
	}
	for _, tc := range tests {
		b, err := Parse(SGLangGenerate, []byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.ids != nil {
			if diff := cmp.Diff(tc.ids, b.TokenIDs()); diff != "" {
				t.Errorf("%s: IDs (-want +got):\n%s", tc.name, diff)
			}
		} else if string(b.Prompt) != tc.prompt || b.TokenIDs() != nil {
			t.Errorf("%s: prompt %q, want %q", tc.name, b.Prompt, tc.prompt)
		}
		if b.Model != tc.model || b.MaxTokens != tc.maxTokens {
			t.Errorf("%s: model %q max tokens %d, want %q %d", tc.name, b.Model, b.MaxTokens, tc.model, tc.maxTokens)
		}
		if got := b.WithModel("x"); string(got) != tc.body {
			t.Errorf("%s: a rewrite changed an SGLang body (it has no model): %s", tc.name, got)
		}
	}
}

func TestParseSGLangErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body, want string
		is         error
	}{
		{`{"text":"a","input_ids":[1]}`, "not both", ErrMalformed},
		{`{"input_ids":[]}`, "must not be empty", ErrMissingPrompt},
		{`{"input_ids":"a"}`, "string or an array", ErrMalformed},
		{`{"input_ids":[1,-1]}`, "input_ids[1]", ErrMalformed},
		{`{"text":3}`, "string or an array", ErrMalformed},
		{`{"text":"a","sampling_params":{"max_new_tokens":"x"}}`, "sampling_params", ErrMalformed},
		{`{"text":"a","lora_path":3}`, "lora_path", ErrMalformed},
	}
	for _, tc := range tests {
		_, err := Parse(SGLangGenerate, []byte(tc.body))
		if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %v containing %q", tc.body, err, tc.is, tc.want)
		}
	}
}

// SGLang counts tokens in meta_info, in its answer and in every stream
// chunk (cumulative: the last one is final).
func TestSGLangUsage(t *testing.T) {
	t.Parallel()
	u, ok := ParseUsage([]byte(`{"text":"x","meta_info":{"id":"r","finish_reason":{"type":"length","length":4},"prompt_tokens":10,"completion_tokens":4,"cached_tokens":6}}`))
	if want := (Usage{PromptTokens: 10, CompletionTokens: 4, TotalTokens: 14, CachedTokens: 6}); !ok || u != want {
		t.Errorf("answer usage %+v %v, want %+v", u, ok, want)
	}
	var s StreamUsage
	s.Write([]byte("data: {\"text\":\"a\",\"meta_info\":{\"prompt_tokens\":10,\"completion_tokens\":1,\"cached_tokens\":0}}\n\n"))
	s.Write([]byte("data: {\"text\":\"a b\",\"meta_info\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"cached_tokens\":0,\"finish_reason\":{\"type\":\"length\"}}}\n\ndata: [DONE]\n\n"))
	if u, ok := s.Usage(); !ok || u.CompletionTokens != 2 || u.PromptTokens != 10 {
		t.Errorf("stream usage %+v %v", u, ok)
	}
}
