// Package request parses inference request bodies (OpenAI completions, chat
// completions, responses, embeddings, conversations; Anthropic messages;
// vLLM's token-in generate) and
// the token usage reported in responses, doing as little work per byte as
// correctness allows: the body is validated once, then only the few small
// fields the EPP needs are decoded; the prompt is kept as a slice of the
// original bytes where the API puts it in one member.
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// API is the inference API a request targets, chosen by its path.
type API int

// The APIs the EPP understands. Other is any path it does not: such requests
// are routed on load alone, without prompt-aware scoring.
const (
	Other API = iota
	Completions
	ChatCompletions
	Responses
	Embeddings
	Conversations
	// Messages is Anthropic's Messages API (/v1/messages), which vLLM and
	// SGLang serve beside the OpenAI ones.
	Messages
	// Generate is vLLM's token-in API (GeneratePath): the prompt is token
	// IDs and the model is optional.
	Generate
	// SGLangGenerate is SGLang's native API (/generate): the prompt is
	// "text" or "input_ids", and there is no model member.
	SGLangGenerate
)

var apiNames = [...]string{"other", "completions", "chat-completions", "responses", "embeddings", "conversations", "messages", "generate", "sglang-generate"}

func (a API) String() string {
	if int(a) < len(apiNames) {
		return apiNames[a]
	}
	return fmt.Sprintf("api(%d)", int(a))
}

// promptField is the body member carrying the prompt for each API.
var promptField = [...]string{Other: "", Completions: "prompt", ChatCompletions: "messages", Responses: "input", Embeddings: "input", Conversations: "items", Messages: "messages", Generate: "token_ids", SGLangGenerate: "text"}

// APISet is a set of APIs.
type APISet uint32

// SetOf returns the set holding apis.
func SetOf(apis ...API) APISet {
	var s APISet
	for _, a := range apis {
		s |= 1 << a
	}
	return s
}

// Has reports whether a is in the set.
func (s APISet) Has(a API) bool { return s&(1<<a) != 0 }

// The API families a parser plugin covers.
var (
	OpenAIAPIs    = SetOf(Completions, ChatCompletions, Responses, Embeddings, Conversations)
	AnthropicAPIs = SetOf(Messages)
	GenerateAPIs  = SetOf(Generate)
	SGLangAPIs    = SetOf(SGLangGenerate)
	AllAPIs       = OpenAIAPIs | AnthropicAPIs | GenerateAPIs | SGLangAPIs
)

// IsAnthropic reports whether the API speaks Anthropic's wire format
// (request, usage and error shapes) rather than OpenAI's.
func (a API) IsAnthropic() bool { return a == Messages }

// APIForPath maps a request path (query string ignored) to its API by
// suffix, so "/v1/chat/completions" and "/openai/v1/chat/completions" agree.
func APIForPath(path string) API {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimRight(path, "/")
	switch {
	case strings.HasSuffix(path, GeneratePath):
		return Generate
	case path == "/generate":
		// Exactly SGLang's path: Triton's generate extension
		// (/v2/models/{model}/generate) and gateway prefixes are not SGLang.
		return SGLangGenerate
	case strings.HasSuffix(path, "/chat/completions"):
		return ChatCompletions
	case strings.HasSuffix(path, "/completions"):
		return Completions
	case strings.HasSuffix(path, "/responses"):
		return Responses
	case strings.HasSuffix(path, "/embeddings"):
		return Embeddings
	case strings.HasSuffix(path, "/conversations"):
		return Conversations
	case strings.HasSuffix(path, "/v1/messages"):
		// Not any ".../messages": OpenAI's Assistants API posts to
		// /v1/threads/{id}/messages, which is not a generation request.
		return Messages
	}
	return Other
}

// Errors returned by Parse; each is wrapped with detail about what is wrong.
var (
	ErrMalformed     = errors.New("malformed request body")
	ErrMissingModel  = errors.New("model not found in request body")
	ErrMissingPrompt = errors.New("prompt not found in request body")
)

