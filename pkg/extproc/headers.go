package extproc

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Envoy HTTP connection manager defaults that bound header mutations
// (max_headers_count, max_request_headers_kb).
const (
	maxHeadersCount = 100
	maxHeadersBytes = 60 << 10
)

// header is one entry of a headerMap; keys are lower case, as Envoy sends them.
type header struct{ key, value string }

// headerMap models Envoy's ordered, multi-valued header map, so mutations
// (replace, append, remove) have Envoy's semantics.
type headerMap struct{ entries []header }

// newHeaderMap builds the map Envoy would hold: the pseudo headers first, then
// every value of h under its lower-case name. A "host" entry is dropped
// because Envoy turns it into :authority.
func newHeaderMap(pseudo []header, h http.Header) *headerMap {
	n := len(pseudo)
	for _, vs := range h {
		n += len(vs)
	}
	// Room for SendRequest's content-length and the headers a reply sets.
	m := &headerMap{entries: append(make([]header, 0, n+4), pseudo...)}
	for k, vs := range h {
		lk := strings.ToLower(k)
		if lk == "host" {
			continue
		}
		for _, v := range vs {
			m.entries = append(m.entries, header{lk, v})
		}
	}
	return m
}

func (m *headerMap) get(key string) []string {
	var out []string
	for _, e := range m.entries {
		if e.key == key {
			out = append(out, e.value)
		}
	}
	return out
}

func (m *headerMap) first(key string) string {
	for _, e := range m.entries {
		if e.key == key {
			return e.value
		}
	}
	return ""
}

func (m *headerMap) has(key string) bool {
	for _, e := range m.entries {
		if e.key == key {
			return true
		}
	}
	return false
}

// set replaces every value of key by one value, keeping the position of the
// first occurrence.
func (m *headerMap) set(key, value string) {
	out := m.entries[:0]
	done := false
	for _, e := range m.entries {
		if e.key != key {
			out = append(out, e)
			continue
		}
		if !done {
			out = append(out, header{key, value})
			done = true
		}
	}
	m.entries = out
	if !done {
		m.entries = append(m.entries, header{key, value})
	}
}

func (m *headerMap) add(key, value string) { m.entries = append(m.entries, header{key, value}) }

func (m *headerMap) remove(key string) {
	out := m.entries[:0]
	for _, e := range m.entries {
		if e.key != key {
			out = append(out, e)
		}
	}
	m.entries = out
}

func (m *headerMap) byteSize() int {
	n := 0
	for _, e := range m.entries {
		n += len(e.key) + len(e.value)
	}
	return n
}

// proto encodes the map as Envoy does: lower-case keys, values in raw_value.
// The entries share one allocation and their values another.
func (m *headerMap) proto() *corev3.HeaderMap {
	size := 0
	for _, e := range m.entries {
		size += len(e.value)
	}
	values, raw := make([]corev3.HeaderValue, len(m.entries)), make([]byte, 0, size)
	out := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, len(m.entries))}
	for i, e := range m.entries {
		start := len(raw)
		raw = append(raw, e.value...)
		values[i].Key, values[i].RawValue = e.key, raw[start:len(raw):len(raw)]
		out.Headers[i] = &values[i]
	}
	return out
}

// httpHeader returns the regular (non-pseudo) headers with canonical keys.
// Single values share one backing array, as net/textproto does it; the
// capacity limit makes a repeated header's append copy out of it.
func (m *headerMap) httpHeader() http.Header {
	h := make(http.Header, len(m.entries))
	backing := make([]string, len(m.entries))
	for i, e := range m.entries {
		if strings.HasPrefix(e.key, ":") {
			continue
		}
		k := http.CanonicalHeaderKey(e.key)
		if vs, ok := h[k]; ok {
			h[k] = append(vs, e.value)
			continue
		}
		backing[i] = e.value
		h[k] = backing[i : i+1 : i+1]
	}
	return h
}

// mutationTarget says which header map a mutation applies to, because Envoy
// treats them differently.
type mutationTarget int

const (
	// targetHeaders is request or response headers in FULL_DUPLEX_STREAMED
	// mode: Envoy removes content-length and skips mutations that set it.
	targetHeaders mutationTarget = iota
	// targetTrailers is request or response trailers.
	targetTrailers
	// targetLocalReply is an immediate response: failures are only logged.
	targetLocalReply
)

// mutationLog accumulates what a reply asked for and what Envoy would ignore.
type mutationLog struct {
	set     []HeaderValue
	removed []string
	ignored []string
}

func (l *mutationLog) ignore(format string, args ...any) {
	l.ignored = append(l.ignored, fmt.Sprintf(format, args...))
}

