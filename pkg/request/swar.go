package request

import "encoding/binary"

// Strings are most of a request body, so the validator and the member scan
// skip their contents eight bytes at a time: a word needs a closer look only
// when one of its bytes is a quote, a backslash or (for the validator) a
// control character. below is the classic word test for "some byte is less
// than n", exact as a yes/no answer for n <= 0x80; below(x^c, 1) finds a
// byte equal to c.
const (
	onesBytes = 0x0101010101010101
	highBits  = 0x8080808080808080
)

// below is non-zero when some byte of x is less than n (n <= 0x80).
func below(x uint64, n byte) uint64 { return (x - onesBytes*uint64(n)) & ^x & highBits }

func hasQuoteOrBackslash(x uint64) uint64 {
	return below(x^(onesBytes*'"'), 1) | below(x^(onesBytes*'\\'), 1)
}

// skipPlain returns the index of the first byte from i on that ends or
// escapes a string or is a control character, or len(b).
func skipPlain(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if hasQuoteOrBackslash(x)|below(x, 0x20) != 0 {
			break
		}
	}
	for i < len(b) && plain[b[i]] {
		i++
	}
	return i
}

// skipToQuoteOrBackslash is skipPlain for validated bodies, whose strings
// hold no control characters.
func skipToQuoteOrBackslash(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if hasQuoteOrBackslash(binary.LittleEndian.Uint64(b[i:])) != 0 {
			break
		}
	}
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	return i
}
