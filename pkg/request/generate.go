package request

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// GeneratePath is vLLM's token-in, token-out endpoint, which RL frameworks
// and llm-d's vllmhttp-parser use: the prompt is token IDs, the sampling
// parameters are nested.
const GeneratePath = "/inference/v1/generate"

// packTokens replaces the generate request's Prompt (the token_ids array)
// with its IDs packed four bytes each, little-endian. Four bytes per token
// is the ratio prefix matching assumes for text, so a block of
// blockSizeTokens×4 bytes is exactly blockSizeTokens tokens, aligned with
// the server's KV blocks, and equal token prefixes hash alike however the
// client spaces its JSON. It rejects anything but non-negative integers
// that fit a token ID.
func (b *Body) packTokens(field string) error {
	raw := b.Prompt
	// The body is valid JSON, so with no string among them (a quote fails
	// below) the elements are one more than the commas.
	packed := make([]byte, 4*(bytes.Count(raw, comma)+1))
	i := skipSpace(raw, 1) // past '['; checkPrompt saw a non-empty array
	for n := 0; n < len(packed)/4; n++ {
		start, id := i, uint64(0)
		if i+8 <= len(raw) { // most IDs: one word holds the digits and what ends them
			x := binary.LittleEndian.Uint64(raw[i:])
			if d := digitRun(x); d > 0 && d < 8 {
				id, i = digitsValue(x, d), i+d
			}
		}
		for ; i < len(raw) && i-start < 11; i++ {
			d := raw[i] - '0'
			if d > 9 {
				break
			}
			id = id*10 + uint64(d)
		}
		if i == start || i-start > 10 || id > 1<<32-1 || (i < len(raw) && (raw[i] == '.' || raw[i] == 'e' || raw[i] == 'E')) {
			return fmt.Errorf("%w: %s[%d]: want a non-negative integer below 2^32, got %s", ErrMalformed, field, n, firstBytes(raw[start:], 20))
		}
		binary.LittleEndian.PutUint32(packed[4*n:], uint32(id))
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == ']' {
			b.Prompt, b.packed = packed[:4*(n+1)], true
			return nil
		}
		i = skipSpace(raw, i+1) // past ','
	}
	return fmt.Errorf("%w: %s: more elements than commas allow", ErrMalformed, field) // unreachable for valid JSON
}

var comma = []byte{','}

// TokenIDs returns the prompt's token IDs when the request gave them (vLLM
// generate, SGLang input_ids), else nil: other prompts are text.
func (b *Body) TokenIDs() []uint32 {
	if b == nil || !b.packed {
		return nil
	}
	ids := make([]uint32, len(b.Prompt)/4)
	for k := range ids {
		ids[k] = binary.LittleEndian.Uint32(b.Prompt[4*k:])
	}
	return ids
}

// readSamplingParams reads the output limit from the nested sampling_params
// of a vLLM generate (max_tokens) or SGLang (max_new_tokens) request. An
// SGLang batch gives a list, one per prompt: no single limit.
func (b *Body) readSamplingParams(val []byte) error {
	if val[0] == '[' && b.API == SGLangGenerate {
		return nil
	}
	var sp struct {
		MaxTokens    int `json:"max_tokens"`
		MaxNewTokens int `json:"max_new_tokens"`
	}
	err := decodeField("sampling_params", val, &sp)
	b.MaxTokens = sp.MaxTokens
	if b.API == SGLangGenerate {
		b.MaxTokens = sp.MaxNewTokens
	}
	return err
}
