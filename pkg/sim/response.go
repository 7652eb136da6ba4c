package sim

import (
	"strconv"
	"strings"
	"time"
)

// responseState builds the OpenAI response of one call as its tokens arrive.
type responseState struct {
	g       genRequest
	call    *call
	seed    uint64
	id      string
	created int64
	seen    []progress // latest snapshot per choice
	sent    []int      // tokens already streamed per choice
	kv      *wireKVAnswer
}

func newResponseState(i *Instance, g genRequest, c *call) *responseState {
	prefix := "cmpl-"
	if g.chat {
		prefix = "chatcmpl-"
	}
	rs := &responseState{
		g: g, call: c, seed: i.cfg.Seed,
		id:      prefix + strconv.FormatUint(c.parts[0].id, 10),
		created: time.Now().Unix(),
		seen:    make([]progress, len(c.parts)),
		sent:    make([]int, len(c.parts)),
	}
	if g.kv.remoteDecode {
		rs.kv = i.kvAnswer(len(g.prompts[0]), c.parts[0].id)
	}
	return rs
}

// produced is the number of tokens generated so far over all choices.
func (rs *responseState) produced() int {
	n := 0
	for _, p := range rs.seen {
		n += p.tokens
	}
	return n
}

type wireUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func (rs *responseState) usage() *wireUsage {
	u := &wireUsage{}
	for _, p := range rs.seen {
		u.PromptTokens += p.prompt
		u.CompletionTokens += p.tokens
		u.PromptTokensDetails.CachedTokens += p.cached
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// Wire types. Field order follows vLLM's responses.
type wireCompletionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
	StopReason   any     `json:"stop_reason"`
}

type wireMessageOut struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type wireDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type wireChatChoice struct {
	Index        int             `json:"index"`
	Message      *wireMessageOut `json:"message,omitempty"`
	Delta        *wireDelta      `json:"delta,omitempty"`
	Logprobs     any             `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type wireResponse struct {
	ID               string        `json:"id"`
	Object           string        `json:"object"`
	Created          int64         `json:"created"`
	Model            string        `json:"model"`
	Choices          any           `json:"choices"`
	Usage            *wireUsage    `json:"usage,omitempty"`
	KVTransferParams *wireKVAnswer `json:"kv_transfer_params,omitempty"`
}

func (rs *responseState) envelope(object string, choices any) wireResponse {
	return wireResponse{ID: rs.id, Object: object, Created: rs.created, Model: rs.g.model, Choices: choices}
}

// finishReason is "length" on a choice's last token: the simulator always
// generates exactly max tokens.
func (rs *responseState) finishReason(n int) *string {
	if n < rs.g.maxTokens {
		return nil
	}
	s := "length"
	return &s
}

// final is the non-streaming response.
func (rs *responseState) final() wireResponse {
	var r wireResponse
	if rs.g.chat {
		choices := make([]wireChatChoice, len(rs.seen))
		for j, p := range rs.seen {
			choices[j] = wireChatChoice{Index: j, FinishReason: rs.finishReason(p.tokens),
				Message: &wireMessageOut{Role: "assistant", Content: rs.text(j, 1, p.tokens)}}
		}
		r = rs.envelope("chat.completion", choices)
	} else {
		choices := make([]wireCompletionChoice, len(rs.seen))
		for j, p := range rs.seen {
			choices[j] = wireCompletionChoice{Index: j, Text: rs.text(j, 1, p.tokens), FinishReason: rs.finishReason(p.tokens)}
		}
		r = rs.envelope("text_completion", choices)
	}
	r.Usage = rs.usage()
	r.KVTransferParams = rs.kv
	return r
}

// roleChunk opens a chat stream, as vLLM does, with the assistant role.
func (rs *responseState) roleChunk() wireResponse {
	empty := ""
	choices := make([]wireChatChoice, len(rs.seen))
	for j := range choices {
		choices[j] = wireChatChoice{Index: j, Delta: &wireDelta{Role: "assistant", Content: &empty}}
	}
	return rs.envelope("chat.completion.chunk", choices)
}

// tokenChunk carries token rs.sent[j] of choice j.
func (rs *responseState) tokenChunk(j int) wireResponse {
	n := rs.sent[j]
	text := rs.text(j, n, n)
	if rs.g.chat {
		return rs.envelope("chat.completion.chunk", []wireChatChoice{
			{Index: j, Delta: &wireDelta{Content: &text}, FinishReason: rs.finishReason(n)},
		})
	}
	return rs.envelope("text_completion", []wireCompletionChoice{
		{Index: j, Text: text, FinishReason: rs.finishReason(n)},
	})
}

// usageChunk is the last chunk when stream_options.include_usage is set.
func (rs *responseState) usageChunk() wireResponse {
	object := "text_completion"
	if rs.g.chat {
		object = "chat.completion.chunk"
	}
	r := rs.envelope(object, []struct{}{})
	r.Usage = rs.usage()
	return r
}

// words is the generated vocabulary.
var words = [...]string{
	"the", "model", "server", "routes", "tokens", "to", "a", "cache", "of", "prefix",
	"blocks", "and", "each", "request", "waits", "in", "queue", "while", "batch", "decodes",
	"latency", "grows", "with", "load", "so", "picker", "scores", "replicas", "by", "signals",
	"from", "metrics", "scraped", "every", "interval", "then", "answers", "proxy", "quickly", "again",
}

// text returns tokens from..to (1-based, inclusive) of choice j: words
// chosen deterministically from the seed, the request and the position.
func (rs *responseState) text(j, from, to int) string {
	var b strings.Builder
	id := rs.call.parts[j].id
	for k := from; k <= to; k++ {
		if k > 1 {
			b.WriteByte(' ')
		}
		h := (rs.seed ^ id*0x9e3779b97f4a7c15 ^ uint64(k)*0xbf58476d1ce4e5b9) * 0x94d049bb133111eb
		b.WriteString(words[(h>>33)%uint64(len(words))])
	}
	return b.String()
}
