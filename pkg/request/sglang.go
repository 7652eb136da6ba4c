package request

import (
	"fmt"
)

// SGLang's native API (POST /generate, llm-d's sglanghttp-parser) gives the
// prompt as text or as input_ids (or embeddings), each either one prompt or
// a batch (a list of them), sampling parameters nested, the LoRA adapter as
// lora_path and no model. Its answer counts tokens in meta_info.

// readSGLangMember records input_ids, an SGLang prompt's alternative to
// text, and the adapter, which stands for the model: the EPP routes
// adapters by model name, as vLLM's requests name them.
func (b *Body) readSGLangMember(key string, v span, val []byte) error {
	switch key {
	case "input_ids":
		b.inputIDs = v
	case "lora_path":
		if val[0] != '[' { // a batch names one adapter per prompt: none wins
			return decodeField("lora_path", val, &b.Model)
		}
	}
	return nil
}

// sglangPrompt settles which member is the prompt: text or input_ids (both
// is an error, as in SGLang). A body with neither (embeddings, or another
// server's /generate, such as TGI's {"inputs": …}) is routed without a
// prompt to match, and the server answers for it. A single list of IDs is
// packed like a vLLM generate prompt; a batch (a list of texts or of ID
// lists) is matched on its raw JSON, as a completions batch is.
func (b *Body) sglangPrompt() error {
	hasText := len(b.Prompt) > 0 && string(b.Prompt) != "null"
	hasIDs := b.inputIDs.ok() && string(b.Raw[b.inputIDs.start:b.inputIDs.end]) != "null"
	switch {
	case hasText && hasIDs:
		return fmt.Errorf("%w: give one of \"text\" and \"input_ids\", not both", ErrMalformed)
	case hasIDs:
		b.prompt, b.Prompt = b.inputIDs, b.Raw[b.inputIDs.start:b.inputIDs.end]
	case hasText:
	default:
		b.Prompt = nil
		return nil
	}
	p := b.Prompt
	switch {
	case p[0] == '"' && hasText:
		return nil
	case p[0] != '[':
		return fmt.Errorf("%w: a prompt must be a string or an array", ErrMalformed)
	}
	i := skipSpace(p, 1)
	switch {
	case p[i] == ']':
		return fmt.Errorf("%w: the prompt must not be empty", ErrMissingPrompt)
	case hasIDs && p[i] != '[':
		return b.packTokens("input_ids")
	}
	return nil
}
