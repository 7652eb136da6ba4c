package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// generateTokensAnswer is a /inference/v1/generate answer or chunk.
type generateTokensAnswer struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
	Created   int64  `json:"created"`
	Model     string `json:"model"`
	Choices   []struct {
		Index    int             `json:"index"`
		Logprobs json.RawMessage `json:"logprobs"`
		Finish   *string         `json:"finish_reason"`
		TokenIDs []uint32        `json:"token_ids"`
	} `json:"choices"`
	Usage *usageAnswer `json:"usage"`
	KV    *struct {
		DoRemotePrefill bool   `json:"do_remote_prefill"`
		RemoteEngineID  string `json:"remote_engine_id"`
	} `json:"kv_transfer_params"`
}

// idList is n token IDs as a JSON list.
func idList(n int) string {
	ids := make([]string, n)
	for j := range ids {
		ids[j] = fmt.Sprint(1000 + j)
	}
	return "[" + strings.Join(ids, ",") + "]"
}

func postGenerateTokens(t *testing.T, c *http.Client, inst *Instance, body string) generateTokensAnswer {
	t.Helper()
	r := post(t, c, inst.URL()+generateTokensPath, body)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return decode[generateTokensAnswer](t, r.body)
}

func TestGenerateTokensNonStreaming(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	body := `{"request_id":"rl-42","token_ids":` + idList(7) + `,"model":"sim-model",` +
		`"sampling_params":{"max_tokens":5,"temperature":1.0,"n":1},"priority":3}`
	r := post(t, c, inst.URL()+generateTokensPath, body)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for _, field := range []string{`"prompt_logprobs":null`, `"kv_transfer_params":null`, `"logprobs":null`} {
		if !strings.Contains(string(r.body), field) {
			t.Errorf("answer lacks %s: %s", field, r.body)
		}
	}
	got := decode[generateTokensAnswer](t, r.body)
	if got.ID != "generate-tokens-rl-42" || got.RequestID != "rl-42" || got.Model != "sim-model" || got.Created == 0 {
		t.Errorf("envelope = id %q request_id %q model %q created %d", got.ID, got.RequestID, got.Model, got.Created)
	}
	u := got.Usage
	if u == nil || u.Prompt != 7 || u.Completion != 5 || u.Total != 12 {
		t.Fatalf("usage = %+v, want 7 prompt and 5 completion tokens", u)
	}
	if len(got.Choices) != 1 {
		t.Fatalf("choices = %+v", got.Choices)
	}
	ch := got.Choices[0]
	if ch.Index != 0 || len(ch.TokenIDs) != u.Completion || ch.Finish == nil || *ch.Finish != "length" {
		t.Fatalf("choice = %+v, want %d token IDs and finish length", ch, u.Completion)
	}
	for _, id := range ch.TokenIDs {
		if tokenize.Reserved(id) {
			t.Errorf("generated ID %d lies in the placeholder range", id)
		}
	}
	// The IDs are deterministic: the same request with the same seed
	// gets the same IDs from a second instance.
	again := postGenerateTokens(t, client(t), start(t, quick()), body)
	if fmt.Sprint(again.Choices[0].TokenIDs) != fmt.Sprint(ch.TokenIDs) {
		t.Errorf("IDs %v then %v for the same request", ch.TokenIDs, again.Choices[0].TokenIDs)
	}
}

func TestGenerateTokensDefaults(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.LoRAs = []string{"sql-lora"}
	cfg.Capacity.MaxLoRAs = 1
	inst := start(t, cfg)
	c := client(t)
	// No model, no max_tokens, no request_id.
	got := postGenerateTokens(t, c, inst, `{"token_ids":[1,2,3],"sampling_params":{}}`)
	if got.Model != "sim-model" || got.Usage.Completion != 16 || len(got.Choices[0].TokenIDs) != 16 {
		t.Errorf("model %q, %d tokens; want sim-model and the default 16", got.Model, got.Usage.Completion)
	}
	if id, ok := strings.CutPrefix(got.ID, "generate-tokens-"); !ok || id != got.RequestID || len(id) != 32 {
		t.Errorf("id %q request_id %q; want a random 32-digit request_id in the id", got.ID, got.RequestID)
	}
	// A loaded adapter resolves as in the OpenAI APIs.
	if got := postGenerateTokens(t, c, inst, `{"model":"sql-lora","token_ids":[1],"sampling_params":{"max_tokens":2}}`); got.Model != "sql-lora" {
		t.Errorf("model = %q", got.Model)
	}
}

