package sim

import (
	"net/http"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// sglangAnswer is a /generate answer or stream chunk.
type sglangAnswer struct {
	Text      string   `json:"text"`
	OutputIDs []uint32 `json:"output_ids"`
	MetaInfo  struct {
		ID           string `json:"id"`
		FinishReason *struct {
			Type   string `json:"type"`
			Length int    `json:"length"`
		} `json:"finish_reason"`
		Prompt     int      `json:"prompt_tokens"`
		Completion int      `json:"completion_tokens"`
		Cached     int      `json:"cached_tokens"`
		E2E        *float64 `json:"e2e_latency"`
	} `json:"meta_info"`
}

// sglangQuick is quick() as an SGLang-flavoured instance, the realistic
// pairing (the route is served whatever the flavour).
func sglangQuick() Config {
	cfg := quick()
	cfg.MetricsEngine = EngineSGLang
	return cfg
}

func postSGLang(t *testing.T, c *http.Client, inst *Instance, body string) sglangAnswer {
	t.Helper()
	r := post(t, c, inst.URL()+sglangGeneratePath, body)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return decode[sglangAnswer](t, r.body)
}

// checkOutput checks an answer's text and IDs agree with each other and
// with its completion count.
func checkOutput(t *testing.T, got sglangAnswer) {
	t.Helper()
	words := strings.Fields(got.Text)
	if len(words) != got.MetaInfo.Completion || len(got.OutputIDs) != got.MetaInfo.Completion {
		t.Fatalf("%d words, %d IDs, completion_tokens %d", len(words), len(got.OutputIDs), got.MetaInfo.Completion)
	}
	for k, word := range words {
		if k > 0 {
			word = " " + word
		}
		if want := tokenize.Append(nil, word)[0]; got.OutputIDs[k] != want {
			t.Fatalf("output_ids[%d] = %d, want %d for %q", k, got.OutputIDs[k], want, word)
		}
	}
}

func TestSGLangGenerateNonStreaming(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{EngineSGLang, EngineVLLM} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			cfg := quick()
			cfg.MetricsEngine = engine
			inst := start(t, cfg)
			c := client(t)
			// input_ids, with fields the simulator ignores.
			got := postSGLang(t, c, inst, `{"input_ids":`+idList(7)+`,"rid":"req-7","model":"ignored",`+
				`"sampling_params":{"max_new_tokens":5,"temperature":0.7},"return_logprob":false,"image_data":null}`)
			m := got.MetaInfo
			if m.ID != "req-7" || m.Prompt != 7 || m.Completion != 5 || m.E2E == nil || *m.E2E <= 0 {
				t.Fatalf("meta_info = %+v", m)
			}
			if m.FinishReason == nil || m.FinishReason.Type != "length" || m.FinishReason.Length != 5 {
				t.Fatalf("finish_reason = %+v", m.FinishReason)
			}
			checkOutput(t, got)

			// A text prompt is tokenized as the completions API does.
			text := "Route this request to the replica with the warmest cache."
			got = postSGLang(t, c, inst, `{"text":"`+text+`","sampling_params":{"max_new_tokens":3}}`)
			if got.MetaInfo.Prompt != tokenize.Count(text) || got.MetaInfo.Completion != 3 || len(got.MetaInfo.ID) != 32 {
				t.Fatalf("meta_info = %+v; want %d prompt tokens and a random 32-digit id", got.MetaInfo, tokenize.Count(text))
			}
			checkOutput(t, got)
		})
	}
}

