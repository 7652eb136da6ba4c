package request

import "encoding/binary"

// A JSON validator tuned for request bodies, which are mostly long strings:
// string contents are skipped eight bytes at a time (swar.go) instead of by
// the per-byte state machine of encoding/json, which makes validation
// several times faster on large prompts. FuzzValid checks it agrees with json.Valid.

// maxDepth bounds nesting so hostile bodies cannot exhaust the stack.
const maxDepth = 10000

// plain marks bytes that need no attention inside a string.
var plain = func() (t [256]bool) {
	for i := 0x20; i < 256; i++ {
		t[i] = i != '"' && i != '\\'
	}
	return t
}()

// validJSON reports whether b is one valid JSON value, and if not, the
// offset where it stops being valid.
func validJSON(b []byte) (bool, int) { return validate(b, nil) }

// validate is validJSON that also calls top, if not nil, with each member
// of b's top-level object as it passes it (the raw key, still escaped,
// and the value's span), so that reading a body's fields costs no second
// walk over its bytes. Members come before the rest of b is checked: a
// caller keeps what top saw only if b turns out valid.
func validate(b []byte, top func(key []byte, value span)) (bool, int) {
	v := validator{b: b}
	i := skipSpace(b, 0)
	var ok bool
	if top != nil && i < len(b) && b[i] == '{' {
		i, ok = v.object(i, 1, top)
	} else {
		i, ok = v.value(i, 0)
	}
	if !ok {
		return false, i
	}
	i = skipSpace(b, i)
	return i == len(b), i
}

type validator struct{ b []byte }

func (v *validator) value(i, depth int) (int, bool) {
	b := v.b
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return v.str(i)
	case c == '{':
		return v.object(i, depth+1, nil)
	case c == '[':
		return v.array(i, depth+1)
	case c == 't':
		return v.literal(i, "true")
	case c == 'f':
		return v.literal(i, "false")
	case c == 'n':
		return v.literal(i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return v.number(i)
	}
	return i, false
}

func (v *validator) literal(i int, lit string) (int, bool) {
	if len(v.b)-i >= len(lit) && string(v.b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}

func (v *validator) str(i int) (int, bool) {
	b := v.b
	for i++; i < len(b); i++ {
		if i = skipPlain(b, i); i >= len(b) {
			break
		}
		switch b[i] {
		case '"':
			return i + 1, true
		case '\\':
			n, ok := v.escape(i)
			if !ok {
				return n, false
			}
			i = n - 1
		default: // control character
			return i, false
		}
	}
	return i, false
}

// escape validates the escape sequence at b[i] == '\\' and returns the index
// after it.
func (v *validator) escape(i int) (int, bool) {
	b := v.b
	if i+1 >= len(b) {
		return i, false
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2, true
	case 'u':
		if i+6 > len(b) {
			return i, false
		}
		for _, h := range b[i+2 : i+6] {
			if !isHex(h) {
				return i, false
			}
		}
		return i + 6, true
	}
	return i, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (v *validator) number(i int) (int, bool) {
	b := v.b
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return i, false
	}
	if b[i] == '0' {
		i++
	} else if n := digits(b, i); n > i {
		i = n
	} else {
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		n := digits(b, i+1)
		if n == i+1 {
			return n, false
		}
		i = n
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		n := digits(b, i)
		if n == i {
			return n, false
		}
		i = n
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i+8 <= len(b) {
		n := digitRun(binary.LittleEndian.Uint64(b[i:]))
		i += n
		if n < 8 {
			return i
		}
	}
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// object validates the object at b[i] == '{', calling top, when not nil,
// with each member (the root object's, for validate's caller).
func (v *validator) object(i, depth int, top func(key []byte, value span)) (int, bool) {
	b := v.b
	if depth > maxDepth {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		keyStart := i
		var ok bool
		if i, ok = v.str(i); !ok {
			return i, false
		}
		key := b[keyStart+1 : i-1]
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		valueStart := skipSpace(b, i+1)
		if i, ok = v.value(valueStart, depth); !ok {
			return i, false
		}
		if top != nil {
			top(key, span{valueStart, i})
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		if i >= len(b) || b[i] != ',' {
			return i, false
		}
		i = skipSpace(b, i+1)
	}
}

func (v *validator) array(i, depth int) (int, bool) {
	b := v.b
	if depth > maxDepth {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = v.value(i, depth); !ok {
			return i, false
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		if i >= len(b) || b[i] != ',' {
			return i, false
		}
		i = skipSpace(b, i+1)
	}
}
