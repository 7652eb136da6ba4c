package server

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// rewriteTarget is the model the request is sent as: a matching
// InferenceModelRewrite rule wins over the rewrite header; "" keeps the
// body's model. Rules apply only to bodies that name a model (a catch-all
// must not invent one for an unparsed passthrough body).
func (x *exchange) rewriteTarget(model string, rnd *rand.Rand) string {
	if rw := x.rewrites(); rw != nil && model != "" {
		if target, rule, ok := rw.Rewrite(model, rnd); ok {
			x.srv.opts.Metrics.rewritten(rule, model, target)
			x.srv.log.V(1).Info("model rewritten", "requestID", x.headers[RequestIDHeader], "model", model, "target", target, "rule", rule)
			return target
		}
	}
	return firstHeader(x.headers, rewriteHeaders)
}

// modelRewriter gives the client back the model name it asked for: the
// model server answers with the name it was sent, so every `"model":"<sent>"`
// and `"model": "<sent>"` in the response body (JSON, or each SSE event)
// becomes the requested name. Matches are found in one left-to-right scan,
// not pattern by pattern, so that overlapping matches in a malformed body
// resolve the same way whichever chunk boundary falls between them.
//
// Chunks pass through at once. The only bytes held back are a chunk's tail
// that could be the start of a pattern split across two chunks (at most one
// pattern length minus one); such a tail is always inside an unfinished JSON
// object, which neither a JSON parser nor an SSE client can use before the
// next chunk arrives, so holding it adds no latency a client can see.
//
// All methods are safe on a nil *modelRewriter, which passes bodies through
// untouched.
type modelRewriter struct {
	from, to [2][]byte
	carry    []byte
}

// modelKey starts both patterns.
var modelKey = []byte(`"model":`)

func newModelRewriter(sent, requested string) *modelRewriter {
	s, r := jsonString(sent), jsonString(requested)
	return &modelRewriter{
		from: [2][]byte{slices.Concat(modelKey, s), slices.Concat(modelKey, []byte(" "), s)},
		to:   [2][]byte{slices.Concat(modelKey, r), slices.Concat(modelKey, []byte(" "), r)},
	}
}

// jsonString is s as a JSON string literal, without HTML escaping (model
// servers do not escape <, > and &).
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// rewrite returns the bytes to forward for chunk; ok is false when there is
// nothing to send yet (the whole chunk may be the start of a pattern). final
// flushes everything.
func (m *modelRewriter) rewrite(chunk []byte, final bool) (out []byte, ok bool) {
	if m == nil {
		return chunk, true
	}
	buf := chunk
	if len(m.carry) > 0 {
		buf = append(m.carry, chunk...)
		m.carry = nil
	}
	out, held := m.replace(buf, final)
	if len(held) > 0 {
		m.carry = slices.Clone(held)
	}
	return out, len(out) > 0 || final
}

// flush returns what is held back, for a body that ends with trailers.
func (m *modelRewriter) flush() []byte {
	if m == nil {
		return nil
	}
	rest := m.carry
	m.carry = nil
	return rest
}

// replace rewrites the matches in b, scanning left to right and resuming
// after each match, and returns the result and the tail of b it held back
// because more bytes could complete a match there (none when final). An
// unchanged b comes back as is, not copied.
func (m *modelRewriter) replace(b []byte, final bool) (out, held []byte) {
	var dst []byte
	done, i := 0, 0 // b[:done] is in dst; the scan resumes at i
	for {
		j := bytes.Index(b[i:], modelKey)
		if j < 0 {
			break
		}
		j += i
		k, partial := m.matchAt(b[j:])
		if partial && !final {
			return appendRest(dst, b[done:j]), b[j:]
		}
		if k < 0 {
			i = j + 1
			continue
		}
		dst = append(append(dst, b[done:j]...), m.to[k]...)
		done = j + len(m.from[k])
		i = done
	}
	keep := 0
	if !final {
		keep = partialKey(b[i:])
	}
	return appendRest(dst, b[done:len(b)-keep]), b[len(b)-keep:]
}

// matchAt reports which pattern s starts with (-1 for none), or partial
// when s is too short to tell but is the start of one.
func (m *modelRewriter) matchAt(s []byte) (k int, partial bool) {
	for k, p := range m.from {
		if bytes.HasPrefix(s, p) {
			return k, false
		}
		if len(s) < len(p) && bytes.HasPrefix(p, s) {
			partial = true
		}
	}
	return -1, partial
}

// partialKey is the length of the longest suffix of b that is a proper
// prefix of modelKey.
func partialKey(b []byte) int {
	for k := min(len(modelKey)-1, len(b)); k > 0; k-- {
		if bytes.HasPrefix(modelKey, b[len(b)-k:]) {
			return k
		}
	}
	return 0
}

// appendRest is dst followed by rest, or rest itself when nothing was
// rewritten.
func appendRest(dst, rest []byte) []byte {
	if dst == nil {
		return rest
	}
	return append(dst, rest...)
}

// dropLength removes the response content-length when the rewrite changes
// the body's length; the proxy then sends the body chunked.
func (m *modelRewriter) dropLength(common *extprocv3.CommonResponse, headers map[string]string) {
	if m == nil || len(m.from[0]) == len(m.to[0]) || headers["content-length"] == "" {
		return
	}
	if common.HeaderMutation == nil {
		common.HeaderMutation = &extprocv3.HeaderMutation{}
	}
	common.HeaderMutation.RemoveHeaders = append(common.HeaderMutation.RemoveHeaders, "content-length")
}
