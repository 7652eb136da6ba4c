package scorers

import "github.com/openepp/openepp/pkg/endpoint"

// maxTokenBytes bounds a decoded session token: a Kubernetes namespace (63)
// plus "/" plus an object name (253) fits, with room to spare.
const maxTokenBytes = 512

// base64Values maps a byte to its 6-bit value in the standard or URL-safe
// base64 alphabet, or -1.
var base64Values = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range len(std) {
		t[std[i]] = int8(i)
	}
	t['-'], t['_'] = 62, 63
	return t
}()

// decodeToken decodes a base64 session token into dst and returns the
// decoded length. It accepts the standard and URL-safe alphabets, with or
// without padding, and reads the string in place: encoding/base64 would need
// a []byte copy of the header, an allocation on every scored request.
func decodeToken(dst []byte, tok string) (int, bool) {
	for pad := 0; pad < 2 && len(tok) > 0 && tok[len(tok)-1] == '='; pad++ {
		tok = tok[:len(tok)-1]
	}
	if len(tok)%4 == 1 || len(tok)*6/8 > len(dst) {
		return 0, false
	}
	n, bits := 0, 0
	var acc uint32
	for i := range len(tok) {
		v := base64Values[tok[i]]
		if v < 0 {
			return 0, false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst[n] = byte(acc >> bits)
			n++
		}
	}
	return n, true
}

// tokenNames reports whether a decoded token names e: "namespace/name" as
// llm-d writes it, or e's "ip:port".
func tokenNames(id []byte, e *endpoint.Endpoint) bool {
	ns, name := e.Namespace, e.Name
	if len(id) == len(ns)+1+len(name) && id[len(ns)] == '/' &&
		string(id[:len(ns)]) == ns && string(id[len(ns)+1:]) == name {
		return true
	}
	return string(id) == e.HostPort
}
