// Package prefix is the approximate prefix-cache index: it remembers which
// endpoints recently served which prompt prefixes, as chained hashes of
// fixed-size prompt blocks, so that prefix-cache-scorer can prefer the
// endpoints most likely to hold a request's prefix in their KV cache.
//
// # What is hashed
//
// The prompt (the raw JSON bytes of the body's prompt field, so equal
// conversation prefixes give equal byte prefixes) is cut into blocks of
// blockSizeTokens×4 bytes; only complete blocks count, at most
// maxPrefixBlocksToMatch of them. Block i's hash is xxhash64 of its bytes
// seeded with block i−1's hash, and block 0 is seeded with a hash of the
// target model and cache_salt. With hashTools a request's tool definitions
// count too, where chat templates render them, after the system prompt, at
// their own size (GIE leaves them out, and so does the default).
// A block hash therefore stands for the whole prefix up to and including
// that block, and different models or salts never share an entry. Hashing
// 64-byte blocks runs at about 3 GB/s (the per-call cost of xxhash
// dominates such short inputs): a 16 KiB prompt, 256 blocks, costs about
// 5 µs; the default cap is 2,048 blocks (128 KiB).
//
// # Layout
//
// The index is split into shards (16 by default) by the top bits of the
// block hash; each shard has a RWMutex and holds:
//
//   - an entry arena: fixed-size chunks of 24-byte entries {hash, endpoint
//     slot, recency stamp, LRU prev/next}, addressed by int32, with a free
//     list. Entries carry no pointers, so the garbage collector never scans
//     them;
//   - per endpoint slot, an intrusive doubly linked LRU list threaded
//     through the arena (head, tail, length, capacity: 16 bytes per
//     endpoint per shard);
//   - an open-addressed, linearly probed table from block hash to its
//     holders, the reverse map hash → endpoints: 16 bytes per slot (keys
//     apart from values, so probing for an absent hash scans packed keys),
//     at most three quarters full (purges shrink it). A hash held by one
//     endpoint stores that entry in the table; a hash held by several
//     points to a vector of (slot, entry) pairs, contiguous int32s carved
//     from the shard's vector store (power-of-two sizes, free lists, no
//     pointers), so reading a block's holders costs a cache line or two,
//     not one miss per holder.
//
// Endpoints get small integer slots from a copy-on-write table read with one
// atomic load; an endpoint is identified by its address (HostPort), so a new
// *Endpoint for a relabelled pod keeps the server's history. One (endpoint,
// block) entry costs its 24 bytes plus its share of the hash table: about
// 59 bytes in all when no two endpoints share a block (BenchmarkIndexMemory;
// the budget is 100; upstream's documentation sizes its index at about 358
// bytes per entry); holders of a shared block share its table slot and add
// 8 bytes each to its vector, up to twice that with the vector's room to
// grow. An
// endpoint's capacity is split evenly across the shards, so eviction is
// exact LRU with one shard and approximately LRU otherwise.
//
// # Costs
//
// Match walks the blocks in order, probing the table once per block and
// reading that block's holders, extending the count of every endpoint that
// held all earlier blocks; it stops at the first block nobody extends. Past
// the first 256 blocks (GIE's whole window, matched exactly) it probes only
// every 16th block and the last, crediting an endpoint up to its last
// probed block: a long prefix the whole pool holds, as every coding agent's
// system prompt and tools are, would otherwise cost blocks × endpoints
// steps. The cost is O(probes + matched (endpoint, probe) pairs), each pair
// a read from a contiguous vector, independent of how many endpoints hold
// nothing, and it allocates only the result. Blocks are taken in windows of
// 1, 1, 2, 4, … up to 64, each under one read lock per shard it touches
// (taken in shard order, so it cannot deadlock with writers, which hold one
// shard at a time): a cold prompt costs a single probe, and a long one a
// few dozen atomic operations instead of two per block, which also lets the
// CPU overlap the cache misses of consecutive probes.
//
// Insert (once per routed request, from PreRequest) writes the blocks last to
// first, so a prompt's first block is its most recent and LRU eviction
// removes prompt tails before heads, as model servers do; it locks each shard
// once. Each block costs one probe, a scan of its holders for the endpoint,
// and at most one O(1) eviction (plus a scan of the evicted block's
// holders). Departed endpoints are purged by Producer.Start every two
// minutes.
//
// Measured on a 2-core Intel Xeon VM against a full index (100 endpoints ×
// 31,250 blocks): matching a 1 KiB prompt held by 8 endpoints ≈ 0.6 µs
// (Produce, hashing included, ≈ 1 µs, 4 allocations); a 100 KiB prompt
// (1,600 blocks, 340 probed) held by 8 ≈ 9 µs (≈ 38 µs with hashing);
// inserting 256 new blocks ≈ 90 µs, mostly cache misses. The worst case is
// every endpoint holding the same long prefix: the 100 KiB prompt held by
// 50 of 100 endpoints whole and the other 50 in half ≈ 43 µs (0.7 ms when
// holders were chained through their scattered entries, 4.5 ms more if
// every block were probed). Export, which copies the index to a starting
// replica, takes about 17 ns per entry (53 ms for the full index), holding
// a shard's read lock for at most 4,096 entries at a time (≈ 75 µs). Run
// `go test -bench . ./pkg/prefix`.
//
// # Approximate versus precise
//
// This index records where the EPP sent requests, not what the model servers
// hold. It is wrong when a server evicted blocks sooner (its cache is
// shared with other prompts and with generated tokens, which this index does
// not see), when the proxy used a fallback endpoint, when the server was
// restarted, when bytes-per-token differs from 4 so block boundaries drift
// from the server's, and across EPP replicas, each of which sees only its
// own traffic. A precise index (llm-d's precise-prefix-cache-producer)
// instead consumes the servers' KV-cache events (blocks stored and removed)
// and hashes token IDs exactly as the engine does, so it mirrors the real
// caches at the price of a tokenizer in the request path and an event
// stream per server. Both produce the same Match and plug into the same
// scorer through Source.
package prefix
