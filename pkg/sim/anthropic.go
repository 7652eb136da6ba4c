package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/openepp/openepp/pkg/apierror"
)

// The Anthropic Messages API (POST /v1/messages and
// /v1/messages/count_tokens), served as vLLM serves it: the request becomes
// a chat prompt rendered through the template parseMessages uses, so an
// Anthropic conversation caches like the same OpenAI chat. See doc.go.

// billingHeaderPrefix starts the system block Claude Code sends with a
// per-request hash; like vLLM, the simulator leaves it out of the prompt so
// the hash does not defeat prefix caching.
const billingHeaderPrefix = "x-anthropic-billing-header"

// wireAnthropicRequest holds the fields the simulator reads; sampling
// fields (temperature, top_p, top_k, stop_sequences, tool_choice, metadata)
// are accepted and ignored. priority is read as on the OpenAI APIs.
type wireAnthropicRequest struct {
	Model            string          `json:"model"`
	Messages         json.RawMessage `json:"messages"`
	System           json.RawMessage `json:"system"`
	MaxTokens        *int            `json:"max_tokens"`
	Stream           bool            `json:"stream"`
	Tools            json.RawMessage `json:"tools"`
	KVTransferParams json.RawMessage `json:"kv_transfer_params"`
	Priority         json.RawMessage `json:"priority"`
}

type anthropicTurn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// anthropicBlock is a content block; which fields matter depends on Type.
type anthropicBlock struct {
	Type     string          `json:"type"`
	Text     string          `json:"text"`
	Thinking string          `json:"thinking"`
	Name     string          `json:"name"`
	Input    json.RawMessage `json:"input"`
	Content  json.RawMessage `json:"content"`
	Source   json.RawMessage `json:"source"` // an image's
}

func invalidRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// parseAnthropic decodes and validates a Messages request (count=false) or
// a count_tokens request, which needs no max_tokens. Like vLLM, it checks
// the body before looking the model up.
func (i *Instance) parseAnthropic(w http.ResponseWriter, r *http.Request, count bool) (genRequest, *apiError) {
	var wr wireAnthropicRequest
	if err := decodeBody(w, r, &wr); err != nil {
		return genRequest{}, invalidRequest("%v", fieldError("", err))
	}
	switch {
	case wr.Model == "":
		return genRequest{}, invalidRequest("model: field required")
	case count: // count_tokens takes no max_tokens
	case wr.MaxTokens == nil:
		return genRequest{}, invalidRequest("max_tokens: field required")
	case *wr.MaxTokens < 1:
		return genRequest{}, invalidRequest("max_tokens: must be greater than 0, got %d", *wr.MaxTokens)
	}
	prompt, err := renderAnthropic(&wr)
	if err != nil {
		return genRequest{}, invalidRequest("%v", err)
	}
	lora, ok := i.models.resolve(wr.Model)
	if !ok {
		return genRequest{}, &apiError{status: http.StatusNotFound,
			msg: fmt.Sprintf("model: the model `%s` does not exist", wr.Model)}
	}
	g := genRequest{chat: true, model: wr.Model, lora: lora, prompts: [][]uint32{prompt}, stream: wr.Stream}
	if count {
		return g, nil
	}
	g.maxTokens = *wr.MaxTokens
	if g.priority, err = i.requestPriority(wr.Priority); err != nil {
		return genRequest{}, invalidRequest("%v", err)
	}
	if aerr := applyKVTransfer(&g, wr.KVTransferParams); aerr != nil {
		return genRequest{}, aerr
	}
	return g, nil
}

