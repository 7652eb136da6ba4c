package sim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// vLLM's token-in/token-out API (POST /inference/v1/generate), which RL
// frameworks and llm-d's vllmhttp-parser speak: the prompt arrives as token
// IDs and the answer is token IDs, with no text on either side. The prompt
// goes to the engine as a completions token-ID prompt would, so prefix
// caching, KV events, P/D and metrics treat both alike. See doc.go.

// generateTokensPath is where vLLM serves the API.
const generateTokensPath = "/inference/v1/generate"

// wireGenerateTokensRequest holds the fields the simulator reads. Other
// fields (features, and sampling fields but max_tokens) are accepted and
// ignored, as elsewhere; n is ignored too: one choice. priority is read as
// on the completions API.
type wireGenerateTokensRequest struct {
	RequestID      string          `json:"request_id"`
	TokenIDs       json.RawMessage `json:"token_ids"`
	SamplingParams json.RawMessage `json:"sampling_params"`
	Model          string          `json:"model"`
	Stream         bool            `json:"stream"`
	StreamOptions  *struct {
		IncludeUsage         bool `json:"include_usage"`
		ContinuousUsageStats bool `json:"continuous_usage_stats"`
	} `json:"stream_options"`
	KVTransferParams json.RawMessage `json:"kv_transfer_params"`
	CacheSalt        json.RawMessage `json:"cache_salt"`
	Priority         json.RawMessage `json:"priority"`
}

// generateTokensExtras is what the API needs beyond genRequest.
type generateTokensExtras struct {
	requestID  string
	continuous bool // usage on every chunk
}

// handleGenerateTokens serves POST /inference/v1/generate.
func (i *Instance) handleGenerateTokens(w http.ResponseWriter, r *http.Request) {
	g, x, c, ok := startCallWith(i, w, r, i.parseGenerateTokens, writeAPIError)
	if !ok {
		return
	}
	defer i.drv.cancel(c)
	gs := &generateTokensState{responseState: newResponseState(i, g, c), generateTokensExtras: x}
	gs.id = "generate-tokens-" + x.requestID
	if g.stream {
		i.streamGenerateTokens(w, r, gs)
		return
	}
	if i.awaitDone(w, r, gs.responseState, writeAPIError) {
		writeJSON(w, http.StatusOK, gs.final())
	}
}

// parseGenerateTokens decodes and validates a request. As vLLM validates
// the body before it looks the model up, so does this.
func (i *Instance) parseGenerateTokens(w http.ResponseWriter, r *http.Request) (genRequest, generateTokensExtras, *apiError) {
	var wr wireGenerateTokensRequest
	var x generateTokensExtras
	if err := decodeBody(w, r, &wr); err != nil {
		return genRequest{}, x, badRequest("%v", fieldError("", err))
	}
	ids, aerr := parseTokenIDList(wr.TokenIDs)
	if aerr != nil {
		return genRequest{}, x, aerr
	}
	g := genRequest{model: wr.Model, prompts: [][]uint32{ids}, stream: wr.Stream, maxTokens: i.cfg.DefaultMaxTokens}
	if aerr := parseSamplingParams(wr.SamplingParams, &g); aerr != nil {
		return genRequest{}, x, aerr
	}
	// Without stream, stream_options changes nothing; vLLM's generate
	// request does not refuse it as the completions request does.
	if wr.StreamOptions != nil && wr.Stream {
		g.includeUsage = wr.StreamOptions.IncludeUsage
		x.continuous = wr.StreamOptions.ContinuousUsageStats
	}
	if g.cacheSalt, aerr = parseCacheSalt(wr.CacheSalt); aerr != nil {
		return genRequest{}, x, aerr
	}
	var err error
	if g.priority, err = i.requestPriority(wr.Priority); err != nil {
		return genRequest{}, x, priorityError(err)
	}
	if g.model == "" {
		g.model = i.cfg.ServedModelNames[0]
	}
	lora, ok := i.models.resolve(g.model)
	if !ok {
		return genRequest{}, x, modelNotFound(g.model)
	}
	g.lora = lora
	if aerr := applyKVTransfer(&g, wr.KVTransferParams); aerr != nil {
		return genRequest{}, x, aerr
	}
	x.requestID = wr.RequestID
	if x.requestID == "" {
		x.requestID = randomRequestID()
	}
	return g, x, nil
}

// parseTokenIDList reads token_ids, a required non-empty list of token IDs,
// naming the element at fault.
func parseTokenIDList(raw json.RawMessage) ([]uint32, *apiError) {
	bad := func(format string, args ...any) *apiError {
		aerr := badRequest(format, args...)
		aerr.param = "token_ids"
		return aerr
	}
	if isAbsent(raw) {
		return nil, bad("token_ids: field required")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, bad("token_ids: must be a list of integers")
	}
	ids := make([]int64, len(elems))
	for j, e := range elems {
		if err := json.Unmarshal(e, &ids[j]); err != nil {
			return nil, bad("token_ids[%d]: must be an integer, got %s", j, e)
		}
	}
	toks, err := tokenIDs(ids, "token_ids")
	if err != nil {
		return nil, bad("%v", err)
	}
	return toks, nil
}

