package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// kvRecorder keeps what an instance's KV events said was stored. The
// driver goroutine calls it while tests read it, hence the lock.
type kvRecorder struct {
	mu       sync.Mutex
	calls    int
	chained  int      // calls with a parent
	tokens   []uint32 // tokens of every BlocksStored call, in order
	loras    []string // adapter of every call
	removals int
}

func (k *kvRecorder) BlocksStored(_ uint64, hasParent bool, _ []uint64, toks []uint32, _ int, lora, _ string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if hasParent {
		k.chained++
	}
	k.tokens = append(k.tokens, toks...)
	k.loras = append(k.loras, lora)
}

func (k *kvRecorder) BlocksRemoved([]uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removals++
}

func (k *kvRecorder) AllBlocksCleared() {}

type tokenizeReply struct {
	Count       int       `json:"count"`
	MaxModelLen int       `json:"max_model_len"`
	Tokens      []uint32  `json:"tokens"`
	TokenStrs   *[]string `json:"token_strs"`
}

// TestTokenizeFindsEngineBlocks: after a chat request, /tokenize of the same
// conversation gives IDs whose blocks the engine holds (as a precise
// prefix-cache router would hash them) and that its KV events reported.
func TestTokenizeFindsEngineBlocks(t *testing.T) {
	t.Parallel()
	const conversation = `"messages":[{"role":"system","content":"You are a terse assistant for routing questions."},` +
		`{"role":"user","content":"Which replica holds my prefix, and why does it matter?"}` +
		`,{"role":"assistant","content":"The one that served"}],` +
		`"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}}]`
	tests := []struct {
		name, model, lora, switches string
	}{
		{name: "base model", model: "sim-model"},
		{name: "adapter", model: "sql-lora", lora: "sql-lora"},
		{name: "continue final message", model: "sim-model",
			switches: `,"add_generation_prompt":false,"continue_final_message":true`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &kvRecorder{}
			cfg := quick()
			cfg.LoRAs, cfg.KVEvents = []string{"sql-lora"}, rec
			inst := start(t, cfg)
			c := client(t)
			body := fmt.Sprintf(`{"model":%q,%s%s`, tc.model, conversation, tc.switches)
			gen := post(t, c, inst.URL()+"/v1/chat/completions", body+`,"max_tokens":1}`)
			if gen.status != http.StatusOK {
				t.Fatalf("chat: status %d: %s", gen.status, gen.body)
			}
			r := post(t, c, inst.URL()+"/tokenize", body+`}`)
			if r.status != http.StatusOK {
				t.Fatalf("tokenize: status %d: %s", r.status, r.body)
			}
			got := decode[tokenizeReply](t, r.body)
			prompt := decode[chunk](t, gen.body).Usage.Prompt
			if got.Count != len(got.Tokens) || got.Count != prompt || got.MaxModelLen != 32768 || got.TokenStrs != nil {
				t.Fatalf("tokenize = count %d, %d tokens, max_model_len %d, token_strs %v; chat prompt had %d tokens",
					got.Count, len(got.Tokens), got.MaxModelLen, got.TokenStrs, prompt)
			}
			bs := inst.EngineConfig().BlockSize
			full := len(got.Tokens) / bs * bs
			if full < 2*bs {
				t.Fatalf("prompt of %d tokens is too short to test", len(got.Tokens))
			}
			inst.drv.mu.Lock()
			held := inst.drv.eng.CachedPrefix(got.Tokens, tc.lora)
			inst.drv.mu.Unlock()
			if held != full {
				t.Errorf("engine holds %d of the %d full-block tokens /tokenize returned", held, full)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if diff := cmp.Diff(got.Tokens[:full], rec.tokens); diff != "" {
				t.Errorf("KV events stored other tokens (-tokenize +events):\n%s", diff)
			}
			if rec.chained != 0 || rec.removals != 0 || rec.loras[0] != tc.lora {
				t.Errorf("events: %d of %d stores chained, %d removals, adapter %q; want 0, 0, %q",
					rec.chained, rec.calls, rec.removals, rec.loras[0], tc.lora)
			}
		})
	}
}

func TestTokenizeForms(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.ServedModelNames = []string{"base", "alias"}
	inst := start(t, cfg)
	c := client(t)
	const turn = "<|im_start|>user\nhi there<|im_end|>\n"
	tests := []struct {
		name    string
		body    string
		text    string // tokenized text expected
		strs    bool
		status  int
		errPart string
	}{
		{name: "prompt", body: `{"model":"alias","prompt":"Hello, world 12345","add_special_tokens":true}`,
			text: "Hello, world 12345"},
		{name: "default model and token strings", body: `{"prompt":"Hello, world","return_token_strs":true}`,
			text: "Hello, world", strs: true},
		{name: "empty prompt", body: `{"prompt":""}`, text: ""},
		{name: "chat", body: `{"messages":[{"role":"user","content":"hi there"}],"add_special_tokens":false}`,
			text: turn + "<|im_start|>assistant\n"},
		{name: "chat without generation prompt", body: `{"messages":[{"role":"user","content":"hi there"}],"add_generation_prompt":false}`,
			text: turn},
		{name: "unknown model", body: `{"model":"nope","prompt":"x"}`, status: 404, errPart: "`nope` does not exist"},
		{name: "malformed JSON", body: `{"prompt":`, status: 400, errPart: "malformed JSON"},
		{name: "prompt and messages", body: `{"prompt":"x","messages":[{"role":"user","content":"x"}]}`,
			status: 400, errPart: "not both"},
		{name: "neither", body: `{"model":"base"}`, status: 400, errPart: "prompt or messages is required"},
		{name: "token ID prompt", body: `{"prompt":[1,2]}`, status: 400, errPart: "prompt must be a string"},
		{name: "continue with generation prompt", status: 400, errPart: "cannot both be true",
			body: `{"messages":[{"role":"user","content":"x"}],"continue_final_message":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+"/tokenize", tc.body)
			if tc.status != 0 {
				if r.status != tc.status || !strings.Contains(string(r.body), tc.errPart) {
					t.Fatalf("status %d body %s; want %d mentioning %q", r.status, r.body, tc.status, tc.errPart)
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			want := tokenizeReply{Count: tokenize.Count(tc.text), MaxModelLen: 32768, Tokens: tokenize.Append([]uint32{}, tc.text)}
			if tc.strs {
				strs := tokenize.Split(tc.text)
				want.TokenStrs = &strs
			}
			if diff := cmp.Diff(want, decode[tokenizeReply](t, r.body)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(r.body, &raw); err != nil || raw["token_strs"] == nil {
				t.Errorf("reply %s lacks token_strs", r.body)
			}
		})
	}
}
