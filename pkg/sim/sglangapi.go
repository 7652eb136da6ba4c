package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// SGLang's native generation API (POST /generate): one prompt as text or
// token IDs in, cumulative text and IDs out. The prompt goes to the engine
// as a completions prompt would, so prefix caching and metrics treat both
// alike. Served by every instance, whatever its MetricsEngine. See doc.go.

// sglangGeneratePath is where SGLang serves the API.
const sglangGeneratePath = "/generate"

// sglangDefaultMaxNewTokens is SGLang's SamplingParams default.
const sglangDefaultMaxNewTokens = 128

// wireSGLangRequest holds the fields the simulator reads. Others
// (return_logprob, image_data, session_params, bootstrap_*, model, ...)
// are accepted and ignored. priority is read as on the other APIs, so
// higher is more urgent only on an instance impersonating SGLang.
type wireSGLangRequest struct {
	Text           json.RawMessage `json:"text"`
	InputIDs       json.RawMessage `json:"input_ids"`
	InputEmbeds    json.RawMessage `json:"input_embeds"`
	SamplingParams json.RawMessage `json:"sampling_params"`
	Stream         bool            `json:"stream"`
	RID            json.RawMessage `json:"rid"`
	LoRAPath       json.RawMessage `json:"lora_path"`
	Priority       json.RawMessage `json:"priority"`
}

// sglangExtras is what the API needs beyond genRequest.
type sglangExtras struct {
	rid    string
	maxNew int // max_new_tokens as asked; the engine is given at least 1
}

// handleSGLangGenerate serves POST /generate.
func (i *Instance) handleSGLangGenerate(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	g, x, c, ok := startCallWith(i, w, r, i.parseSGLangGenerate, writeSGLangError)
	if !ok {
		return
	}
	defer i.drv.cancel(c)
	rs := newResponseState(i, g, c)
	s := &sglangState{responseState: rs, sglangExtras: x, began: began,
		ids: &generateTokensState{responseState: rs}, out: []uint32{}}
	if g.stream {
		i.streamSGLang(w, r, s)
		return
	}
	if i.awaitDone(w, r, rs, writeSGLangError) {
		writeJSON(w, http.StatusOK, s.final())
	}
}

// parseSGLangGenerate decodes and validates a request.
func (i *Instance) parseSGLangGenerate(w http.ResponseWriter, r *http.Request) (genRequest, sglangExtras, *apiError) {
	var wr wireSGLangRequest
	var x sglangExtras
	if err := decodeBody(w, r, &wr); err != nil {
		return genRequest{}, x, badRequest("%v", fieldError("", err))
	}
	if !isAbsent(wr.InputEmbeds) {
		return genRequest{}, x, badRequest("input_embeds is not supported by the simulator")
	}
	if isAbsent(wr.Text) == isAbsent(wr.InputIDs) {
		return genRequest{}, x, badRequest("Either text or input_ids should be provided.")
	}
	prompt, aerr := parseSGLangPrompt(wr.Text, wr.InputIDs)
	if aerr != nil {
		return genRequest{}, x, aerr
	}
	if x.maxNew, aerr = parseMaxNewTokens(wr.SamplingParams); aerr != nil {
		return genRequest{}, x, aerr
	}
	if x.rid, aerr = optionalString(wr.RID, "rid"); aerr != nil {
		return genRequest{}, x, aerr
	}
	if x.rid == "" {
		x.rid = randomRequestID() // as SGLang: uuid4's 32 hex digits
	}
	priority, err := i.requestPriority(wr.Priority)
	if err != nil {
		return genRequest{}, x, badRequest("%v", err)
	}
	name, aerr := optionalString(wr.LoRAPath, "lora_path")
	if aerr != nil {
		return genRequest{}, x, aerr
	}
	if name == "" {
		name = i.cfg.ServedModelNames[0]
	}
	lora, ok := i.models.resolve(name)
	if !ok {
		// 404, as the OpenAI APIs answer an unknown model.
		return genRequest{}, x, &apiError{status: http.StatusNotFound, typ: "NotFoundError",
			msg: fmt.Sprintf("LoRA adapter %q is not loaded", name)}
	}
	// The engine refuses to generate nothing; max_new_tokens 0 (a prefill
	// only, in SGLang) computes one token and reports none.
	return genRequest{model: name, lora: lora, prompts: [][]uint32{prompt}, stream: wr.Stream,
		maxTokens: max(x.maxNew, 1), priority: priority}, x, nil
}