func TestGenerateTokensStreaming(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	for _, tc := range []struct {
		name             string
		opts             string
		usage, continued bool
	}{
		{name: "plain"},
		{name: "include_usage", opts: `{"include_usage":true}`, usage: true},
		{name: "continuous", opts: `{"include_usage":true,"continuous_usage_stats":true}`, usage: true, continued: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"request_id":"s1","token_ids":` + idList(9) + `,"sampling_params":{"max_tokens":4},"stream":true`
			if tc.opts != "" {
				body += `,"stream_options":` + tc.opts
			}
			r := post(t, c, inst.URL()+generateTokensPath, body+"}")
			if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d, type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			events := sseEvents(t, r.body)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("stream does not end with [DONE]: %q", events)
			}
			var ids []uint32
			var last generateTokensAnswer
			for k, ev := range events[:len(events)-1] {
				ch := decode[generateTokensAnswer](t, []byte(ev))
				if ch.RequestID != "s1" {
					t.Fatalf("chunk %d request_id %q", k, ch.RequestID)
				}
				if len(ch.Choices) == 0 {
					if !tc.usage || k != len(events)-2 {
						t.Fatalf("unexpected usage chunk %d: %s", k, ev)
					}
					last = ch
					continue
				}
				ids = append(ids, ch.Choices[0].TokenIDs...)
				finishes := len(ids) == 4
				if (ch.Choices[0].Finish != nil) != finishes || finishes && *ch.Choices[0].Finish != "length" {
					t.Fatalf("chunk %d finish_reason %v after %d tokens", k, ch.Choices[0].Finish, len(ids))
				}
				if tc.continued != (ch.Usage != nil) || tc.continued && ch.Usage.Completion != len(ids) {
					t.Fatalf("chunk %d usage %+v after %d tokens", k, ch.Usage, len(ids))
				}
			}
			if len(ids) != 4 {
				t.Fatalf("chunks carry %d token IDs, want 4", len(ids))
			}
			if tc.usage && (last.Usage == nil || last.Usage.Prompt != 9 || last.Usage.Completion != 4 || last.Usage.Total != 13) {
				t.Fatalf("usage chunk %+v", last.Usage)
			}
			// The stream carries the IDs the JSON answer would.
			whole := postGenerateTokens(t, c, inst, `{"token_ids":[5],"sampling_params":{"max_tokens":4}}`)
			if len(whole.Choices[0].TokenIDs) != len(ids) {
				t.Fatalf("JSON answer has %d IDs", len(whole.Choices[0].TokenIDs))
			}
		})
	}
}

// TestGenerateTokensPrefixCache: the engine sees the token IDs as the
// prompt, so a repeat hits the prefix cache, and so does a completions
// request tokenizing to the same IDs.
func TestGenerateTokensPrefixCache(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	body := `{"token_ids":` + idList(64) + `,"sampling_params":{"max_tokens":1}}`
	if got := postGenerateTokens(t, c, inst, body).Usage.Details.Cached; got != 0 {
		t.Fatalf("first request cached %d tokens", got)
	}
	second := postGenerateTokens(t, c, inst, body).Usage.Details.Cached
	if second != 48 {
		t.Fatalf("repeat cached %d tokens, want 48 (the full blocks before the last token)", second)
	}
	if hits := inst.EngineMetrics().PrefixHits; hits != uint64(second) {
		t.Fatalf("engine counted %d hit tokens, usage reported %d", hits, second)
	}

	text := strings.Repeat("You are a careful assistant that answers routing questions briefly. ", 10)
	r := post(t, c, inst.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":1}`, text))
	if r.status != http.StatusOK {
		t.Fatalf("completions: %d %s", r.status, r.body)
	}
	ids, err := json.Marshal(tokenize.Append(nil, text))
	if err != nil {
		t.Fatal(err)
	}
	got := postGenerateTokens(t, c, inst, `{"token_ids":`+string(ids)+`,"sampling_params":{"max_tokens":1}}`)
	if n := tokenize.Count(text); got.Usage.Prompt != n || got.Usage.Details.Cached < n-16 {
		t.Fatalf("usage %+v after a completions request of the same %d tokens", got.Usage, n)
	}
}

