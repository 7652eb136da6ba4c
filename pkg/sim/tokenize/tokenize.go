// Package tokenize is the simulator's stand-in for a model tokenizer: a
// deterministic, allocation-free splitter that turns text into token IDs.
//
// It exists so that prompt length in tokens, and therefore prefill cost and
// KV-cache block boundaries, depend on the text's content the way a BPE
// tokenizer's do (about four characters per English token). In particular
// token boundaries never line up with fixed character offsets, so the EPP's
// 64-character approximate prefix blocks and the simulator's 16-token KV
// blocks disagree at the edges exactly as they do against a real vLLM.
//
// Rules, applied left to right:
//   - a word (letters, marks, and any non-ASCII letter) is one token, with at
//     most one preceding space folded into it; words longer than MaxPiece
//     runes are split into MaxPiece-rune pieces;
//   - digits form tokens of at most three;
//   - a run of line breaks is one token, and so is a run of extra spaces;
//   - every other rune (punctuation, symbols) is a token of its own, again
//     taking one preceding space.
//
// A token's ID is the 32-bit FNV-1a hash of its bytes, so equal text always
// yields equal IDs, in any process. The one exception keeps the reserved
// range free for the simulator's multimodal placeholders: a hash falling in
// [ReservedBase, ReservedBase+ReservedSize) has its top bit flipped, which
// moves it out (a 1-in-131,072 chance per distinct token).
package tokenize

import (
	"unicode"
	"unicode/utf8"
)

// The reserved ID range: text never tokenizes into it, so an ID in it is
// a multimodal placeholder (package sim lays them out). It is a stretch of
// the 32-bit space that no word of the fleet simulation's generated text (a
// space and one to four lower-case letters, or the letters alone) nor its
// role markers hash into, so reserving it changed none of their IDs and none
// of the fleet's numbers; see TestReservedRangeMissesFleetText.
const (
	ReservedBase uint32 = 0x2c74e000
	ReservedSize uint32 = 1 << 15
)

// Reserved reports whether id is in the reserved range.
func Reserved(id uint32) bool { return id-ReservedBase < ReservedSize }

// MaxPiece is the longest word, in runes, kept as one token.
const MaxPiece = 6

// maxDigits is the longest run of digits kept as one token.
const maxDigits = 3

// class is the lexical class of one rune.
type class uint8

const (
	classWord class = iota
	classDigit
	classSpace
	classBreak
	classOther
)

func classify(r rune) class {
	switch {
	case r == ' ' || r == '\t':
		return classSpace
	case r == '\n' || r == '\r':
		return classBreak
	case r >= '0' && r <= '9':
		return classDigit
	case r < utf8.RuneSelf:
		if (r|0x20) >= 'a' && (r|0x20) <= 'z' || r == '_' {
			return classWord
		}
		return classOther
	case unicode.IsLetter(r) || unicode.IsMark(r):
		return classWord
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// Append appends the token IDs of text to dst and returns the extended
// slice. It allocates only when dst must grow.
func Append(dst []uint32, text string) []uint32 {
	for i := 0; i < len(text); {
		n := next(text[i:])
		dst = append(dst, hash(text[i:i+n]))
		i += n
	}
	return dst
}

// Count returns the number of tokens in text without allocating.
func Count(text string) int {
	c := 0
	for i := 0; i < len(text); c++ {
		i += next(text[i:])
	}
	return c
}

// Split returns the tokens of text as substrings, one for each ID Append
// produces.
func Split(text string) []string {
	var out []string
	for i := 0; i < len(text); {
		n := next(text[i:])
		out = append(out, text[i:i+n])
		i += n
	}
	return out
}

// next returns the byte length of the token at the start of s (len(s) > 0).
func next(s string) int {
	r, size := utf8.DecodeRuneInString(s)
	c := classify(r)
	start := 0
	if r == ' ' && attaches(s[1:]) {
		// One leading space belongs to the following word or symbol.
		r2, size2 := utf8.DecodeRuneInString(s[1:])
		start, c, size = 1, classify(r2), size2
	}
	switch c {
	case classWord:
		return start + run(s[start:], classWord, MaxPiece)
	case classDigit:
		return start + run(s[start:], classDigit, maxDigits)
	case classSpace:
		n := run(s, c, len(s))
		if n > 1 && n < len(s) && s[n-1] == ' ' && attaches(s[n:]) {
			n-- // leave the last space to the token that follows
		}
		return n
	case classBreak:
		return run(s, c, len(s))
	}
	return start + size
}

// attaches reports whether s starts with a rune that takes a preceding space.
func attaches(s string) bool {
	if s == "" {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s)
	c := classify(r)
	return c == classWord || c == classDigit || c == classOther
}

// run returns the byte length of the longest prefix of s made of at most
// limit runes of class c.
func run(s string, c class, limit int) int {
	n, runes := 0, 0
	for n < len(s) && runes < limit {
		r, size := utf8.DecodeRuneInString(s[n:])
		if classify(r) != c {
			break
		}
		n += size
		runes++
	}
	if n == 0 {
		// A rune of an unexpected class (cannot happen for valid callers);
		// consume it so scanning always makes progress.
		_, n = utf8.DecodeRuneInString(s)
	}
	return n
}

// hash is 32-bit FNV-1a over the bytes of s, moved out of the reserved
// range when it falls in it.
func hash(s string) uint32 {
	h := fnv1a(s)
	if Reserved(h) {
		h ^= 1 << 31
	}
	return h
}

func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
