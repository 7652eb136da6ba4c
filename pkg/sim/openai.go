package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/openepp/openepp/pkg/sim/engine"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 32 << 20

// apiError is an OpenAI-style error answer.
type apiError struct {
	status int
	typ    string
	msg    string
	param  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "BadRequestError", msg: fmt.Sprintf(format, args...)}
}

// genRequest is a parsed completions or chat request.
type genRequest struct {
	chat         bool
	model        string // as requested; echoed in responses
	lora         string
	cacheSalt    string // "" for none
	prompts      [][]uint32
	maxTokens    int
	stream       bool
	includeUsage bool
	kv           kvTransfer
	priority     int // the engine's: lower runs first
}

// wireRequest holds the fields the simulator reads; others are ignored, as
// vLLM ignores sampling parameters it does not need here.
type wireRequest struct {
	Model               string          `json:"model"`
	Prompt              json.RawMessage `json:"prompt"`
	Messages            json.RawMessage `json:"messages"`
	Tools               json.RawMessage `json:"tools"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	KVTransferParams json.RawMessage `json:"kv_transfer_params"`
	CacheSalt        json.RawMessage `json:"cache_salt"` // raw, to answer a wrong type as vLLM does
	Priority         json.RawMessage `json:"priority"`
	chatTemplate
}

// chatTemplate holds the chat-template switches of vLLM's chat requests
// (chat completions and /tokenize's chat form); the zero value is vLLM's
// default: end with the assistant's turn.
type chatTemplate struct {
	AddGenerationPrompt  *bool `json:"add_generation_prompt"` // nil means true
	ContinueFinalMessage bool  `json:"continue_final_message"`
}

// decodeBody reads a JSON body of at most maxBodyBytes into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("request body larger than %d bytes", maxBodyBytes)
		}
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	return nil
}

// parseGenerate decodes and validates a completions (chat=false) or chat
// completions request.
func (i *Instance) parseGenerate(w http.ResponseWriter, r *http.Request, chat bool) (genRequest, *apiError) {
	var wr wireRequest
	if err := decodeBody(w, r, &wr); err != nil {
		return genRequest{}, badRequest("%v", err)
	}
	g := genRequest{chat: chat, model: wr.Model, stream: wr.Stream, maxTokens: i.cfg.DefaultMaxTokens}
	if g.model == "" {
		g.model = i.cfg.ServedModelNames[0]
	}
	lora, ok := i.models.resolve(g.model)
	if !ok {
		return genRequest{}, modelNotFound(g.model)
	}
	g.lora = lora
	if wr.StreamOptions != nil {
		if !wr.Stream {
			return genRequest{}, badRequest("stream_options is only allowed when stream is true")
		}
		g.includeUsage = wr.StreamOptions.IncludeUsage
	}
	limit := wr.MaxTokens
	if chat && wr.MaxCompletionTokens != nil {
		limit = wr.MaxCompletionTokens
	}
	if limit != nil {
		if *limit < 1 {
			return genRequest{}, badRequest("max_tokens must be at least 1, got %d", *limit)
		}
		g.maxTokens = *limit
	}
	salt, aerr := parseCacheSalt(wr.CacheSalt)
	if aerr != nil {
		return genRequest{}, aerr
	}
	g.cacheSalt = salt
	var err error
	if g.priority, err = i.requestPriority(wr.Priority); err != nil {
		return genRequest{}, priorityError(err)
	}
	if chat {
		g.prompts, err = parseMessages(wr.Messages, wr.Tools, wr.chatTemplate)
	} else {
		g.prompts, err = parsePrompt(wr.Prompt)
	}
	if err != nil {
		return genRequest{}, badRequest("%v", err)
	}
	if aerr = applyKVTransfer(&g, wr.KVTransferParams); aerr != nil {
		return genRequest{}, aerr
	}
	return g, nil
}

// parseCacheSalt reads cache_salt, which keeps a request's prefix-cache
// blocks apart from those of requests with another salt or none. Absent or
// null is no salt; anything but a non-empty string is refused, as vLLM
// refuses it, rather than silently sharing the cache.
func parseCacheSalt(raw json.RawMessage) (string, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var salt string
	if json.Unmarshal(raw, &salt) != nil || salt == "" {
		aerr := badRequest("Parameter 'cache_salt' must be a non-empty string if provided.")
		aerr.param = "cache_salt"
		return "", aerr
	}
	return salt, nil
}

// priorityError is the OpenAI-shaped answer to a malformed priority.
func priorityError(err error) *apiError {
	aerr := badRequest("%v", err)
	aerr.param = "priority"
	return aerr
}

// modelNotFound is vLLM's answer to a request for a model it does not serve.
func modelNotFound(name string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: "NotFoundError", param: "model",
		msg: fmt.Sprintf("The model `%s` does not exist.", name)}
}

// parsePrompt accepts what vLLM's completions API accepts: a string, a list
// of strings, a list of token IDs, or a list of token-ID lists.
func parsePrompt(raw json.RawMessage) ([][]uint32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, errors.New("prompt is required")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, errors.New("prompt must not be empty")
		}
		return [][]uint32{tokenize.Append(nil, one)}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		if len(many) == 0 {
			return nil, errors.New("prompt list must not be empty")
		}
		out := make([][]uint32, len(many))
		for j, s := range many {
			if s == "" {
				return nil, fmt.Errorf("prompt[%d] must not be empty", j)
			}
			out[j] = tokenize.Append(nil, s)
		}
		return out, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		toks, err := tokenIDs(ids, "prompt")
		return [][]uint32{toks}, err
	}
	var lists [][]int64
	if json.Unmarshal(raw, &lists) == nil && len(lists) > 0 {
		out := make([][]uint32, len(lists))
		for j, l := range lists {
			var err error
			if out[j], err = tokenIDs(l, fmt.Sprintf("prompt[%d]", j)); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, errors.New("prompt must be a string, a list of strings, or token IDs")
}

func tokenIDs(ids []int64, field string) ([]uint32, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s must not be empty", field)
	}
	out := make([]uint32, len(ids))
	for j, id := range ids {
		if id < 0 || id > math.MaxUint32 {
			return nil, fmt.Errorf("%s[%d]: token ID %d out of range", field, j, id)
		}
		out[j] = uint32(id)
	}
	return out, nil
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type wirePart struct {
	Type string `json:"type"`
	Text string `json:"text"`
	wireMediaParts
}

// parseMessages renders chat messages (see renderChat) and tokenizes the
// result.
func parseMessages(raw, tools json.RawMessage, tmpl chatTemplate) ([][]uint32, error) {
	prompt, err := renderChat(raw, tools, tmpl)
	if err != nil {
		return nil, err
	}
	return [][]uint32{prompt.tokens()}, nil
}

// renderChat renders chat messages through a ChatML-like template. Each
// turn renders the same way wherever it sits, so a conversation's next
// request shares the previous one's token prefix, as with a real chat
// template. Tools are rendered into the system turn, after a leading system
// (or developer) message's text, else in a system turn of their own first,
// as Qwen's and Hermes' templates place them. The text ends with the
// assistant's turn unless tmpl says otherwise; continue_final_message
// leaves the last message open instead, for the model to extend. Media
// parts render as their items' placeholders, where they stand.
func renderChat(raw, tools json.RawMessage, tmpl chatTemplate) (*promptText, error) {
	var msgs []wireMessage
	if err := json.Unmarshal(raw, &msgs); err != nil || len(msgs) == 0 {
		return nil, errors.New("messages must be a non-empty list of {role, content}")
	}
	addPrompt := tmpl.AddGenerationPrompt == nil || *tmpl.AddGenerationPrompt
	if addPrompt && tmpl.ContinueFinalMessage {
		return nil, errors.New("continue_final_message and add_generation_prompt cannot both be true")
	}
	var toolLines strings.Builder
	if err := toolsText(&toolLines, tools, openAIToolName, "function.name"); err != nil {
		return nil, err
	}
	b := &promptText{}
	for j, m := range msgs {
		if m.Role == "" {
			return nil, fmt.Errorf("messages[%d].role is required", j)
		}
		content, err := messageContent(m.Content)
		if err != nil {
			return nil, fmt.Errorf("messages[%d].content: %w", j, err)
		}
		if j == 0 && toolLines.Len() > 0 {
			if m.Role == "system" || m.Role == "developer" {
				content.WriteString(toolLines.String())
			} else {
				writeChatTurn(b, "system", textPrompt(strings.TrimPrefix(toolLines.String(), "\n\n")))
			}
		}
		if j == len(msgs)-1 && tmpl.ContinueFinalMessage {
			b.WriteString(chatTurnStart + m.Role + "\n")
			b.writePrompt(content)
			break
		}
		writeChatTurn(b, m.Role, content)
	}
	if addPrompt {
		b.WriteString(chatGenerationPrompt)
	}
	return b, nil
}

// openAIToolName reads an OpenAI tool's function name; only function
// tools exist in the chat API.
func openAIToolName(tool json.RawMessage) (string, error) {
	var t struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(tool, &t); err != nil {
		return "", err
	}
	if t.Type != "function" {
		return "", fmt.Errorf("type must be \"function\", got %q", t.Type)
	}
	return t.Function.Name, nil
}

// The chat template's markers. chatGenerationPrompt ends a rendered chat:
// the assistant's turn.
const (
	chatTurnStart        = "<|im_start|>"
	chatTurnEnd          = "<|im_end|>\n"
	chatGenerationPrompt = chatTurnStart + "assistant\n"
)

// writeChatTurn renders one message of the chat template; the Anthropic
// path uses it too, so both APIs render a conversation alike.
func writeChatTurn(b *promptText, role string, content *promptText) {
	b.WriteString(chatTurnStart + role + "\n")
	b.writePrompt(content)
	b.WriteString(chatTurnEnd)
}

// textPrompt is a prompt of text alone.
func textPrompt(s string) *promptText {
	p := &promptText{}
	p.WriteString(s)
	return p
}

// messageContent accepts a string, null, or a list of text and media
// parts (image_url, video_url, audio_url, input_audio); the text parts are
// concatenated, each item placed where it stands among them.
func messageContent(raw json.RawMessage) (*promptText, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return &promptText{}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return textPrompt(s), nil
	}
	var parts []wirePart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, errors.New("must be a string or a list of content parts")
	}
	b := &promptText{}
	for k, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
			continue
		}
		item, ok, err := chatMedia(p.Type, &p.wireMediaParts)
		switch {
		case !ok:
			return nil, fmt.Errorf("part %d: unsupported type %q", k, p.Type)
		case err != nil:
			return nil, fmt.Errorf("part %d: %w", k, err)
		}
		b.writeItem(item)
	}
	return b, nil
}

// engineError maps a Submit error to the answer vLLM would give.
func engineError(err error) *apiError {
	switch {
	case errors.Is(err, engine.ErrQueueFull):
		return &apiError{status: http.StatusTooManyRequests, typ: "TooManyRequestsError", msg: err.Error()}
	case errors.Is(err, engine.ErrTooLong), errors.Is(err, engine.ErrInvalidRequest):
		return badRequest("%v", err)
	}
	return &apiError{status: http.StatusInternalServerError, typ: "InternalServerError", msg: err.Error()}
}

// modelSet holds the names an instance answers to: base-model aliases and
// LoRA adapters (which /v1/load_lora_adapter can change at runtime).
type modelSet struct {
	mu     sync.RWMutex
	served []string
	loras  []string
}

func newModelSet(served, loras []string) *modelSet {
	return &modelSet{served: slices.Clone(served), loras: slices.Clone(loras)}
}

// resolve returns the adapter for a requested model name ("" for the base
// model) and whether the name is served.
func (s *modelSet) resolve(name string) (lora string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if slices.Contains(s.served, name) {
		return "", true
	}
	if slices.Contains(s.loras, name) {
		return name, true
	}
	return "", false
}

func (s *modelSet) list() (served, loras []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.served), slices.Clone(s.loras)
}

func (s *modelSet) load(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.served, name) || slices.Contains(s.loras, name) {
		return fmt.Errorf("the lora adapter %q has already been loaded", name)
	}
	s.loras = append(s.loras, name)
	return nil
}

func (s *modelSet) unload(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := slices.Index(s.loras, name)
	if j < 0 {
		return false
	}
	s.loras = slices.Delete(s.loras, j, j+1)
	return true
}