func TestSGLangGenerateDefaults(t *testing.T) {
	t.Parallel()
	cfg := sglangQuick()
	cfg.LoRAs = []string{"sql-lora"}
	cfg.Capacity.MaxLoRAs = 1
	inst := start(t, cfg)
	c := client(t)
	// No sampling_params: SGLang's 128 new tokens.
	if got := postSGLang(t, c, inst, `{"input_ids":[1,2,3]}`); got.MetaInfo.Completion != 128 {
		t.Errorf("completion_tokens %d, want 128", got.MetaInfo.Completion)
	}
	if got := postSGLang(t, c, inst, `{"input_ids":[1],"sampling_params":{"max_new_tokens":null}}`); got.MetaInfo.Completion != 128 {
		t.Errorf("completion_tokens %d, want 128", got.MetaInfo.Completion)
	}
	if got := postSGLang(t, c, inst, `{"input_ids":[1,2],"lora_path":"sql-lora","sampling_params":{"max_new_tokens":2}}`); got.MetaInfo.Completion != 2 {
		t.Errorf("adapter request: %+v", got.MetaInfo)
	}
	// max_new_tokens 0 is a prefill: nothing generated, finished.
	got := postSGLang(t, c, inst, `{"input_ids":[1,2],"sampling_params":{"max_new_tokens":0}}`)
	if f := got.MetaInfo.FinishReason; got.OutputIDs == nil || len(got.OutputIDs) != 0 || got.Text != "" ||
		got.MetaInfo.Completion != 0 || f == nil || f.Type != "length" || f.Length != 0 {
		t.Fatalf("prefill-only answer = %+v", got)
	}
	r := post(t, c, inst.URL()+sglangGeneratePath, `{"input_ids":[1,2],"sampling_params":{"max_new_tokens":0},"stream":true}`)
	events := sseEvents(t, r.body)
	if len(events) != 2 || events[1] != "[DONE]" {
		t.Fatalf("prefill-only stream = %q", events)
	}
	if ch := decode[sglangAnswer](t, []byte(events[0])); ch.MetaInfo.FinishReason == nil || len(ch.OutputIDs) != 0 {
		t.Fatalf("prefill-only chunk = %s", events[0])
	}
}

func TestSGLangGenerateStreaming(t *testing.T) {
	t.Parallel()
	inst := start(t, sglangQuick())
	c := client(t)
	r := post(t, c, inst.URL()+sglangGeneratePath, `{"input_ids":`+idList(9)+`,"rid":"s1","stream":true,"sampling_params":{"max_new_tokens":4}}`)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	events := sseEvents(t, r.body)
	if len(events) != 5 || events[4] != "[DONE]" {
		t.Fatalf("want 4 chunks then [DONE], got %q", events)
	}
	var prev sglangAnswer
	for k, ev := range events[:4] {
		ch := decode[sglangAnswer](t, []byte(ev))
		n := k + 1
		m := ch.MetaInfo
		if m.ID != "s1" || m.Prompt != 9 || m.Completion != n || len(ch.OutputIDs) != n {
			t.Fatalf("chunk %d meta_info %+v with %d IDs", k, m, len(ch.OutputIDs))
		}
		// Cumulative: each chunk extends the previous one.
		if !strings.HasPrefix(ch.Text, prev.Text) || len(ch.Text) <= len(prev.Text) ||
			len(prev.OutputIDs) > 0 && ch.OutputIDs[n-2] != prev.OutputIDs[n-2] {
			t.Fatalf("chunk %d %q does not extend %q", k, ch.Text, prev.Text)
		}
		if (m.FinishReason != nil) != (n == 4) || n == 4 && (m.FinishReason.Type != "length" || m.FinishReason.Length != 4) {
			t.Fatalf("chunk %d finish_reason %+v", k, m.FinishReason)
		}
		checkOutput(t, ch)
		prev = ch
	}
}

// TestSGLangGeneratePrefixCache: the engine sees the prompt's tokens, so a
// repeat hits the prefix cache, as does the same tokens sent as text.
func TestSGLangGeneratePrefixCache(t *testing.T) {
	t.Parallel()
	inst := start(t, sglangQuick())
	c := client(t)
	body := `{"input_ids":` + idList(64) + `,"sampling_params":{"max_new_tokens":1}}`
	if got := postSGLang(t, c, inst, body).MetaInfo.Cached; got != 0 {
		t.Fatalf("first request cached %d tokens", got)
	}
	if got := postSGLang(t, c, inst, body).MetaInfo.Cached; got != 48 {
		t.Fatalf("repeat cached %d tokens, want 48 (the full blocks before the last token)", got)
	}
	text := strings.Repeat("You are a careful assistant that answers routing questions briefly. ", 10)
	textBody := `{"text":"` + text + `","sampling_params":{"max_new_tokens":1}}`
	postSGLang(t, c, inst, textBody)
	if got := postSGLang(t, c, inst, textBody).MetaInfo; got.Cached < got.Prompt-16 || got.Cached == 0 {
		t.Fatalf("repeated text prompt: %+v", got)
	}
}