// renderAnthropic turns a request into prompt tokens: one leading system
// turn (the system field, then the text of any system-role messages, then
// the tools), then the other messages in order.
func renderAnthropic(wr *wireAnthropicRequest) ([]uint32, error) {
	if isAbsent(wr.Messages) {
		return nil, errors.New("messages: field required")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(wr.Messages, &raws); err != nil {
		return nil, errors.New("messages: must be a list of {role, content}")
	}
	if len(raws) == 0 {
		return nil, errors.New("messages: at least one message is required")
	}
	var system strings.Builder
	if err := systemText(&system, "system", wr.System); err != nil {
		return nil, err
	}
	turns := &promptText{}
	for j, raw := range raws {
		path := fmt.Sprintf("messages[%d]", j)
		var m anthropicTurn
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fieldError(path, err)
		}
		if isAbsent(m.Content) {
			return nil, fmt.Errorf("%s.content: field required", path)
		}
		switch m.Role {
		case "system":
			if err := systemText(&system, path+".content", m.Content); err != nil {
				return nil, err
			}
		case "user", "assistant":
			content, err := messageBlocks(path+".content", m.Content)
			if err != nil {
				return nil, err
			}
			writeChatTurn(turns, m.Role, content)
		default:
			return nil, fmt.Errorf("%s.role: must be \"user\", \"assistant\" or \"system\", got %q", path, m.Role)
		}
	}
	if err := toolsText(&system, wr.Tools, anthropicToolName, "name"); err != nil {
		return nil, err
	}
	b := &promptText{}
	if system.Len() > 0 {
		writeChatTurn(b, "system", textPrompt(system.String()))
	}
	b.writePrompt(turns)
	b.WriteString(chatGenerationPrompt)
	return b.tokens(), nil
}

// systemText appends system content (a string or text blocks) to b,
// concatenated as vLLM does, without billing-header blocks.
func systemText(b *strings.Builder, path string, raw json.RawMessage) error {
	if isAbsent(raw) {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b.WriteString(s)
		return nil
	}
	blocks, err := decodeBlocks(path, raw)
	if err != nil {
		return err
	}
	for k, blk := range blocks {
		if blk.Type != "text" {
			return fmt.Errorf("%s[%d].type: must be \"text\", got %q", path, k, blk.Type)
		}
		if !strings.HasPrefix(blk.Text, billingHeaderPrefix) {
			b.WriteString(blk.Text)
		}
	}
	return nil
}

// messageBlocks renders a user or assistant message's content: a string,
// or blocks one a line. An image renders as its placeholders; redacted
// thinking carries no text the simulator can count, so it renders as
// nothing.
func messageBlocks(path string, raw json.RawMessage) (*promptText, error) {
	s, blocks, err := stringOrBlocks(path, raw)
	if err != nil || blocks == nil {
		return textPrompt(s), err
	}
	b := &promptText{}
	lines := 0
	line := func() {
		if lines > 0 {
			b.WriteString("\n")
		}
		lines++
	}
	for k, blk := range blocks {
		at := fmt.Sprintf("%s[%d]", path, k)
		switch blk.Type {
		case "text":
			line()
			b.WriteString(blk.Text)
		case "thinking":
			line()
			b.WriteString(blk.Thinking)
		case "tool_use":
			input, err := compactObject(at+".input", blk.Input)
			if err != nil {
				return nil, err
			}
			line()
			b.WriteString(blk.Name + " " + input)
		case "tool_result":
			text, err := toolResultText(at+".content", blk.Content)
			if err != nil {
				return nil, err
			}
			line()
			b.WriteString(text)
		case "image":
			item, err := anthropicImage(at+".source", blk.Source)
			if err != nil {
				return nil, err
			}
			line()
			b.writeItem(item)
		case "redacted_thinking", "tool_reference":
		case "":
			return nil, fmt.Errorf("%s.type: field required", at)
		default:
			return nil, fmt.Errorf("%s.type: unsupported content block type %q", at, blk.Type)
		}
	}
	return b, nil
}

// stringOrBlocks reads content that is either a string (returned with nil
// blocks) or a list of content blocks.
func stringOrBlocks(path string, raw json.RawMessage) (string, []anthropicBlock, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil, nil
	}
	blocks, err := decodeBlocks(path, raw)
	if blocks == nil && err == nil {
		blocks = []anthropicBlock{}
	}
	return "", blocks, err
}

