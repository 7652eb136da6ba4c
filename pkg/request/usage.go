package request

import (
	"bytes"
	"encoding/json"
)

// Usage is token accounting reported by the model server.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	// CachedTokens is prompt tokens served from the server's prefix cache.
	CachedTokens int
}

// wireUsage accepts the Chat/Completions, Responses and Anthropic Messages
// field names, plus the "prompt_token_details" misspelling some servers and
// GIE v1.5.0 use.
type wireUsage struct {
	PromptTokens        int            `json:"prompt_tokens"`
	CompletionTokens    int            `json:"completion_tokens"`
	InputTokens         int            `json:"input_tokens"`
	OutputTokens        int            `json:"output_tokens"`
	TotalTokens         int            `json:"total_tokens"`
	PromptTokensDetails *cachedDetails `json:"prompt_tokens_details"`
	PromptTokenDetails  *cachedDetails `json:"prompt_token_details"`
	InputTokensDetails  *cachedDetails `json:"input_tokens_details"`
	// Anthropic counts cache reads and writes apart from input_tokens, so
	// the prompt is their sum (vLLM reports the whole prompt as
	// input_tokens and sends neither, which sums the same).
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	// CachedTokens is SGLang's meta_info count, beside its prompt_tokens.
	CachedTokens int `json:"cached_tokens"`
}

type cachedDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

func (w *wireUsage) usage() Usage {
	u := Usage{
		PromptTokens:     w.PromptTokens + w.InputTokens + w.CacheReadInputTokens + w.CacheCreationInputTokens,
		CompletionTokens: w.CompletionTokens + w.OutputTokens,
		TotalTokens:      w.TotalTokens,
		CachedTokens:     w.CacheReadInputTokens + w.CachedTokens,
	}
	for _, d := range []*cachedDetails{w.PromptTokensDetails, w.InputTokensDetails, w.PromptTokenDetails} {
		if d != nil && d.CachedTokens > 0 {
			u.CachedTokens = d.CachedTokens
			break
		}
	}
	if u.TotalTokens == 0 {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return u
}

// ParseUsage reads "usage" from a JSON response body: top level (chat,
// completions, embeddings, responses, Anthropic messages and message_delta
// events) or under "response" (a Responses API streaming event) or
// "message" (Anthropic's message_start event), or SGLang's "meta_info" (its
// native API's answer and stream chunks). It decodes only that member.
func ParseUsage(body []byte) (Usage, bool) {
	if !usageObjectIn(body) && !bytes.Contains(body, []byte(`"meta_info"`)) || !validOK(body) {
		return Usage{}, false
	}
	var found, nested, meta span
	_ = topLevel(body, func(key []byte, v span) {
		switch string(key) {
		case "usage":
			found = v
		case "response", "message":
			nested = v
		case "meta_info":
			meta = v
		}
	})
	if !found.ok() {
		found = meta
	}
	if !found.ok() && nested.ok() && body[nested.start] == '{' {
		inner := body[nested.start:nested.end]
		_ = topLevel(inner, func(key []byte, v span) {
			if string(key) == "usage" {
				found = span{nested.start + v.start, nested.start + v.end}
			}
		})
	}
	if !found.ok() || body[found.start] != '{' {
		return Usage{}, false
	}
	var w wireUsage
	if json.Unmarshal(body[found.start:found.end], &w) != nil {
		return Usage{}, false
	}
	return w.usage(), true
}

// maxSSELine bounds the partial line StreamUsage keeps between chunks, so a
// stream without newlines cannot grow memory without limit. A longer line
// is skipped whole, however the stream is chunked: usage must not depend on
// where the proxy cut the body.
const maxSSELine = 1 << 20

// StreamUsage extracts usage from a server-sent-event stream fed chunk by
// chunk; events may be split across chunks. The last usage seen wins.
type StreamUsage struct {
	partial []byte
	// skipping is set while the rest of a line longer than maxSSELine goes
	// by, so that its tail is not read as a line of its own.
	skipping bool
	usage    Usage
	found    bool
}

// Write consumes the next chunk of the stream.
func (s *StreamUsage) Write(chunk []byte) {
	for len(chunk) > 0 {
		nl, term := lineEnd(chunk)
		if nl < 0 {
			if !s.skipping && len(s.partial)+len(chunk) <= maxSSELine {
				s.partial = append(s.partial, chunk...)
			} else {
				s.partial, s.skipping = s.partial[:0], true
			}
			return
		}
		line := chunk[:nl]
		chunk = chunk[nl+term:]
		switch {
		case s.skipping || len(s.partial)+len(line) > maxSSELine:
			// the end of a line too long to read
		case len(s.partial) > 0:
			s.partial = append(s.partial, line...)
			s.line(s.partial)
		default:
			s.line(line)
		}
		s.partial, s.skipping = s.partial[:0], false
	}
}

// lineEnd finds the first line ending in b, in any of the three forms the
// SSE format allows ("\n", "\r\n", a bare "\r"): the line's length and
// the terminator's, or -1. A CRLF split between chunks reads as two line
// ends, the second ending an empty line, which carries no usage.
func lineEnd(b []byte) (end, term int) {
	nl := bytes.IndexByte(b, '\n')
	before := b
	if nl >= 0 {
		before = b[:nl]
	}
	if cr := bytes.IndexByte(before, '\r'); cr >= 0 {
		if cr+1 == nl {
			return cr, 2
		}
		return cr, 1
	}
	return nl, 1
}

// Flush handles a final line that had no trailing newline.
func (s *StreamUsage) Flush() {
	if len(s.partial) > 0 {
		s.line(s.partial)
	}
	s.partial, s.skipping = s.partial[:0], false
}

func (s *StreamUsage) line(line []byte) {
	payload, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return
	}
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 || payload[0] != '{' {
		return // "[DONE]" and keep-alives
	}
	if u, ok := ParseUsage(payload); ok {
		s.merge(u)
	}
}

// merge keeps the latest usage, except that a report without prompt tokens
// keeps the prompt counts seen before: Anthropic streams give the prompt in
// message_start and only the output count in the final message_delta.
func (s *StreamUsage) merge(u Usage) {
	if u.PromptTokens == 0 && s.found {
		u.PromptTokens, u.CachedTokens = s.usage.PromptTokens, s.usage.CachedTokens
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	s.usage, s.found = u, true
}

// Usage returns the last usage seen in the stream.
func (s *StreamUsage) Usage() (Usage, bool) { return s.usage, s.found }

// usageObjectIn reports whether body spells a "usage" member whose value
// is an object anywhere, as any usage ParseUsage reads must be written.
// Streams send "usage": null in every event but the last, and this check
// spares those events the validation pass (most of a stream's cost).
func usageObjectIn(body []byte) bool {
	for {
		i := bytes.Index(body, []byte(`"usage"`))
		if i < 0 {
			return false
		}
		body = body[i+len(`"usage"`):]
		j := skipSpace(body, 0)
		if j < len(body) && body[j] == ':' {
			if k := skipSpace(body, j+1); k < len(body) && body[k] == '{' {
				return true
			}
		}
	}
}

func validOK(b []byte) bool {
	ok, _ := validJSON(b)
	return ok
}
