package sim

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRenderAgreesWithTokenize: vLLM's render API answers the generation
// request with the same token IDs /tokenize gives for its prompt, in its
// own shapes (an object for chat, a list per prompt for completions).
func TestRenderAgreesWithTokenize(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	chat := `{"model":"sim-model","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"Where is my prefix cached?"}]}`
	rendered := post(t, c, inst.URL()+"/v1/chat/completions/render", chat)
	tokenized := post(t, c, inst.URL()+"/tokenize", chat)
	if rendered.status != http.StatusOK || tokenized.status != http.StatusOK {
		t.Fatalf("render %d %s, tokenize %d %s", rendered.status, rendered.body, tokenized.status, tokenized.body)
	}
	want := decode[tokenizeReply](t, tokenized.body).Tokens
	if diff := cmp.Diff(want, decode[wireRendered](t, rendered.body).TokenIDs); diff != "" {
		t.Errorf("chat render differs from tokenize (-tokenize +render):\n%s", diff)
	}
	image := imageChat("Where is this image cached?", "https://example.com/render.png")
	rendered = post(t, c, inst.URL()+"/v1/chat/completions/render", image)
	tokenized = post(t, c, inst.URL()+"/tokenize", image)
	want = decode[tokenizeReply](t, tokenized.body).Tokens
	if diff := cmp.Diff(want, decode[wireRendered](t, rendered.body).TokenIDs); diff != "" || firstPlaceholder(want) < 0 {
		t.Errorf("image chat render differs from tokenize (-tokenize +render):\n%s", diff)
	}

	list := post(t, c, inst.URL()+"/v1/completions/render", `{"model":"sim-model","prompt":["one two","three"]}`)
	one := post(t, c, inst.URL()+"/tokenize", `{"model":"sim-model","prompt":"one two"}`)
	got := decode[[]wireRendered](t, list.body)
	if list.status != http.StatusOK || len(got) != 2 || !cmp.Equal(got[0].TokenIDs, decode[tokenizeReply](t, one.body).Tokens) {
		t.Errorf("completions render: %d %s", list.status, list.body)
	}
	ids := post(t, c, inst.URL()+"/v1/completions/render", `{"model":"sim-model","prompt":[7,8,9]}`)
	if got := decode[[]wireRendered](t, ids.body); len(got) != 1 || !cmp.Equal(got[0].TokenIDs, []uint32{7, 8, 9}) {
		t.Errorf("token-ID prompt rendered as %s", ids.body)
	}

	for body, path := range map[string]string{
		`{"model":"nope","messages":[{"role":"user","content":"x"}]}`: "/v1/chat/completions/render",
		`{"model":"sim-model"}`:             "/v1/chat/completions/render",
		`{"model":"sim-model"`:              "/v1/completions/render",
		`{"model":"sim-model","prompt":""}`: "/v1/completions/render",
	} {
		if r := post(t, c, inst.URL()+path, body); r.status != http.StatusBadRequest && r.status != http.StatusNotFound {
			t.Errorf("%s %s: status %d, want 400 or 404", path, body, r.status)
		}
	}
}

// TestMessagesRenderIsWhatGenerationCaches: /v1/messages/render gives the
// IDs count_tokens counts for the same Anthropic request.
func TestMessagesRenderIsWhatGenerationCaches(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	body := `{"model":"sim-model","max_tokens":4,"system":"Be brief.","messages":[{"role":"user","content":"Where is my prefix?"}]}`
	r := post(t, c, inst.URL()+"/v1/messages/render", body)
	count := post(t, c, inst.URL()+"/v1/messages/count_tokens", body)
	ids := decode[wireRendered](t, r.body).TokenIDs
	n := decode[struct {
		InputTokens int `json:"input_tokens"`
	}](t, count.body).InputTokens
	if r.status != http.StatusOK || len(ids) == 0 || len(ids) != n {
		t.Errorf("render: %d %s; count_tokens says %d", r.status, r.body, n)
	}
	if bad := post(t, c, inst.URL()+"/v1/messages/render", `{"model":"sim-model"}`); bad.status != http.StatusBadRequest {
		t.Errorf("render without messages: status %d", bad.status)
	}
}

// TestRenderIsWhatGenerationSubmits: for a chat with an image, the render
// API and /tokenize give exactly the IDs generation submitted to the
// engine: the engine holds their blocks and its KV events stored them.
func TestRenderIsWhatGenerationSubmits(t *testing.T) {
	t.Parallel()
	rec := &kvRecorder{}
	cfg := quick()
	cfg.Capacity.BlockSize, cfg.KVEvents = 16, rec
	inst := start(t, cfg)
	c := client(t)
	body := imageChat("Describe the picture, please.", "https://example.com/generation.png")
	gen := post(t, c, inst.URL()+"/v1/chat/completions", body)
	if gen.status != http.StatusOK {
		t.Fatalf("chat: status %d: %s", gen.status, gen.body)
	}
	ids := decode[wireRendered](t, post(t, c, inst.URL()+"/v1/chat/completions/render", body).body).TokenIDs
	if tok := decode[tokenizeReply](t, post(t, c, inst.URL()+"/tokenize", body).body).Tokens; !cmp.Equal(ids, tok) {
		t.Fatalf("render and tokenize differ")
	}
	if prompt := decode[chunk](t, gen.body).Usage.Prompt; prompt != len(ids) || firstPlaceholder(ids) < 0 {
		t.Fatalf("generation prompt has %d tokens, render %d (image at %d)", prompt, len(ids), firstPlaceholder(ids))
	}
	full := len(ids) / 16 * 16
	inst.drv.mu.Lock()
	held := inst.drv.eng.CachedPrefix(ids, "")
	inst.drv.mu.Unlock()
	if held != full {
		t.Errorf("engine holds %d of the %d full-block tokens render returned", held, full)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if diff := cmp.Diff(ids[:full], rec.tokens); diff != "" {
		t.Errorf("KV events stored other tokens (-render +events):\n%s", diff)
	}
}
