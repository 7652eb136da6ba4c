// Package precise is llm-d's precise prefix-cache routing: an exact index of
// the KV blocks each model server holds, kept from the servers' own KV
// events (vLLM's BlockStored / BlockRemoved / AllBlocksCleared over
// ZeroMQ, package kvevents), and matched against the request's token IDs,
// which a token-producer gets from the model server's own tokenizer.
//
// The approximate producer (package prefix) guesses what a server holds
// from where the EPP sent prompts; this one knows, so it sees evictions,
// blocks another EPP replica placed, and prompts that differ in bytes but
// tokenize alike. The cost is a tokenizer round trip per request and an
// event stream per server.
//
// The index keys blocks by its own chained hash of the block's token IDs,
// computed the same way from a request's tokens and from an event's
// token_ids. The engine's block hashes (vLLM's depend on a per-process seed
// the EPP cannot know) serve only to find, on removal, the key a block was
// stored under, and to chain a stored block to its parent.
package precise