func TestSGLangGenerateErrors(t *testing.T) {
	t.Parallel()
	inst := start(t, sglangQuick())
	c := client(t)
	sp := `"sampling_params":{"max_new_tokens":2}`
	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"malformed json", `{"input_ids":[1,`, 400, "malformed JSON"},
		{"neither prompt field", `{` + sp + `}`, 400, "Either text or input_ids should be provided."},
		{"null prompt fields", `{"text":null,"input_ids":null}`, 400, "Either text or input_ids should be provided."},
		{"both prompt fields", `{"text":"hi","input_ids":[1]}`, 400, "Either text or input_ids should be provided."},
		{"input_embeds", `{"input_embeds":[[0.1]]}`, 400, "input_embeds is not supported"},
		{"batch text", `{"text":["a","b"]}`, 400, "batch requests are not supported by the simulator"},
		{"batch input_ids", `{"input_ids":[[1],[2]]}`, 400, "batch requests are not supported by the simulator"},
		{"text not a string", `{"text":3}`, 400, "text: must be a string"},
		{"empty text", `{"text":""}`, 400, "text must not be empty"},
		{"empty input_ids", `{"input_ids":[]}`, 400, "input_ids must not be empty"},
		{"negative id", `{"input_ids":[1,-2]}`, 400, "input_ids[1]: token ID -2 out of range"},
		{"string in input_ids", `{"input_ids":[1,"two"]}`, 400, `input_ids[1]: must be an integer, got "two"`},
		{"input_ids not a list", `{"input_ids":"1 2"}`, 400, "input_ids: must be a list of integers"},
		{"sampling_params not an object", `{"input_ids":[1],"sampling_params":[]}`, 400, "sampling_params: must be an object"},
		{"max_new_tokens a string", `{"input_ids":[1],"sampling_params":{"max_new_tokens":"2"}}`, 400, "sampling_params.max_new_tokens: must be an integer"},
		{"negative max_new_tokens", `{"input_ids":[1],"sampling_params":{"max_new_tokens":-1}}`, 400, "must be non-negative"},
		{"stream not a bool", `{"input_ids":[1],"stream":"yes"}`, 400, "stream: must be a boolean"},
		{"rid not a string", `{"input_ids":[1],"rid":7}`, 400, "rid: must be a string"},
		{"unknown lora_path", `{"input_ids":[1],"lora_path":"nope"}`, 404, `LoRA adapter "nope" is not loaded`},
		{"too long", `{"input_ids":[1],"sampling_params":{"max_new_tokens":1000000}}`, 400, "request too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+sglangGeneratePath, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			e := decode[wireSGLangError](t, r.body)
			if !strings.Contains(e.Error.Message, tc.want) {
				t.Fatalf("error body = %s; want a message containing %q", r.body, tc.want)
			}
		})
	}
	if m := inst.EngineMetrics(); m.Waiting+m.Running != 0 {
		t.Errorf("rejected requests left work in the engine: %+v", m)
	}
}

// TestSGLangGenerateFaults: the completions faults apply to this API too.
func TestSGLangGenerateFaults(t *testing.T) {
	t.Parallel()
	cfg := sglangQuick()
	cfg.Faults.DieAfterTokens = 3
	inst := start(t, cfg)
	c := client(t)
	requireDiesAfterThreeChunks(t, c, inst.URL()+sglangGeneratePath, `{"input_ids":[1,2],"sampling_params":{"max_new_tokens":10},"stream":true}`)
	if err := inst.SetFaults(Faults{CompletionsStatus: http.StatusServiceUnavailable}); err != nil {
		t.Fatal(err)
	}
	r := post(t, c, inst.URL()+sglangGeneratePath, `{"input_ids":[1]}`)
	if e := decode[wireSGLangError](t, r.body); r.status != http.StatusServiceUnavailable || e.Error.Message != "simulated failure" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}
