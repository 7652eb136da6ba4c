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
	if rw := x.srv.opts.Rewrites; rw != nil && model != "" {
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
// becomes the requested name.
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

func newModelRewriter(sent, requested string) *modelRewriter {
	s, r := jsonString(sent), jsonString(requested)
	return &modelRewriter{
		from: [2][]byte{slices.Concat([]byte(`"model":`), s), slices.Concat([]byte(`"model": `), s)},
		to:   [2][]byte{slices.Concat([]byte(`"model":`), r), slices.Concat([]byte(`"model": `), r)},
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
	keep := 0
	if !final {
		keep = m.partialTail(buf)
	}
	if keep > 0 {
		m.carry = slices.Clone(buf[len(buf)-keep:])
	}
	out = m.replace(buf[:len(buf)-keep])
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

func (m *modelRewriter) replace(b []byte) []byte {
	for i := range m.from {
		if bytes.Contains(b, m.from[i]) {
			b = bytes.ReplaceAll(b, m.from[i], m.to[i])
		}
	}
	return b
}

// partialTail is the length of the longest suffix of b that is a proper
// prefix of a pattern and starts after the last complete match.
func (m *modelRewriter) partialTail(b []byte) int {
	start := 0
	for _, p := range m.from {
		if i := bytes.LastIndex(b, p); i >= 0 {
			start = max(start, i+len(p))
		}
	}
	longest := max(len(m.from[0]), len(m.from[1])) - 1
	for k := min(longest, len(b)-start); k > 0; k-- {
		tail := b[len(b)-k:]
		if bytes.HasPrefix(m.from[0], tail) || bytes.HasPrefix(m.from[1], tail) {
			return k
		}
	}
	return 0
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
