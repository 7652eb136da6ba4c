package request

import (
	"bytes"
	"fmt"
)

// billingHeaderPrefix starts the system text block Claude Code puts in
// front of every request. It carries a per-request hash, so hashed as is it
// would make every request's prompt differ from the first block on; vLLM
// drops it when rendering for the same reason, and so does the prompt the
// EPP hashes.
const billingHeaderPrefix = "x-anthropic-billing-header"

// joinSystem sets Prompt to the system prompt followed by the messages for
// an Anthropic request, the order the chat template renders them, so that
// two requests share a hashed prefix exactly when their rendered prompts
// do, and ToolsAt to where the messages start. Without a system prompt
// Prompt stays the messages member of Raw.
func (b *Body) joinSystem() error {
	if !b.system.ok() {
		return nil
	}
	sys := b.Raw[b.system.start:b.system.end]
	switch sys[0] {
	case 'n': // null
		return nil
	case '"':
		if string(sys) == `""` {
			return nil
		}
		out := make([]byte, 0, len(sys)+1+len(b.Prompt))
		out = append(append(out, sys...), '\n')
		b.ToolsAt = len(out)
		b.Prompt = append(out, b.Prompt...)
		return nil
	case '[':
	default:
		return fmt.Errorf("%w: field \"system\" must be a string or an array of text blocks", ErrMalformed)
	}
	out := make([]byte, 0, len(sys)+1+len(b.Prompt))
	out = append(out, '[')
	kept := 0
	err := arrayElements(sys, func(e span) {
		elem := sys[e.start:e.end]
		if isBillingBlock(elem) {
			return
		}
		if kept > 0 {
			out = append(out, ',')
		}
		out = append(out, elem...)
		kept++
	})
	if err != nil {
		return fmt.Errorf("%w: field \"system\" must be a string or an array of text blocks", ErrMalformed)
	}
	if kept == 0 {
		return nil
	}
	out = append(out, "]\n"...)
	b.ToolsAt = len(out)
	b.Prompt = append(out, b.Prompt...)
	return nil
}

// isBillingBlock reports whether a system block is a text block whose text
// starts with the billing header. The text is compared raw: the prefix has
// no characters JSON would escape.
func isBillingBlock(elem []byte) bool {
	if len(elem) == 0 || elem[0] != '{' || !bytes.Contains(elem, []byte(billingHeaderPrefix)) {
		return false
	}
	billing := false
	_ = topLevel(elem, func(key []byte, v span) {
		if string(key) == "text" && v.ok() && elem[v.start] == '"' {
			billing = bytes.HasPrefix(elem[v.start+1:v.end], []byte(billingHeaderPrefix))
		}
	})
	return billing
}

// arrayElements calls visit with the span of each element of the JSON array
// in b (already validated). It does not allocate.
func arrayElements(b []byte, visit func(span)) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errScan
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for i < len(b) {
		end := skipValue(b, i)
		visit(span{i, end})
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == ']' {
			return nil
		}
		return errScan
	}
	return errScan
}
