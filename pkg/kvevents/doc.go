// Package kvevents speaks vLLM's KV-cache event protocol: the batches of
// BlockStored, BlockRemoved and AllBlocksCleared events that a model server
// publishes on a ZeroMQ PUB socket whenever its prefix cache changes
// (vllm --kv-events-config '{"enable_kv_cache_events":true,"publisher":"zmq",
// "endpoint":"tcp://*:5557","topic":"kv@<pod-ip>@<model>"}').
// The EPP subscribes to keep a precise index of which endpoint holds which
// blocks; OpenEPP's vLLM simulator publishes.
//
// # Wire format
//
// A ZeroMQ message has three frames: the topic, the sequence number as 8
// bytes big-endian (counting batches from 0 per publisher), and a msgpack
// payload, the batch: [ts float64, events array, data_parallel_rank int]
// where the rank may be missing or nil. vLLM writes events in one of two
// layouts, and Decode accepts both:
//
//   - array (older vLLM releases; what llm-d's router decodes):
//     ["BlockStored", block_hashes, parent_block_hash, token_ids,
//     block_size, lora_id, medium, lora_name, ...newer fields]
//   - map (newer vLLM, msgspec without array_like):
//     {"type": "BlockStored", "block_hashes": ..., ...}
//
// Trailing fields an older vLLM leaves out take their zero value; fields a
// newer one adds are skipped; events with a tag this package does not know
// are counted in Batch.Unknown and skipped. Of the fields current vLLM
// added, BlockStored's extra_keys (per block: the LoRA name, multimodal
// identifiers, cache_salt, prompt-embedding digests), group_idx and
// kv_cache_spec_kind (hybrid models cache each attention kind in its own
// group) and BlockRemoved's group_idx and remaining_copy_counts are read. The batch itself may also be a
// map {"ts", "events", "data_parallel_rank"}. AppendEncode writes the array
// layout, which every known subscriber reads.
//
// # Hashes
//
// vLLM's ExternalBlockHash is a msgpack integer (signed or unsigned) or,
// with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0, the raw digest as bytes
// (32 bytes of sha256). Both become a Hash, a uint64: an integer keeps its
// 64-bit two's-complement value; bytes are read as a big-endian number
// and reduced modulo 2^64, that is their last 8 bytes. That is exactly
// what vLLM itself sends as the integer form of the same digest
// (int.from_bytes(digest, "big") & (2^64-1)), so a block has the same Hash
// whichever form its server is configured to send, and llm-d's router
// maps digests the same way. For a sha256 digest those 64 bits are as
// collision-resistant as any 64 bits of it.
//
// # Transport
//
// Publisher and Subscriber wrap PUB and SUB sockets. A Subscriber either
// connects to one model server (per-pod mode, reconnecting for as long as
// it runs) or binds one port that every model server connects to (central
// mode). Run reports undecodable messages and gaps in the sequence
// numbers (a *GapError) and keeps going; what to do about missed events is
// the consumer's decision. TCP connections go through a transport of this
// package (transport.go) that protects the process from what zmq4 would
// trust a peer with: frame sizes, handshake time, and reconnecting.
//
// # Libraries
//
// ZeroMQ is github.com/go-zeromq/zmq4, a pure-Go ZMTP implementation, so
// the EPP stays a static, cgo-free binary (libzmq bindings would need cgo
// and the C library in the image); it is maintained by the go-zeromq
// organisation. Msgpack is github.com/vmihailenco/msgpack/v5, a widely
// used, maintained library (llm-d's router uses it too); only its
// streaming Encoder and Decoder are used, never reflection, so decoding
// is strict, fast and allocates little.
package kvevents
