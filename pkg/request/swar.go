package request

import (
	"encoding/binary"
	"math/bits"
)

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

// digitRun returns how many of x's bytes, from the lowest (the first in
// memory), are ASCII digits before the first that is not: 8 when all are.
// A byte is not a digit when it is below '0' (below) or, plus 0x46, reaches
// the high bit (above '9'; non-ASCII bytes have it already). Borrows and
// carries run only upward, so the lowest flagged byte is exact.
func digitRun(x uint64) int {
	nonDigit := below(x, '0') | (x+onesBytes*0x46|x)&highBits
	return bits.TrailingZeros64(nonDigit) / 8
}

// digitsValue is the value of the n (1 to 7) leading ASCII digits of x:
// shifted to the top of the word, zero bytes standing in for leading zeros,
// they are combined pairwise into 2-, 4- and 8-digit lanes.
func digitsValue(x uint64, n int) uint64 {
	shift := uint(8 * (8 - n))
	x = x<<shift - (onesBytes*'0')<<shift
	x = (x & 0x0F0F0F0F0F0F0F0F) * (10<<8 + 1) >> 8
	x = (x & 0x00FF00FF00FF00FF) * (100<<16 + 1) >> 16
	return (x & 0x0000FFFF0000FFFF) * (10000<<32 + 1) >> 32
}
