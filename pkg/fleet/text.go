package fleet

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// maxWordLetters bounds the letters of a generated word. With one leading
// space and 1…4 letters a word averages 3.5 bytes and is exactly one token of
// package tokenize, close to the 4 bytes per token the EPP's approximate
// prefix index assumes.
const maxWordLetters = 4

// appendWords appends n words to sb, each a space followed by 1…4 random
// lower-case letters, so that tokenize.Count of the appended text is n.
func appendWords(sb *strings.Builder, rng *rand.Rand, n int) {
	sb.Grow(n * (maxWordLetters + 1))
	for range n {
		sb.WriteByte(' ')
		for range 1 + rng.IntN(maxWordLetters) {
			sb.WriteByte(byte('a' + rng.IntN(26)))
		}
	}
}

// words returns n generated words (n tokens) drawn from rng.
func words(rng *rand.Rand, n int) string {
	var sb strings.Builder
	appendWords(&sb, rng, n)
	return sb.String()
}

// segmentRNG returns a generator private to one text segment (a system
// prompt, a question), so the segment's text depends only on the run's seed
// and the segment's identity (a, b < 2³², or bits are lost), not on the
// order segments are built in.
func segmentRNG(seed uint64, kind, a, b uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed^kind*0x9e3779b97f4a7c15, a<<32^b))
}

// Segment kinds for segmentRNG.
const (
	segSystem uint64 = iota + 1
	segQuestion
	segAnswer
	segUnique
	segTools
)

// completionBody builds a streaming /v1/completions body and parses it the
// way the EPP does, so plugins see realistic prompt bytes.
func completionBody(model, prompt string, maxTokens int) (*request.Body, error) {
	var sb strings.Builder
	sb.Grow(len(prompt) + len(model) + 96)
	sb.WriteString(`{"model":`)
	sb.WriteString(strconv.Quote(model))
	sb.WriteString(`,"prompt":"`)
	sb.WriteString(prompt) // generated text needs no escaping
	sb.WriteString(`","max_tokens":`)
	sb.WriteString(strconv.Itoa(maxTokens))
	sb.WriteString(`,"stream":true,"stream_options":{"include_usage":true}}`)
	b, err := request.Parse(request.Completions, []byte(sb.String()))
	if err != nil {
		return nil, fmt.Errorf("generated completion body: %w", err)
	}
	return b, nil
}

// message is one chat turn.
type message struct {
	role, content string
}

// chatBody builds a streaming /v1/chat/completions body. Earlier turns are
// serialised identically every time, so a conversation's bodies share byte
// prefixes up to the newest turn, as real chat clients' do. tools, when not
// empty, is one function's description.
func chatBody(model string, msgs []message, tools string, maxTokens int) (*request.Body, error) {
	var sb strings.Builder
	sb.WriteString(`{"model":`)
	sb.WriteString(strconv.Quote(model))
	sb.WriteString(`,"messages":[`)
	for i, m := range msgs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"role":"`)
		sb.WriteString(m.role)
		sb.WriteString(`","content":"`)
		sb.WriteString(m.content)
		sb.WriteString(`"}`)
	}
	sb.WriteString(`]`)
	if tools != "" {
		sb.WriteString(`,"tools":[{"type":"function","function":{"name":"tool","description":"`)
		sb.WriteString(tools) // generated text needs no escaping
		sb.WriteString(`"}}]`)
	}
	sb.WriteString(`,"max_tokens":`)
	sb.WriteString(strconv.Itoa(maxTokens))
	sb.WriteString(`,"stream":true,"stream_options":{"include_usage":true}}`)
	b, err := request.Parse(request.ChatCompletions, []byte(sb.String()))
	if err != nil {
		return nil, fmt.Errorf("generated chat body: %w", err)
	}
	return b, nil
}

// chatTokens appends the engine's view of a chat turn: a role marker and the
// content, tokenized separately so that a conversation's token prefix is
// stable as turns are appended (a chat template does the same).
func chatTokens(dst []uint32, m message) []uint32 {
	dst = tokenize.Append(dst, "<|"+m.role+"|>\n")
	return tokenize.Append(dst, m.content)
}