// toolResultText renders a tool_result's content: absent, a string, or a
// list of blocks whose text items count.
func toolResultText(path string, raw json.RawMessage) (string, error) {
	if isAbsent(raw) {
		return "", nil
	}
	s, blocks, err := stringOrBlocks(path, raw)
	if err != nil || blocks == nil {
		return s, err
	}
	var b strings.Builder
	for _, blk := range blocks {
		if blk.Type == "text" {
			b.WriteString(blk.Text)
		}
	}
	return b.String(), nil
}

// toolsText appends the tool definitions to the system text, one compact
// JSON object a line, as chat templates put tools in the system prompt;
// name finds a tool's name where the API keeps it, in nameField (a tool
// without one is refused, as vLLM refuses it).
func toolsText(b *strings.Builder, raw json.RawMessage, name func(tool json.RawMessage) (string, error), nameField string) error {
	if isAbsent(raw) {
		return nil
	}
	var tools []json.RawMessage
	if err := json.Unmarshal(raw, &tools); err != nil {
		return errors.New("tools: must be a list of tool definitions")
	}
	for k, tool := range tools {
		path := fmt.Sprintf("tools[%d]", k)
		n, err := name(tool)
		if err != nil {
			return fieldError(path, err)
		}
		if n == "" {
			return fmt.Errorf("%s.%s: field required", path, nameField)
		}
		text, err := compactObject(path, tool)
		if err != nil {
			return err
		}
		if k == 0 {
			b.WriteString("\n\n# Tools\n")
		}
		b.WriteString(text + "\n")
	}
	return nil
}

// anthropicToolName reads an Anthropic tool's top-level name.
func anthropicToolName(tool json.RawMessage) (string, error) {
	var t struct {
		Name string `json:"name"`
	}
	err := json.Unmarshal(tool, &t)
	return t.Name, err
}

// decodeBlocks reads a list of content blocks, naming the offending one.
func decodeBlocks(path string, raw json.RawMessage) ([]anthropicBlock, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(raw, &raws); err != nil {
		return nil, fmt.Errorf("%s: must be a string or a list of content blocks", path)
	}
	blocks := make([]anthropicBlock, len(raws))
	for k, r := range raws {
		if err := json.Unmarshal(r, &blocks[k]); err != nil {
			return nil, fieldError(fmt.Sprintf("%s[%d]", path, k), err)
		}
	}
	return blocks, nil
}

// compactObject returns raw, which must be a JSON object (absent means
// {}), without insignificant whitespace, so equal inputs render equally.
func compactObject(path string, raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if isAbsent(raw) {
		return "{}", nil
	}
	var buf bytes.Buffer
	if raw[0] != '{' || json.Compact(&buf, raw) != nil {
		return "", fmt.Errorf("%s: must be an object", path)
	}
	return buf.String(), nil
}

func isAbsent(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// fieldError phrases a JSON decoding error so that it names the field:
// "messages[0].content[1].text: must be a string, got number".
func fieldError(path string, err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		if path == "" {
			return err
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	field := te.Field
	if path != "" {
		if field == "" {
			field = path
		} else {
			field = path + "." + field
		}
	}
	if field == "" {
		return fmt.Errorf("request body: must be %s, got %s", jsonKind(te.Type), te.Value)
	}
	return fmt.Errorf("%s: must be %s, got %s", field, jsonKind(te.Type), te.Value)
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

// writeAnthropicError answers with e's status in Anthropic's error shape;
// the type follows from the status, so e.typ (an OpenAI name) is unused.
func writeAnthropicError(w http.ResponseWriter, e *apiError) {
	we := apierror.AnthropicBody{Type: "error"}
	we.Error.Type, we.Error.Message = apierror.AnthropicType(e.status), e.msg
	writeJSON(w, e.status, we)
}
