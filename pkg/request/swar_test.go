package request

import "testing"

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