// Body is what the EPP needs from a request body.
type Body struct {
	API       API
	Model     string
	Stream    bool
	CacheSalt string
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage bool
	// MaxTokens is max_tokens / max_completion_tokens / max_output_tokens,
	// 0 when absent.
	MaxTokens int
	// Prompt is the raw JSON of the field carrying the prompt ("prompt",
	// "messages", "input" or "items"); it aliases Raw and is what prefix
	// matching hashes, so equal prompt prefixes give equal byte prefixes.
	// For Anthropic messages with a system prompt it is a new buffer: the
	// system prompt (without per-request billing blocks) then the messages,
	// in the order the chat template renders them. For vLLM generate it is
	// the token IDs packed four bytes each (see TokenIDs).
	Prompt []byte
	// Tools is the raw JSON of the request's tool definitions ("tools"),
	// aliasing Raw; nil when absent, null or empty. Chat templates render
	// them into the system prompt, so they are part of the cached prefix.
	Tools []byte
	// ToolsAt is the offset in Prompt where the template renders Tools:
	// just after the system prompt (Anthropic's system, or a leading system
	// or developer message), else 0.
	ToolsAt int
	// Raw is the complete body as received.
	Raw []byte

	model  span
	prompt span
	system span
	// packed is set when Prompt holds token IDs packed by packTokens.
	packed bool
	// inputIDs is an SGLang request's token prompt, its alternative to text.
	inputIDs span
	// priority is the engine scheduling priority member, which Edited
	// replaces.
	priority span
	// streamOptions is the stream_options member, which Edited may change.
	streamOptions span
}

// EstimatedPromptTokens approximates the prompt length in tokens (4 bytes per
// token, the usual rule of thumb for English text).
// A generate request's count is exact: its prompt is packed token IDs.
func (b *Body) EstimatedPromptTokens() int { return (len(b.Prompt) + 3) / 4 }

// Parse reads the fields the EPP needs from raw for api. For API Other the
// body need not be JSON; the model is read when it is.
func Parse(api API, raw []byte) (*Body, error) {
	b := &Body{API: api, Raw: raw}
	if api == Other {
		// Best effort: unknown APIs are not validated, and nothing read
		// from a body that is not JSON is kept.
		if valid, _, _ := b.readMembers(raw); !valid {
			return &Body{API: api, Raw: raw}, nil
		}
		return b, nil
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("%w: body is empty", ErrMalformed)
	}
	valid, at, err := b.readMembers(raw)
	if !valid {
		return nil, fmt.Errorf("%w: invalid JSON at byte %d (%s)", ErrMalformed, at, jsonErrorDetail(raw))
	}
	if err != nil {
		return nil, err
	}
	if (!b.model.ok() || b.Model == "") && api != Generate && api != SGLangGenerate {
		return nil, ErrMissingModel
	}
	if api == SGLangGenerate {
		if err := b.sglangPrompt(); err != nil {
			return nil, err
		}
		return b, nil
	}
	if err := b.checkPrompt(); err != nil {
		return nil, err
	}
	if b.API == Generate {
		if err := b.packTokens("token_ids"); err != nil {
			return nil, err
		}
	}
	if b.API == Messages {
		if err := b.joinSystem(); err != nil {
			return nil, err
		}
	}
	if b.API == ChatCompletions && b.Tools != nil {
		b.ToolsAt = afterSystemMessage(b.Prompt)
	}
	return b, nil
}