// parseSamplingParams reads the required sampling_params object; only
// max_tokens matters to the simulator.
func parseSamplingParams(raw json.RawMessage, g *genRequest) *apiError {
	bad := func(format string, args ...any) *apiError {
		aerr := badRequest(format, args...)
		aerr.param = "sampling_params"
		return aerr
	}
	if isAbsent(raw) {
		return bad("sampling_params: field required")
	}
	var sp struct {
		MaxTokens *int `json:"max_tokens"`
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return bad("sampling_params: must be an object")
	}
	if err := json.Unmarshal(raw, &sp); err != nil {
		return bad("%v", fieldError("sampling_params", err))
	}
	if sp.MaxTokens != nil {
		if *sp.MaxTokens < 1 {
			return bad("sampling_params.max_tokens: must be at least 1, got %d", *sp.MaxTokens)
		}
		g.maxTokens = *sp.MaxTokens
	}
	return nil
}

// randomRequestID stands in for an absent request_id, as vLLM makes one:
// 32 random hex digits.
func randomRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}

// generateTokensState builds the answer of a one-prompt call.
type generateTokensState struct {
	*responseState
	generateTokensExtras
}

// Wire types, in vLLM's field order.
type wireGenerateTokensChoice struct {
	Index        int      `json:"index"`
	Logprobs     any      `json:"logprobs"`
	FinishReason *string  `json:"finish_reason"`
	TokenIDs     []uint32 `json:"token_ids"`
}

type wireGenerateTokensResponse struct {
	ID               string                     `json:"id"`
	RequestID        string                     `json:"request_id"`
	Created          int64                      `json:"created"`
	Model            string                     `json:"model"`
	Choices          []wireGenerateTokensChoice `json:"choices"`
	Usage            *wireUsage                 `json:"usage"`
	PromptLogprobs   any                        `json:"prompt_logprobs"`
	KVTransferParams *wireKVAnswer              `json:"kv_transfer_params"`
}

type wireGenerateTokensChunk struct {
	RequestID string                     `json:"request_id"`
	Choices   []wireGenerateTokensChoice `json:"choices"`
	Usage     *wireUsage                 `json:"usage,omitempty"`
}

// tokenID is the ID of generated token k (1-based) of choice j: the
// simulator tokenizer's ID for the word the completions API renders there
// (the word's first piece when the tokenizer splits it). So the IDs are
// deterministic per seed, request and position, as the text is, and never
// fall in the placeholder range: a client feeding them back in its next
// prompt, as RL rollouts do, is not taken to send media.
func (gs *generateTokensState) tokenID(j, k int) uint32 {
	var buf [2]uint32
	return tokenize.Append(buf[:0], gs.text(j, k, k))[0]
}

// final is the non-streaming answer.
func (gs *generateTokensState) final() wireGenerateTokensResponse {
	choices := make([]wireGenerateTokensChoice, len(gs.seen))
	for j, p := range gs.seen {
		ids := make([]uint32, p.tokens)
		for k := range ids {
			ids[k] = gs.tokenID(j, k+1)
		}
		// A finished choice short of max_tokens stopped by itself.
		finish := gs.finishReason(p.tokens)
		if finish == nil {
			stop := "stop"
			finish = &stop
		}
		choices[j] = wireGenerateTokensChoice{Index: j, FinishReason: finish, TokenIDs: ids}
	}
	return wireGenerateTokensResponse{
		ID: gs.id, RequestID: gs.requestID, Created: gs.created, Model: gs.g.model,
		Choices: choices, Usage: gs.usage(), KVTransferParams: gs.kv,
	}
}

// sentUsage is the usage of the tokens streamed so far, for
// continuous_usage_stats.
func (gs *generateTokensState) sentUsage() *wireUsage {
	u := gs.usage()
	u.CompletionTokens = 0
	for _, n := range gs.sent {
		u.CompletionTokens += n
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// streamGenerateTokens answers with server-sent events: one chunk per
// token (the last carrying the finish reason), the usage chunk if asked
// for, then [DONE].
func (i *Instance) streamGenerateTokens(w http.ResponseWriter, r *http.Request, gs *generateTokensState) {
	rc := startSSE(w)
	emit := func(j int) bool {
		n := gs.sent[j]
		ch := wireGenerateTokensChunk{RequestID: gs.requestID, Choices: []wireGenerateTokensChoice{
			{Index: j, FinishReason: gs.finishReason(n), TokenIDs: []uint32{gs.tokenID(j, n)}},
		}}
		if gs.continuous {
			ch.Usage = gs.sentUsage()
		}
		return writeEvent(w, ch)
	}
	if !i.pumpTokens(w, r, rc, gs.responseState, nil, emit) {
		return
	}
	if gs.g.includeUsage && !writeEvent(w, wireGenerateTokensChunk{RequestID: gs.requestID,
		Choices: []wireGenerateTokensChoice{}, Usage: gs.usage()}) {
		return
	}
	_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}
