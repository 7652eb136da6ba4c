package request

import (
	"encoding/json"
	"slices"
	"strconv"
)

// Edit is a change to a body's top-level members; the zero value changes
// nothing.
type Edit struct {
	// Model, if not "", replaces the model. A generate body without a
	// model (vLLM's default model) gets one; an SGLang body, which has no
	// model member, is left alone.
	Model string
	// SetPriority writes Priority as the "priority" member (the engine's
	// scheduling priority, in the engine's own convention), replacing the
	// client's value or adding the member.
	SetPriority bool
	Priority    int
	// IncludeUsage asks a streamed OpenAI completion for its token usage
	// (stream_options.include_usage) when the client did not
	// (LacksStreamUsage); other stream_options members are kept.
	IncludeUsage bool
}

// LacksStreamUsage reports a streamed chat or text completion that does not
// ask for its token usage: without it the server's stream carries no token
// counts.
func (b *Body) LacksStreamUsage() bool {
	return b.Stream && !b.IncludeUsage && (b.API == ChatCompletions || b.API == Completions)
}

// withIncludeUsage is a stream_options value with include_usage true and
// its other members kept; anything but an object is replaced.
func withIncludeUsage(value []byte) []byte {
	var members map[string]json.RawMessage
	if json.Unmarshal(value, &members) != nil || members == nil {
		return []byte(`{"include_usage":true}`)
	}
	members["include_usage"] = json.RawMessage("true")
	out, _ := json.Marshal(members) // raw members of a parsed object marshal
	return out
}

// HasPriority reports whether the body carries a top-level "priority"
// member (of any type).
func (b *Body) HasPriority() bool { return b.priority.ok() }

// WithModel returns a copy of the body with the model replaced, as
// Edited(Edit{Model: model}).
func (b *Body) WithModel(model string) []byte { return b.Edited(Edit{Model: model}) }

// Edited returns the body with e applied; every other byte is unchanged, so
// the body's formatting and member order survive. It returns Raw itself
// when there is nothing to change, and a new buffer otherwise. A body that
// was not parsed as a JSON object (API Other with another content type) is
// never changed.
func (b *Body) Edited(e Edit) []byte {
	var edits []memberEdit
	if e.Model != "" {
		quoted, _ := json.Marshal(e.Model)
		switch {
		case b.model.ok():
			edits = append(edits, memberEdit{at: b.model, value: quoted})
		case b.API == Generate:
			edits = append(edits, memberEdit{key: "model", value: quoted})
		}
	}
	// An SGLang batch may give each prompt its own priority (a list): the
	// batch's own choice is kept rather than guessed at.
	if e.SetPriority && b.API != Other && !(b.priority.ok() && b.Raw[b.priority.start] == '[') {
		value := strconv.AppendInt(nil, int64(e.Priority), 10)
		if b.priority.ok() {
			edits = append(edits, memberEdit{at: b.priority, value: value})
		} else {
			edits = append(edits, memberEdit{key: "priority", value: value})
		}
	}
	if e.IncludeUsage && b.LacksStreamUsage() {
		if b.streamOptions.ok() {
			edits = append(edits, memberEdit{at: b.streamOptions, value: withIncludeUsage(b.Raw[b.streamOptions.start:b.streamOptions.end])})
		} else {
			edits = append(edits, memberEdit{key: "stream_options", value: []byte(`{"include_usage":true}`)})
		}
	}
	if len(edits) == 0 {
		return b.Raw
	}
	return applyEdits(b.Raw, edits)
}

// memberEdit replaces the value at span at, or, when at is empty, adds the
// member key as the object's first.
type memberEdit struct {
	at    span
	key   string
	value []byte
}

func applyEdits(raw []byte, edits []memberEdit) []byte {
	open := skipSpace(raw, 0) + 1 // past '{'
	empty := raw[skipSpace(raw, open)] == '}'
	size := len(raw)
	for i := range edits {
		if !edits[i].at.ok() {
			// Added members go right after '{', each followed by a comma
			// unless the object was empty and it is the last one added.
			edits[i].at = span{open, open}
		}
		size += len(edits[i].key) + len(edits[i].value) + 4
	}
	slices.SortStableFunc(edits, func(a, b memberEdit) int { return a.at.start - b.at.start })
	added := 0
	for _, ed := range edits {
		if ed.key != "" {
			added++
		}
	}
	out := make([]byte, 0, size)
	last := 0
	for _, ed := range edits {
		out = append(out, raw[last:ed.at.start]...)
		if ed.key != "" {
			out = append(out, '"')
			out = append(out, ed.key...)
			out = append(out, `":`...)
			out = append(out, ed.value...)
			if added--; added > 0 || !empty {
				out = append(out, ',')
			}
		} else {
			out = append(out, ed.value...)
		}
		last = ed.at.end
	}
	return append(out, raw[last:]...)
}