// readMembers validates raw and, in the same pass, decodes the small
// top-level fields and records spans. valid reports whether raw is JSON (at:
// where it stops being); err is the first field of the wrong type, or a
// body that is not an object.
func (b *Body) readMembers(raw []byte) (valid bool, at int, err error) {
	field := promptField[b.API]
	valid, at = validate(raw, func(key []byte, v span) {
		if err != nil {
			return
		}
		val := raw[v.start:v.end]
		switch string(key) {
		case "model":
			if b.API != SGLangGenerate { // not SGLang's; lora_path names its adapter
				b.model = v
				err = decodeField("model", val, &b.Model)
			}
		case "stream":
			err = decodeField("stream", val, &b.Stream)
		case "cache_salt":
			if val[0] != '[' || b.API != SGLangGenerate { // an SGLang batch salts each prompt
				err = decodeField("cache_salt", val, &b.CacheSalt)
			}
		case "stream_options":
			var so struct {
				IncludeUsage bool `json:"include_usage"`
			}
			err = decodeField("stream_options", val, &so)
			b.IncludeUsage, b.streamOptions = so.IncludeUsage, v
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			if b.API != Generate && b.API != SGLangGenerate {
				err = decodeField(string(key), val, &b.MaxTokens)
			}
		case "sampling_params":
			if b.API == Generate || b.API == SGLangGenerate {
				err = b.readSamplingParams(val)
			}
		case "input_ids", "lora_path":
			if b.API == SGLangGenerate {
				err = b.readSGLangMember(string(key), v, val)
			}
		case field:
			b.prompt, b.Prompt = v, val
		case "system":
			b.system = v
		case "priority":
			b.priority = v
		case "tools":
			if t := string(val); t != "null" && t != "[]" {
				b.Tools = val
			}
		}
	})
	if valid && err == nil && raw[skipSpace(raw, 0)] != '{' {
		err = fmt.Errorf("%w: body must be a JSON object", ErrMalformed)
	}
	return valid, at, err
}

func decodeField(name string, val []byte, dst any) error {
	if string(val) == "null" {
		return nil
	}
	if err := json.Unmarshal(val, dst); err != nil {
		return fmt.Errorf("%w: field %q: wrong type (%s)", ErrMalformed, name, firstBytes(val, 20))
	}
	return nil
}

// checkPrompt enforces that the API's prompt field is present and non-empty.
func (b *Body) checkPrompt() error {
	field := promptField[b.API]
	p := b.Prompt
	if len(p) == 0 || string(p) == "null" {
		return fmt.Errorf("%w: field %q is required for %s", ErrMissingPrompt, field, b.API)
	}
	switch p[0] {
	case '"':
		if b.API == ChatCompletions || b.API == Conversations || b.API == Messages || b.API == Generate {
			return fmt.Errorf("%w: field %q must be an array", ErrMalformed, field)
		}
	case '[':
		if len(bytes.TrimSpace(p[1:len(p)-1])) == 0 {
			return fmt.Errorf("%w: field %q must not be empty", ErrMissingPrompt, field)
		}
	default:
		return fmt.Errorf("%w: field %q must be a string or an array", ErrMalformed, field)
	}
	return nil
}

// afterSystemMessage returns the offset just past the first element of the
// chat messages array when that element is a system or developer message
// (where templates render the tools), else 0.
func afterSystemMessage(messages []byte) int {
	i := skipSpace(messages, 0)
	if i >= len(messages) || messages[i] != '[' {
		return 0
	}
	i = skipSpace(messages, i+1)
	if i >= len(messages) || messages[i] != '{' {
		return 0
	}
	end := skipValue(messages, i)
	system := false
	_ = topLevel(messages[i:end], func(key []byte, v span) {
		if string(key) == "role" {
			role := string(messages[i+v.start : i+v.end])
			system = role == `"system"` || role == `"developer"`
		}
	})
	if !system {
		return 0
	}
	return end
}

// jsonErrorDetail describes why raw is not valid JSON; only called on the
// error path, so its cost does not matter.
func jsonErrorDetail(raw []byte) string {
	var v any
	err := json.Unmarshal(raw, &v)
	if err != nil {
		return err.Error()
	}
	return "unexpected content"
}

func firstBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
