package precise

import (
	"encoding/binary"

	"github.com/openepp/openepp/pkg/kvevents"
)

// What current vLLM adds to its events: extra hash keys per block, and the
// KV-cache group a store or removal belongs to.

// fullAttention reports whether a cache group of this kind holds a
// prompt's whole prefix, so that a hit there is a prefix-cache hit. A
// hybrid model also caches sliding-window or state-space (mamba) layers in
// groups of their own, with other block sizes and lifetimes; those are not
// indexed. vLLM's kinds: full_attention, mla_attention,
// sink_full_attention, sliding_window, sliding_window_mla,
// chunked_local_attention, mamba, encoder_only_attention, ...
func fullAttention(kind string) bool {
	switch kind {
	case "", "full_attention", "mla_attention", "sink_full_attention":
		return true
	}
	return false
}

// indexedGroup reports whether a store in e's group is indexed, learning
// the group's kind for later removals, which do not carry it.
func (s *server) indexedGroup(e *kvevents.BlockStored) bool {
	full := fullAttention(e.SpecKind)
	if !e.HasGroup {
		return full
	}
	if e.SpecKind == "" {
		return !s.otherGroups[e.Group]
	}
	if full {
		delete(s.otherGroups, e.Group)
	} else {
		if s.otherGroups == nil {
			s.otherGroups = map[int]bool{}
		}
		s.otherGroups[e.Group] = true
	}
	return full
}

// removedFromIndexedGroup reports whether a removal concerns an indexed
// group: any but one a store said is not full attention.
func (s *server) removedFromIndexedGroup(e *kvevents.BlockRemoved) bool {
	return !e.HasGroup || !s.otherGroups[e.Group]
}

// stillCopied reports whether the server keeps another copy of the i-th
// removed block.
func stillCopied(e *kvevents.BlockRemoved, i int) bool {
	return len(e.RemainingCopies) == len(e.BlockHashes) && e.RemainingCopies[i] > 0
}

// extraParent folds block i's extra keys into the key it chains from. The
// adapter's name (or older vLLM's integer ID), on every block of an
// adapter's request, is in the root already. A lone string on the
// prompt's first block is its cache_salt, which a request's Root folds in
// the same way. Anything else (multimodal identifiers, prompt-embedding
// digests, items of an unknown shape) no request's text reproduces: the
// block, and every block after it, gets a key no request matches, since
// vLLM would not reuse them for a text-only prompt either.
func extraParent(parent uint64, e *kvevents.BlockStored, i int) uint64 {
	if i >= len(e.ExtraKeys) || e.ExtraKeys[i] == nil {
		return parent
	}
	x := e.ExtraKeys[i]
	strs, ints := x.Strings, x.Ints
	switch {
	case e.LoraName != "" && len(strs) > 0 && strs[0] == e.LoraName:
		strs = strs[1:]
	case e.HasLoraID && len(ints) > 0 && ints[0] == e.LoraID:
		ints = ints[1:]
	}
	if len(strs) == 0 && len(ints) == 0 && len(x.Opaque) == 0 {
		return parent
	}
	if i == 0 && !e.HasParent && len(strs) == 1 && len(ints) == 0 && len(x.Opaque) == 0 {
		return saltedKey(parent, strs[0])
	}
	return unmatchableKey(parent, strs, ints, x.Opaque)
}

// unmatchableKey folds extra keys no request reproduces into parent.
func unmatchableKey(parent uint64, strs []string, ints []int64, opaque []byte) uint64 {
	d := digestFrom(parent)
	_, _ = d.WriteString("\x00extra_keys\x00")
	var b [8]byte
	for _, s := range strs {
		binary.LittleEndian.PutUint64(b[:], uint64(len(s)))
		_, _ = d.Write(b[:])
		_, _ = d.WriteString(s)
	}
	for _, v := range ints {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		_, _ = d.Write(b[:])
	}
	_, _ = d.Write(opaque)
	return d.Sum64()
}
