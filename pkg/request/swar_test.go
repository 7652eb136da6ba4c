package request

import (
	"encoding/binary"
	"testing"
)

// TestSkipsAgreeWithBytewise puts every byte value at every position of a
// 20-byte run (two words and a tail) over backgrounds of plain bytes chosen
// to provoke borrows in the word tests (0x20, 0x21, 0x7f, 0x80, 0xff, the
// neighbours of '"' and '\\'), and compares with a byte-at-a-time scan.
func TestSkipsAgreeWithBytewise(t *testing.T) {
	bytewise := func(b []byte, stop func(byte) bool) int {
		i := 0
		for i < len(b) && !stop(b[i]) {
			i++
		}
		return i
	}
	for _, bg := range []byte{0x20, 0x21, '"' - 1, '"' + 1, '\\' - 1, '\\' + 1, 0x7f, 0x80, 0xff, 'a'} {
		for pos := range 20 {
			for c := range 256 {
				b := make([]byte, 20)
				for i := range b {
					b[i] = bg
				}
				b[pos] = byte(c)
				if got, want := skipPlain(b, 0), bytewise(b, func(x byte) bool { return !plain[x] }); got != want {
					t.Fatalf("skipPlain: byte %#x at %d over %#x: %d, want %d", c, pos, bg, got, want)
				}
				if got, want := skipToQuoteOrBackslash(b, 0), bytewise(b, func(x byte) bool { return x == '"' || x == '\\' }); got != want {
					t.Fatalf("skipToQuoteOrBackslash: byte %#x at %d over %#x: %d, want %d", c, pos, bg, got, want)
				}
			}
		}
	}
}

// TestDigitWordsAgreeWithBytewise puts every byte value at every position
// of a word of digits (each digit as background), and after runs of every
// length, comparing digitRun and digitsValue with a byte-at-a-time parse.
func TestDigitWordsAgreeWithBytewise(t *testing.T) {
	for bg := byte('0'); bg <= '9'; bg++ {
		for pos := range 8 {
			for c := range 256 {
				var w [8]byte
				for i := range w {
					w[i] = bg + byte(i)%('9'-bg+1)
				}
				w[pos] = byte(c)
				n, v := 0, uint64(0)
				for n < 8 && w[n] >= '0' && w[n] <= '9' {
					v = v*10 + uint64(w[n]-'0')
					n++
				}
				x := binary.LittleEndian.Uint64(w[:])
				if got := digitRun(x); got != n {
					t.Fatalf("digitRun(%q) = %d, want %d", w, got, n)
				}
				if n > 0 && n < 8 {
					if got := digitsValue(x, n); got != v {
						t.Fatalf("digitsValue(%q, %d) = %d, want %d", w, n, got, v)
					}
				}
			}
		}
	}
}