// applyMutation applies mut to m under Envoy's default HeaderMutationRules:
// removals first, then sets. Mutations Envoy ignores are recorded in log; the
// ones it rejects return an error (for targetLocalReply they are ignored too,
// because Envoy only logs them there).
func applyMutation(m *headerMap, mut *extprocv3.HeaderMutation, target mutationTarget, log *mutationLog) error {
	if mut == nil {
		return nil
	}
	if len(mut.GetRemoveHeaders()) > maxHeadersCount || len(mut.GetSetHeaders()) > maxHeadersCount {
		return fmt.Errorf("header mutation has %d removals and %d sets, above Envoy's limit of %d",
			len(mut.GetRemoveHeaders()), len(mut.GetSetHeaders()), maxHeadersCount)
	}
	for _, name := range mut.GetRemoveHeaders() {
		if err := applyRemove(m, name, log); err != nil {
			if target == targetLocalReply {
				log.ignore("local reply: %v", err)
				continue
			}
			return err
		}
	}
	for _, opt := range mut.GetSetHeaders() {
		if err := applySet(m, opt, target, log); err != nil {
			if target == targetLocalReply {
				log.ignore("local reply: %v", err)
				continue
			}
			return err
		}
	}
	if len(m.entries) > maxHeadersCount || m.byteSize() > maxHeadersBytes {
		return fmt.Errorf("headers after mutation: %d entries, %d bytes, above Envoy's limits (%d entries, %d bytes)",
			len(m.entries), m.byteSize(), maxHeadersCount, maxHeadersBytes)
	}
	return nil
}

func applyRemove(m *headerMap, name string, log *mutationLog) error {
	if !validHeaderName(name) {
		return fmt.Errorf("remove_headers: invalid header name %q", name)
	}
	key := strings.ToLower(name)
	if strings.HasPrefix(key, ":") || key == "host" {
		log.ignore("remove %q: pseudo headers and host may never be removed", key)
		return nil
	}
	if strings.HasPrefix(key, "x-envoy") {
		log.ignore("remove %q: x-envoy headers may not be modified", key)
		return nil
	}
	log.removed = append(log.removed, key)
	m.remove(key)
	return nil
}

func applySet(m *headerMap, opt *corev3.HeaderValueOption, target mutationTarget, log *mutationLog) error {
	hv := opt.GetHeader()
	if hv == nil {
		return nil
	}
	if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
		return fmt.Errorf("set_headers %q: both value and raw_value are set", hv.GetKey())
	}
	value := string(hv.GetRawValue())
	if hv.GetValue() != "" {
		log.ignore("set %q: value field ignored, Envoy reads raw_value only and sets an empty value", hv.GetKey())
	}
	if !validHeaderName(hv.GetKey()) || !validHeaderValue(value) {
		return fmt.Errorf("set_headers %q: invalid character in name or value", hv.GetKey())
	}
	if opt.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
		log.ignore("set %q: append_action is ignored by ext_proc, only append is read", hv.GetKey())
	}
	key := strings.ToLower(hv.GetKey())
	if target == targetHeaders && key == "content-length" {
		return nil // removed by Envoy in FULL_DUPLEX_STREAMED mode
	}
	appendValue := opt.GetAppend().GetValue() && m.has(key)
	if reason := disallowed(key, value, appendValue); reason != "" {
		log.ignore("set %q: %s", key, reason)
		return nil
	}
	log.set = append(log.set, HeaderValue{Key: key, Value: value, Append: opt.GetAppend().GetValue()})
	if appendValue {
		m.add(key, value)
	} else {
		m.set(key, value)
	}
	return nil
}

// disallowed returns why Envoy's default mutation checker ignores a set, or
// "" when it is allowed.
func disallowed(key, value string, appendValue bool) string {
	switch {
	case key == "host" || key == ":authority" || key == ":method" || key == ":scheme":
		return "routing headers may not be modified"
	case strings.HasPrefix(key, ":") && appendValue:
		return "pseudo headers take a single value"
	case strings.HasPrefix(key, "x-envoy"):
		return "x-envoy headers may not be modified"
	case key == ":status":
		if code, err := strconv.Atoi(value); err != nil || code < 200 {
			return fmt.Sprintf("invalid :status %q", value)
		}
	}
	return ""
}

// validHeaderName accepts an optional leading ':' followed by RFC 9110 token
// characters (upper case is allowed: Envoy lower-cases the name).
func validHeaderName(name string) bool {
	name = strings.TrimPrefix(name, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validHeaderValue rejects control characters other than HTAB, and DEL.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// HeaderValue is one set_headers entry as the processor sent it.
type HeaderValue struct {
	Key    string
	Value  string
	Append bool
}
