package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// handleMessages serves POST /v1/messages.
func (i *Instance) handleMessages(w http.ResponseWriter, r *http.Request) {
	parse := func() (genRequest, *apiError) { return i.parseAnthropic(w, r, false) }
	g, c, ok := i.startCall(w, r, parse, writeAnthropicError)
	if !ok {
		return
	}
	defer i.drv.cancel(c)
	ms := &messageState{responseState: newResponseState(i, g, c), id: "msg_" + strconv.FormatUint(c.parts[0].id, 10)}
	if g.stream {
		i.streamMessage(w, r, ms)
		return
	}
	if i.awaitDone(w, r, ms.responseState, writeAnthropicError) {
		writeJSON(w, http.StatusOK, ms.final())
	}
}

// handleCountTokens serves POST /v1/messages/count_tokens: the prompt's
// length without running it. The completions fault leaves it alone, as it
// generates nothing.
func (i *Instance) handleCountTokens(w http.ResponseWriter, r *http.Request) {
	i.setAnswerHeaders(w, r)
	g, aerr := i.parseAnthropic(w, r, true)
	if aerr != nil {
		writeAnthropicError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		InputTokens int `json:"input_tokens"`
	}{len(g.prompts[0])})
}

// handleMessagesRender is vLLM's POST /v1/messages/render: the Messages
// request answered with the token IDs generation would cache for it
// (count_tokens' parse), without generating.
func (i *Instance) handleMessagesRender(w http.ResponseWriter, r *http.Request) {
	i.setAnswerHeaders(w, r)
	g, aerr := i.parseAnthropic(w, r, true)
	if aerr != nil {
		writeAnthropicError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, wireRendered{TokenIDs: g.prompts[0]})
}

// messageState builds the Anthropic answer of a one-prompt call.
type messageState struct {
	*responseState
	id string
}

// wireMessageUsage follows Anthropic's spec rather than vLLM's:
// input_tokens excludes the prefix-cache hit, reported apart (doc.go).
type wireMessageUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

type wireTextBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type wireMessageAnswer struct {
	ID               string           `json:"id"`
	Type             string           `json:"type"`
	Role             string           `json:"role"`
	Content          []wireTextBlock  `json:"content"`
	Model            string           `json:"model"`
	StopReason       *string          `json:"stop_reason"`
	StopSequence     *string          `json:"stop_sequence"`
	Usage            wireMessageUsage `json:"usage"`
	KVTransferParams *wireKVAnswer    `json:"kv_transfer_params,omitempty"`
}

func (ms *messageState) usage() wireMessageUsage {
	p := ms.seen[0]
	return wireMessageUsage{InputTokens: p.prompt - p.cached, CacheReadInputTokens: p.cached, OutputTokens: p.tokens}
}

// stopReason mirrors finishReason: the simulator always generates exactly
// max_tokens, so a finished answer stopped on the limit.
func (ms *messageState) stopReason() string {
	if ms.seen[0].tokens < ms.g.maxTokens {
		return "end_turn"
	}
	return "max_tokens"
}

// answer is the message envelope: complete for the JSON answer, empty for
// message_start.
func (ms *messageState) answer() wireMessageAnswer {
	return wireMessageAnswer{ID: ms.id, Type: "message", Role: "assistant", Content: []wireTextBlock{},
		Model: ms.g.model, Usage: ms.usage()}
}

// final is the non-streaming answer.
func (ms *messageState) final() wireMessageAnswer {
	a := ms.answer()
	a.Content = append(a.Content, wireTextBlock{Type: "text", Text: ms.text(0, 1, ms.seen[0].tokens)})
	stop := ms.stopReason()
	a.StopReason = &stop
	a.KVTransferParams = ms.kv
	return a
}

// Stream events; each names its type in its data too, as Anthropic's do.
type (
	wireMessageStart struct {
		Type    string            `json:"type"`
		Message wireMessageAnswer `json:"message"`
	}
	wireBlockStart struct {
		Type         string        `json:"type"`
		Index        int           `json:"index"`
		ContentBlock wireTextBlock `json:"content_block"`
	}
	wireBlockDelta struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
		Delta struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"delta"`
	}
	wireBlockStop struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}
	wireMessageDelta struct {
		Type  string `json:"type"`
		Delta struct {
			StopReason   string  `json:"stop_reason"`
			StopSequence *string `json:"stop_sequence"`
		} `json:"delta"`
		Usage struct {
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	wireMessageStop struct {
		Type string `json:"type"`
	}
)

// streamMessage answers with Anthropic's named server-sent events. As vLLM
// does, it opens the message when the first token exists (its usage then
// knows the cache hit), streams one text delta per token, and ends with the
// stop reason and output count; there is no [DONE].
func (i *Instance) streamMessage(w http.ResponseWriter, r *http.Request, ms *messageState) {
	rc := startSSE(w)
	started := false
	open := func(done bool) bool {
		if started || (ms.seen[0].tokens == 0 && !done) {
			return true
		}
		started = true
		return ms.writeStart(w)
	}
	if !i.pumpTokens(w, r, rc, ms.responseState, open, ms.writeDelta(w)) {
		return
	}
	end := wireMessageDelta{Type: "message_delta"}
	end.Delta.StopReason = ms.stopReason()
	end.Usage.OutputTokens = ms.seen[0].tokens
	_ = writeNamedEvent(w, "content_block_stop", wireBlockStop{Type: "content_block_stop"}) &&
		writeNamedEvent(w, "message_delta", end) &&
		writeNamedEvent(w, "message_stop", wireMessageStop{Type: "message_stop"})
	_ = rc.Flush()
}

// writeStart opens the message and its one text block.
func (ms *messageState) writeStart(w http.ResponseWriter) bool {
	start := wireMessageStart{Type: "message_start", Message: ms.answer()}
	start.Message.Usage.OutputTokens = 0
	return writeNamedEvent(w, "message_start", start) &&
		writeNamedEvent(w, "content_block_start", wireBlockStart{Type: "content_block_start",
			ContentBlock: wireTextBlock{Type: "text"}})
}

// writeDelta returns the writeTokens emitter of text deltas.
func (ms *messageState) writeDelta(w http.ResponseWriter) func(j int) bool {
	return func(j int) bool {
		n := ms.sent[j]
		d := wireBlockDelta{Type: "content_block_delta"}
		d.Delta.Type, d.Delta.Text = "text_delta", ms.text(j, n, n)
		return writeNamedEvent(w, "content_block_delta", d)
	}
}

func writeNamedEvent(w http.ResponseWriter, name string, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	return err == nil
}