// parseSGLangPrompt reads the prompt from text or input_ids, of which the
// caller has checked exactly one is present.
func parseSGLangPrompt(text, inputIDs json.RawMessage) ([]uint32, *apiError) {
	batch := badRequest("batch requests are not supported by the simulator")
	if !isAbsent(text) {
		if bytes.HasPrefix(bytes.TrimSpace(text), []byte("[")) {
			return nil, batch
		}
		var s string
		if json.Unmarshal(text, &s) != nil {
			return nil, badRequest("text: must be a string")
		}
		if s == "" {
			return nil, badRequest("text must not be empty")
		}
		return tokenize.Append(nil, s), nil
	}
	var elems []json.RawMessage
	if json.Unmarshal(inputIDs, &elems) != nil {
		return nil, badRequest("input_ids: must be a list of integers")
	}
	ids := make([]int64, len(elems))
	for j, e := range elems {
		if bytes.HasPrefix(bytes.TrimSpace(e), []byte("[")) {
			return nil, batch
		}
		if json.Unmarshal(e, &ids[j]) != nil {
			return nil, badRequest("input_ids[%d]: must be an integer, got %s", j, e)
		}
	}
	toks, err := tokenIDs(ids, "input_ids")
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return toks, nil
}

// parseMaxNewTokens reads sampling_params.max_new_tokens, the only
// sampling field that matters to the simulator.
func parseMaxNewTokens(raw json.RawMessage) (int, *apiError) {
	if isAbsent(raw) {
		return sglangDefaultMaxNewTokens, nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return 0, badRequest("sampling_params: must be an object")
	}
	var sp struct {
		MaxNewTokens *int `json:"max_new_tokens"`
	}
	if err := json.Unmarshal(raw, &sp); err != nil {
		return 0, badRequest("%v", fieldError("sampling_params", err))
	}
	switch {
	case sp.MaxNewTokens == nil:
		return sglangDefaultMaxNewTokens, nil
	case *sp.MaxNewTokens < 0:
		return 0, badRequest("sampling_params.max_new_tokens: must be non-negative, got %d", *sp.MaxNewTokens)
	}
	return *sp.MaxNewTokens, nil
}

// optionalString reads a field that is absent, null or a string.
func optionalString(raw json.RawMessage, field string) (string, *apiError) {
	if isAbsent(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", badRequest("%s: must be a string, got %s", field, raw)
	}
	return s, nil
}

// wireSGLangError is SGLang's error body.
type wireSGLangError struct {
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
}

func writeSGLangError(w http.ResponseWriter, e *apiError) {
	var we wireSGLangError
	we.Error.Message = e.msg
	writeJSON(w, e.status, we)
}

// Answer types, in SGLang's field order.
type wireSGLangFinish struct {
	Type   string `json:"type"`
	Length int    `json:"length"`
}

type wireSGLangMeta struct {
	ID               string            `json:"id"`
	FinishReason     *wireSGLangFinish `json:"finish_reason"`
	PromptTokens     int               `json:"prompt_tokens"`
	CompletionTokens int               `json:"completion_tokens"`
	CachedTokens     int               `json:"cached_tokens"`
	E2ELatency       float64           `json:"e2e_latency"`
}

type wireSGLangOutput struct {
	Text      string         `json:"text"`
	OutputIDs []uint32       `json:"output_ids"`
	MetaInfo  wireSGLangMeta `json:"meta_info"`
}

// sglangState builds the answer of one call, accumulating the output since
// SGLang's stream repeats everything generated so far in each chunk.
type sglangState struct {
	*responseState
	sglangExtras
	began   time.Time
	ids     *generateTokensState // for tokenID, so IDs match the text
	outText strings.Builder
	out     []uint32
}

// grow appends generated tokens up to n (1-based) to the output.
func (s *sglangState) grow(n int) {
	for k := len(s.out) + 1; k <= min(n, s.maxNew); k++ {
		s.outText.WriteString(s.text(0, k, k)) // " word" after the first
		s.out = append(s.out, s.ids.tokenID(0, k))
	}
}

// output is the answer with the output so far; finish_reason is set once
// the whole max_new_tokens is out (the simulator never stops early).
func (s *sglangState) output() wireSGLangOutput {
	p := s.seen[0]
	meta := wireSGLangMeta{ID: s.rid, PromptTokens: p.prompt, CompletionTokens: len(s.out),
		CachedTokens: p.cached, E2ELatency: time.Since(s.began).Seconds()}
	if len(s.out) == s.maxNew {
		meta.FinishReason = &wireSGLangFinish{Type: "length", Length: s.maxNew}
	}
	return wireSGLangOutput{Text: s.outText.String(), OutputIDs: s.out, MetaInfo: meta}
}

// final is the non-streaming answer.
func (s *sglangState) final() wireSGLangOutput {
	s.grow(s.seen[0].tokens)
	return s.output()
}

// streamSGLang answers with server-sent events: one cumulative chunk per
// token, the last carrying the finish reason, then [DONE].
func (i *Instance) streamSGLang(w http.ResponseWriter, r *http.Request, s *sglangState) {
	rc := startSSE(w)
	emit := func(int) bool {
		if s.sent[0] > s.maxNew {
			return true // the unreported token of max_new_tokens 0
		}
		s.grow(s.sent[0])
		return writeEvent(w, s.output())
	}
	if !i.pumpTokens(w, r, rc, s.responseState, nil, emit) {
		return
	}
	// With nothing to report, one chunk still carries the counts and finish.
	if s.maxNew == 0 && !writeEvent(w, s.output()) {
		return
	}
	_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}
