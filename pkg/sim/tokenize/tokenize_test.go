package tokenize

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []string
	}{
		{name: "empty", text: "", want: nil},
		{name: "words take one leading space", text: "Hello, world!", want: []string{"Hello", ",", " world", "!"}},
		{name: "long word split", text: "internationalization", want: []string{"intern", "ationa", "lizati", "on"}},
		{name: "digits in threes", text: "x 1234567", want: []string{"x", " 123", "456", "7"}},
		{name: "space runs and breaks", text: "a   b\n\nc", want: []string{"a", "  ", " b", "\n\n", "c"}},
		{name: "trailing space", text: "a ", want: []string{"a", " "}},
		{name: "unicode letters", text: "héllo wörld", want: []string{"héllo", " wörld"}},
		{name: "symbols", text: "a+=b", want: []string{"a", "+", "=", "b"}},
		{name: "invalid utf8 still progresses", text: "a\xffb", want: []string{"a", "\xff", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Split(tc.text)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Split(%q) mismatch (-want +got):\n%s", tc.text, diff)
			}
			if n := Count(tc.text); n != len(tc.want) {
				t.Errorf("Count(%q) = %d, want %d", tc.text, n, len(tc.want))
			}
			if ids := Append(nil, tc.text); len(ids) != len(tc.want) {
				t.Errorf("len(Append(%q)) = %d, want %d", tc.text, len(ids), len(tc.want))
			}
		})
	}
}

func TestAppendDeterministicAndContentDependent(t *testing.T) {
	t.Parallel()
	a := Append(nil, "the quick brown fox")
	b := Append(nil, "the quick brown fox")
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same text gave different IDs:\n%s", diff)
	}
	c := Append(nil, "the quick brown cat")
	if cmp.Equal(a, c) {
		t.Fatalf("different text gave equal IDs %v", a)
	}
	// A shared text prefix gives a shared token prefix.
	if diff := cmp.Diff(a[:3], c[:3]); diff != "" {
		t.Fatalf("shared prefix tokens differ:\n%s", diff)
	}
}

// TestBoundariesNotCharacterAligned guards the property the EPP's tests rely
// on: 16-token blocks do not map onto fixed 64-character blocks.
func TestBoundariesNotCharacterAligned(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("Routing requests to the replica holding their prefix, saves prefill work. ", 20)
	offsets := map[int]bool{}
	pos := 0
	for i, tok := range Split(text) {
		pos += len(tok)
		if (i+1)%16 == 0 {
			offsets[pos%64] = true
		}
	}
	if len(offsets) < 3 {
		t.Fatalf("16-token block ends fall on only %d distinct offsets mod 64", len(offsets))
	}
	chars := utf8.RuneCountInString(text)
	if perTok := float64(chars) / float64(Count(text)); perTok < 3 || perTok > 6 {
		t.Fatalf("%.2f characters per token, want a BPE-like 3..6", perTok)
	}
}

func TestAppendZeroAlloc(t *testing.T) {
	text := strings.Repeat("Some ordinary prompt text, with punctuation and 12345 numbers. ", 50)
	buf := make([]uint32, 0, 4096)
	allocs := testing.AllocsPerRun(20, func() { buf = Append(buf[:0], text) })
	if allocs != 0 {
		t.Fatalf("Append allocated %.1f times per run, want 0", allocs)
	}
}

func BenchmarkAppend(b *testing.B) {
	text := strings.Repeat("Some ordinary prompt text, with punctuation and 12345 numbers. ", 100)
	buf := make([]uint32, 0, 8192)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], text)
	}
}

// TestReservedRangeMissesFleetText pins why the reserved range is where it
// is: no token of the fleet simulation's generated text (words of one to
// four lower-case letters, with or without their leading space) nor of the
// chat markers hashes into it, so reserving it left all their IDs as they
// were.
func TestReservedRangeMissesFleetText(t *testing.T) {
	t.Parallel()
	var word [4]byte
	var check func(n int)
	check = func(n int) {
		if n > 0 {
			for _, s := range []string{string(word[:n]), " " + string(word[:n])} {
				if Reserved(fnv1a(s)) {
					t.Fatalf("%q hashes into the reserved range", s)
				}
			}
		}
		if n == len(word) {
			return
		}
		for c := byte('a'); c <= 'z'; c++ {
			word[n] = c
			check(n + 1)
		}
	}
	check(0)
	markers := "<|system|>\n<|user|>\n<|assistant|>\n<|tool|>\n<|im_start|>system\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<|im_start|>tool\n"
	for _, tok := range Split(markers) {
		if Reserved(fnv1a(tok)) {
			t.Errorf("marker token %q hashes into the reserved range", tok)
		}
	}
}

// TestTextNeverReserved: a token whose hash falls in the reserved range is
// moved out of it.
func TestTextNeverReserved(t *testing.T) {
	t.Parallel()
	var w [6]byte
	for i := 0; ; i++ {
		n := i
		for k := range w {
			w[k] = byte('a' + n%26)
			n /= 26
		}
		s := string(w[:])
		if !Reserved(fnv1a(s)) {
			continue
		}
		if got := Append(nil, s); len(got) != 1 || Reserved(got[0]) || got[0] != fnv1a(s)^1<<31 {
			t.Fatalf("Append(%q) = %#x, raw hash %#x", s, got, fnv1a(s))
		}
		return
	}
}
