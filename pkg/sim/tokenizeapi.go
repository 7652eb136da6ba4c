package sim

import (
	"encoding/json"
	"net/http"
)

// POST /tokenize, as vLLM serves it: a completion prompt or a chat, turned
// into the token IDs the generation APIs would submit to the engine for the
// same request (the chat rendered by renderChat, tools included), so that a
// router hashing these IDs into the engine's blocks finds what the engine
// cached. The simulator's tokenizer has no special tokens and generation
// adds none, so add_special_tokens is accepted and changes nothing. Like
// count_tokens it generates nothing, so the completions fault leaves it
// alone.

// wireTokenizeRequest holds both of vLLM's forms: {prompt} and {messages}.
// Other fields (add_special_tokens, chat_template_kwargs, …) are ignored.
type wireTokenizeRequest struct {
	Model           string          `json:"model"`
	Prompt          json.RawMessage `json:"prompt"`
	Messages        json.RawMessage `json:"messages"`
	Tools           json.RawMessage `json:"tools"`
	ReturnTokenStrs bool            `json:"return_token_strs"`
	chatTemplate
}

// wireTokenizeResponse is vLLM's answer; token_strs is null unless asked
// for. The strings are the text of each token (a leading space included),
// not a byte-level BPE vocabulary's spelling.
type wireTokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []uint32 `json:"tokens"`
	TokenStrs   []string `json:"token_strs"`
}

func (i *Instance) handleTokenize(w http.ResponseWriter, r *http.Request) {
	i.setAnswerHeaders(w, r)
	prompt, strs, aerr := i.parseTokenize(w, r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	resp := wireTokenizeResponse{MaxModelLen: i.maxModelLen(), Tokens: prompt.tokens()}
	if resp.Tokens == nil {
		resp.Tokens = []uint32{}
	}
	resp.Count = len(resp.Tokens)
	if strs {
		resp.TokenStrs = prompt.tokenStrings()
	}
	writeJSON(w, http.StatusOK, resp)
}

// parseTokenize decodes a /tokenize request and returns the prompt to
// tokenize and whether token strings were asked for. The model is checked
// after decoding, as for generation requests.
func (i *Instance) parseTokenize(w http.ResponseWriter, r *http.Request) (prompt *promptText, strs bool, aerr *apiError) {
	var wr wireTokenizeRequest
	if err := decodeBody(w, r, &wr); err != nil {
		return nil, false, badRequest("%v", err)
	}
	model := wr.Model
	if model == "" {
		model = i.cfg.ServedModelNames[0]
	}
	if _, ok := i.models.resolve(model); !ok {
		return nil, false, modelNotFound(model)
	}
	hasPrompt, hasMessages := !isAbsent(wr.Prompt), !isAbsent(wr.Messages)
	switch {
	case hasPrompt && hasMessages:
		return nil, false, badRequest("either prompt or messages is allowed, not both")
	case hasMessages:
		prompt, err := renderChat(wr.Messages, wr.Tools, wr.chatTemplate)
		if err != nil {
			return nil, false, badRequest("%v", err)
		}
		return prompt, wr.ReturnTokenStrs, nil
	case hasPrompt:
		var text string
		if err := json.Unmarshal(wr.Prompt, &text); err != nil {
			return nil, false, badRequest("prompt must be a string")
		}
		return textPrompt(text), wr.ReturnTokenStrs, nil
	}
	return nil, false, badRequest("prompt or messages is required")
}

// maxModelLen is the longest prompt plus output the engine accepts: its
// max model length, or the KV cache's size when that is unset.
func (i *Instance) maxModelLen() int {
	if n := i.cfg.engine.MaxModelLen; n > 0 {
		return n
	}
	return i.cfg.engine.NumBlocks * i.cfg.engine.BlockSize
}

// POST /v1/chat/completions/render and /v1/completions/render, vLLM's render
// API (what llm-d's token-producer calls): the generation request itself,
// answered with the token IDs the server would submit for it, without
// generating. The chat form answers one object, the completions form a list
// with one object per prompt, as vLLM does; only token_ids is filled in.
type wireRendered struct {
	TokenIDs []uint32 `json:"token_ids"`
}

func (i *Instance) handleRender(chat bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		i.setAnswerHeaders(w, r)
		var wr wireTokenizeRequest
		if err := decodeBody(w, r, &wr); err != nil {
			writeAPIError(w, badRequest("%v", err))
			return
		}
		model := wr.Model
		if model == "" {
			model = i.cfg.ServedModelNames[0]
		}
		if _, ok := i.models.resolve(model); !ok {
			writeAPIError(w, modelNotFound(model))
			return
		}
		if chat {
			if isAbsent(wr.Messages) {
				writeAPIError(w, badRequest("messages is required"))
				return
			}
			prompt, err := renderChat(wr.Messages, wr.Tools, wr.chatTemplate)
			if err != nil {
				writeAPIError(w, badRequest("%v", err))
				return
			}
			writeJSON(w, http.StatusOK, wireRendered{TokenIDs: prompt.tokens()})
			return
		}
		prompts, err := parsePrompt(wr.Prompt)
		if err != nil {
			writeAPIError(w, badRequest("%v", err))
			return
		}
		out := make([]wireRendered, len(prompts))
		for j, p := range prompts {
			out[j].TokenIDs = p
		}
		writeJSON(w, http.StatusOK, out)
	}
}