func TestGenerateTokensPrefillOnly(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	got := postGenerateTokens(t, c, inst, `{"token_ids":`+idList(40)+`,"sampling_params":{"max_tokens":50},"kv_transfer_params":`+prefillParams+`}`)
	if got.Usage.Completion != 1 || got.KV == nil || !got.KV.DoRemotePrefill || got.KV.RemoteEngineID != inst.EngineID() {
		t.Fatalf("prefill answer: usage %+v kv %+v", got.Usage, got.KV)
	}
	if st := inst.KVTransferStats(); st.RemoteDecodeRequests != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestGenerateTokensErrors(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	sp := `"sampling_params":{"max_tokens":2}`
	tests := []struct {
		name, body string
		status     int
		typ, want  string
	}{
		{"malformed json", `{"token_ids":[1,`, 400, "BadRequestError", "malformed JSON"},
		{"not an object", `[1,2]`, 400, "BadRequestError", "request body: must be an object"},
		{"missing token_ids", `{` + sp + `}`, 400, "BadRequestError", "token_ids: field required"},
		{"null token_ids", `{"token_ids":null,` + sp + `}`, 400, "BadRequestError", "token_ids: field required"},
		{"empty token_ids", `{"token_ids":[],` + sp + `}`, 400, "BadRequestError", "token_ids must not be empty"},
		{"token_ids not a list", `{"token_ids":"1 2",` + sp + `}`, 400, "BadRequestError", "token_ids: must be a list of integers"},
		{"string in token_ids", `{"token_ids":[1,"two"],` + sp + `}`, 400, "BadRequestError", `token_ids[1]: must be an integer, got "two"`},
		{"fraction in token_ids", `{"token_ids":[1.5],` + sp + `}`, 400, "BadRequestError", "token_ids[0]: must be an integer"},
		{"negative id", `{"token_ids":[1,-2],` + sp + `}`, 400, "BadRequestError", "token_ids[1]: token ID -2 out of range"},
		{"missing sampling_params", `{"token_ids":[1]}`, 400, "BadRequestError", "sampling_params: field required"},
		{"sampling_params not an object", `{"token_ids":[1],"sampling_params":3}`, 400, "BadRequestError", "sampling_params: must be an object"},
		{"max_tokens a string", `{"token_ids":[1],"sampling_params":{"max_tokens":"2"}}`, 400, "BadRequestError", "sampling_params.max_tokens: must be an integer"},
		{"zero max_tokens", `{"token_ids":[1],"sampling_params":{"max_tokens":0}}`, 400, "BadRequestError", "max_tokens: must be at least 1"},
		{"bad cache_salt", `{"token_ids":[1],` + sp + `,"cache_salt":""}`, 400, "BadRequestError", "cache_salt"},
		{"bad kv_transfer_params", `{"token_ids":[1],` + sp + `,"kv_transfer_params":[]}`, 400, "BadRequestError", "kv_transfer_params must be an object"},
		{"streamed prefill", `{"token_ids":[1],` + sp + `,"stream":true,"kv_transfer_params":` + prefillParams + `}`, 400, "BadRequestError", "do_remote_decode needs stream=false"},
		{"unknown model", `{"model":"nope","token_ids":[1],` + sp + `}`, 404, "NotFoundError", "The model `nope` does not exist."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+generateTokensPath, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			e := decode[wireError](t, r.body)
			if e.Error.Type != tc.typ || e.Error.Code != tc.status || !strings.Contains(e.Error.Message, tc.want) {
				t.Fatalf("error body = %s; want %s containing %q", r.body, tc.typ, tc.want)
			}
		})
	}
	if m := inst.EngineMetrics(); m.Waiting+m.Running != 0 {
		t.Errorf("rejected requests left work in the engine: %+v", m)
	}
}

// TestGenerateTokensFaults: the completions faults apply to this API too.
func TestGenerateTokensFaults(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Faults.DieAfterTokens = 3
	inst := start(t, cfg)
	c := client(t)
	requireDiesAfterThreeChunks(t, c, inst.URL()+generateTokensPath, `{"token_ids":[1,2],"sampling_params":{"max_tokens":10},"stream":true}`)
	if err := inst.SetFaults(Faults{CompletionsStatus: http.StatusServiceUnavailable}); err != nil {
		t.Fatal(err)
	}
	r := post(t, c, inst.URL()+generateTokensPath, `{"token_ids":[1],"sampling_params":{}}`)
	if e := decode[wireError](t, r.body); r.status != http.StatusServiceUnavailable || e.Error.Code != r.status {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}
