package kvevents

import "strings"

// Hash is a KV-cache block hash as vLLM publishes it, normalised to 64
// bits (see the package documentation).
type Hash uint64

// Event is one of *BlockStored, *BlockRemoved and *AllBlocksCleared.
type Event interface{ kvEvent() }

// BlockStored reports blocks that entered the server's prefix cache, in
// prefix order: BlockHashes[i] covers TokenIDs[i*BlockSize:(i+1)*BlockSize]
// and its parent is BlockHashes[i-1], or Parent for the first one. Decode
// does not check that the lengths agree: vLLM sends other shapes (CPU
// offload placeholders without tokens, sliding-window groups), and what to
// index is the consumer's decision.
type BlockStored struct {
	BlockHashes []Hash
	Parent      Hash // valid only when HasParent
	HasParent   bool
	TokenIDs    []uint32
	BlockSize   int
	LoraID      int64 // valid only when HasLoraID
	HasLoraID   bool
	Medium      string // where the blocks live: "GPU", "CPU", ...; "" when not given
	LoraName    string // "" when not given
	// ExtraKeys are, per block, what vLLM folded into its hash besides the
	// tokens (extra_keys): nil when the server sent none, a nil entry for a
	// block with none.
	ExtraKeys []*ExtraKeys
	// Group is the KV-cache group the blocks belong to (a hybrid model,
	// such as one mixing full and sliding-window attention, caches each
	// layer kind in its own group); valid only when HasGroup.
	Group    int
	HasGroup bool
	// SpecKind names the group's attention kind (vLLM's
	// kv_cache_spec_kind: "full_attention", "sliding_window", "mamba",
	// ...); "" when not given.
	SpecKind string
}

// ExtraKeys is one block's extra hash keys, vLLM's extra_keys entry: the
// LoRA adapter's name (or, in older releases, its integer ID) on every
// block of an adapter's request, multimodal identifiers on the blocks
// holding them, the request's cache_salt on its first block, and digests
// of prompt embeddings.
type ExtraKeys struct {
	// Strings and Ints are the string and integer items, in order.
	Strings []string
	Ints    []int64
	// Opaque is the msgpack encoding of every other item (multimodal
	// identifier tuples, embedding digests), concatenated in order: no
	// request's text reproduces them.
	Opaque []byte
}

// BlockRemoved reports blocks evicted from the server's prefix cache.
type BlockRemoved struct {
	BlockHashes []Hash
	Medium      string // "" when not given
	Group       int    // valid only when HasGroup
	HasGroup    bool
	// RemainingCopies, when the server sent it, says per block how many
	// other copies of the same content it still caches (vLLM may cache a
	// block's content twice); a block with copies left is still held.
	RemainingCopies []int
}

// AllBlocksCleared reports that the server emptied its prefix cache.
type AllBlocksCleared struct{}

func (*BlockStored) kvEvent()      {}
func (*BlockRemoved) kvEvent()     {}
func (*AllBlocksCleared) kvEvent() {}

// Batch is the payload of one ZeroMQ message: the events of one engine
// step, in order.
type Batch struct {
	TS        float64 // Unix time in seconds, when the publisher built the batch
	Events    []Event
	DPRank    int // data-parallel rank of the publishing engine; valid only when HasDPRank
	HasDPRank bool
	Unknown   int // events with a tag this package does not know, skipped
}

// Event tags: vLLM's class names.
const (
	tagBlockStored      = "BlockStored"
	tagBlockRemoved     = "BlockRemoved"
	tagAllBlocksCleared = "AllBlocksCleared"
)

// ParseTopic splits a topic of llm-d's form "kv@<address>@<model>" into
// the model server's address and the model name. The first field's value
// is not checked (it is whatever the subscribers filter on); the model
// is everything after the second "@", so it may contain "@" itself. ok is
// false when there are fewer than two "@" or a part is empty.
func ParseTopic(topic string) (address, model string, ok bool) {
	prefix, rest, found := strings.Cut(topic, "@")
	if !found || prefix == "" {
		return "", "", false
	}
	address, model, found = strings.Cut(rest, "@")
	if !found || address == "" || model == "" {
		return "", "", false
	}
	return address, model, true
}
