package precise

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// Keys: xxhash64 of the parent block's key followed by the block's token
// IDs (little-endian), so a key names a block together with everything
// before it. A prompt's first block chains from a root that folds in the
// seed and the LoRA adapter, so blocks of different adapters never match.

// seedOf is the key every root starts from.
func seedOf(hashSeed string) uint64 { return xxhash.Sum64String("openepp-precise\x00" + hashSeed) }

// rootKey is the parent key of a prompt's first block for an adapter
// ("" for the base model).
func rootKey(seed uint64, lora string) uint64 {
	d := digestFrom(seed)
	_, _ = d.WriteString(lora)
	return d.Sum64()
}

// digestFrom starts a digest of what follows the key k (a value, so that
// it stays on the caller's stack).
func digestFrom(k uint64) xxhash.Digest {
	var d xxhash.Digest
	d.Reset()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], k)
	_, _ = d.Write(b[:])
	return d
}

// chainKey is the key of the block of tokens that follows parent.
func chainKey(parent uint64, tokens []uint32) uint64 {
	var d xxhash.Digest
	d.Reset()
	var buf [256]byte // the parent, then tokens 62 at a time
	binary.LittleEndian.PutUint64(buf[:8], parent)
	n := 8
	for _, t := range tokens {
		if n+4 > len(buf) {
			_, _ = d.Write(buf[:n])
			n = 0
		}
		binary.LittleEndian.PutUint32(buf[n:], t)
		n += 4
	}
	_, _ = d.Write(buf[:n])
	return d.Sum64()
}

// AppendKeys appends the keys of tokens' full blocks of blockSize, at most
// limit of them (0: no limit), chained from root.
func AppendKeys(dst []uint64, root uint64, tokens []uint32, blockSize, limit int) []uint64 {
	n := len(tokens) / blockSize
	if limit > 0 {
		n = min(n, limit)
	}
	k := root
	for i := 0; i < n; i++ {
		k = chainKey(k, tokens[i*blockSize:(i+1)*blockSize])
		dst = append(dst, k)
	}
	return dst
}

// Root returns the root key of a request for an adapter ("" for the base
// model) with a cache_salt ("" for none).
func (ix *Index) Root(lora, salt string) uint64 {
	k := rootKey(ix.seed, lora)
	if salt != "" {
		k = saltedKey(k, salt)
	}
	return k
}

// saltedKey folds a request's cache_salt into the key its first block
// chains from, as vLLM folds it into that block's hash: blocks of
// different salts never match.
func saltedKey(root uint64, salt string) uint64 {
	d := digestFrom(root)
	_, _ = d.WriteString("\x00cache_salt\x00")
	_, _ = d.WriteString(salt)
	return d.Sum64()
}
