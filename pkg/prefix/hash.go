package prefix

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// CharsPerToken is the bytes-per-token estimate that turns block sizes in
// tokens into block sizes in prompt bytes, as upstream does.
const CharsPerToken = 4

// Seed returns the value the first block's hash is chained from. It covers
// the target model and the request's cache_salt, so requests for different
// models, or with different salts, never share index entries (vLLM isolates
// salted prefixes the same way). The model's length is hashed first so that
// no (model, salt) pair can collide with another by shifting bytes between
// the two.
func Seed(model, cacheSalt string) uint64 {
	var d xxhash.Digest
	d.Reset()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(model)))
	_, _ = d.Write(n[:])
	_, _ = d.WriteString(model)
	_, _ = d.WriteString(cacheSalt)
	return d.Sum64()
}

// AppendBlockHashes cuts prompt into blocks of blockBytes bytes and appends
// one hash per complete block to dst, at most maxBlocks of them. Block i's
// hash is xxhash64 of its bytes seeded with block i−1's hash (seed for block
// 0), so equal hashes mean equal prefixes up to and including that block. A
// trailing partial block is not hashed: model servers cache only full blocks.
// Hashes are never 0 (0 marks an empty table slot).
func AppendBlockHashes(dst []uint64, seed uint64, prompt []byte, blockBytes, maxBlocks int) []uint64 {
	if blockBytes <= 0 || maxBlocks <= 0 {
		return dst
	}
	n := min(len(prompt)/blockBytes, maxBlocks)
	var d xxhash.Digest
	prev := seed
	for i := range n {
		d.ResetWithSeed(prev)
		_, _ = d.Write(prompt[i*blockBytes : (i+1)*blockBytes])
		prev = fixHash(d.Sum64())
		dst = append(dst, prev)
	}
	return dst
}

// fixHash maps the one reserved value, 0, to 1.
func fixHash(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// AppendBlockHashesWith is AppendBlockHashes over prompt with extra
// inserted at offset at, without copying either: the blocks cut
// prompt[:at] + extra + prompt[at:]. It places a request's tool definitions
// (extra) where the chat template renders them, after the system prompt:
// requests with the same system prompt and other tools share the blocks
// before it and nothing after, and requests with the same tools share them
// too, at their size, as the servers' caches do.
func AppendBlockHashesWith(dst []uint64, seed uint64, prompt []byte, at int, extra []byte, blockBytes, maxBlocks int) []uint64 {
	if len(extra) == 0 {
		return AppendBlockHashes(dst, seed, prompt, blockBytes, maxBlocks)
	}
	if blockBytes <= 0 || maxBlocks <= 0 {
		return dst
	}
	at = min(max(at, 0), len(prompt))
	segs := [3][]byte{prompt[:at], extra, prompt[at:]}
	n := min((len(prompt)+len(extra))/blockBytes, maxBlocks)
	var d xxhash.Digest
	prev := seed
	for i := range n {
		d.ResetWithSeed(prev)
		lo, hi, off := i*blockBytes, (i+1)*blockBytes, 0
		for _, s := range segs { // a digest fed in pieces hashes their concatenation
			if a, b := max(lo, off), min(hi, off+len(s)); a < b {
				_, _ = d.Write(s[a-off : b-off])
			}
			off += len(s)
		}
		prev = fixHash(d.Sum64())
		dst = append(dst, prev)
	}
	return dst
}
