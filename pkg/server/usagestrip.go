package server

import (
	"bytes"
	"slices"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// usageStripper removes from a streamed OpenAI response the usage event
// (`"choices":[]` with a `"usage"` object, sent last) that the EPP asked the
// server for on the client's behalf (Options.IncludeStreamUsage): the EPP
// reads the token counts, the client gets the stream it asked for.
//
// Complete events pass at once; only an event's unfinished tail is held
// until the chunk that completes it, which no SSE client could use earlier
// anyway. An event past maxHeldEvent bytes without an end gives up: it and
// the rest of the stream pass untouched. All methods are safe on a nil
// *usageStripper, which passes bodies through.
type usageStripper struct {
	held   []byte
	giveUp bool
}

// maxHeldEvent bounds the unfinished event held back.
const maxHeldEvent = 1 << 20

// rewrite returns the bytes to forward for chunk; ok is false when there is
// nothing to send yet. final flushes everything.
func (u *usageStripper) rewrite(chunk []byte, final bool) (out []byte, ok bool) {
	if u == nil || u.giveUp {
		return chunk, true
	}
	buf := chunk
	if len(u.held) > 0 {
		buf = append(u.held, chunk...)
		u.held = nil
	}
	end := len(buf)
	if !final {
		end = lastEventEnd(buf)
	}
	out, rest := u.drop(buf[:end]), buf[end:]
	switch {
	case len(rest) > maxHeldEvent:
		u.giveUp = true
		out = append(slices.Clip(out), rest...)
	case len(rest) > 0:
		u.held = slices.Clone(rest)
	}
	return out, len(out) > 0 || final
}

// dropLength removes the response content-length, which dropping an event
// would make wrong; the proxy then sends the body chunked.
func (u *usageStripper) dropLength(common *extprocv3.CommonResponse, headers map[string]string) {
	if u == nil || headers["content-length"] == "" {
		return
	}
	if common.HeaderMutation == nil {
		common.HeaderMutation = &extprocv3.HeaderMutation{}
	}
	common.HeaderMutation.RemoveHeaders = append(common.HeaderMutation.RemoveHeaders, "content-length")
}

// drop returns events without the usage events; events itself when it has
// none.
func (*usageStripper) drop(events []byte) []byte {
	var out []byte
	kept := 0 // events[:kept] is in out (or nothing was dropped yet)
	for start := 0; start < len(events); {
		end := nextEventEnd(events, start)
		if usageEvent(events[start:end]) {
			out = append(out, events[kept:start]...)
			kept = end
		}
		start = end
	}
	if kept == 0 {
		return events
	}
	return append(out, events[kept:]...)
}

// eventEnds are the blank lines that end an SSE event.
var eventEnds = [...][]byte{[]byte("\n\n"), []byte("\r\n\r\n"), []byte("\r\r")}

// nextEventEnd is the end of the event starting at from (past its blank
// line), or len(b) when it has none.
func nextEventEnd(b []byte, from int) int {
	best := len(b)
	for _, sep := range eventEnds {
		if i := bytes.Index(b[from:], sep); i >= 0 && from+i+len(sep) < best {
			best = from + i + len(sep)
		}
	}
	return best
}

// lastEventEnd is the end of b's last complete event, 0 for none.
func lastEventEnd(b []byte) int {
	last := 0
	for _, sep := range eventEnds {
		if i := bytes.LastIndex(b, sep); i >= 0 {
			last = max(last, i+len(sep))
		}
	}
	return last
}

// usageEvent reports an event whose data is a usage-only chunk: no choices
// and a usage object.
func usageEvent(ev []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(ev, "\r\n"), []byte("data:")) &&
		memberIs(ev, `"choices"`, '[', ']') && memberIs(ev, `"usage"`, '{', 0)
}

// memberIs reports whether key is followed (after a colon and blanks) by
// open and, when close is not 0, by close right after it.
func memberIs(ev []byte, key string, open, close byte) bool {
	i := bytes.Index(ev, []byte(key))
	if i < 0 {
		return false
	}
	rest := bytes.TrimLeft(ev[i+len(key):], " \t")
	if len(rest) == 0 || rest[0] != ':' {
		return false
	}
	rest = bytes.TrimLeft(rest[1:], " \t")
	if len(rest) == 0 || rest[0] != open {
		return false
	}
	if close == 0 {
		return true
	}
	rest = bytes.TrimLeft(rest[1:], " \t")
	return len(rest) > 0 && rest[0] == close
}
