// Package mmcache is llm-d's multimodal encoder-cache affinity: a model
// server that has already encoded an image (or an audio clip, or a video)
// keeps its embeddings for a while, so a later request carrying the same
// item is cheaper there. mm-embeddings-cache-producer hashes each
// request's multimodal items and remembers, per endpoint, the items
// recently routed there; mm-embeddings-cache-scorer prefers the endpoints
// that hold the larger share of the request's items.
//
// What the EPP remembers is its own routing, not the servers' caches: an
// item counts as held by the endpoints it was sent to until the endpoint's
// LRU pushes it out. It is a hint for routing, never relied on for
// correctness.
//
// An item is identified by how the request references it: its kind
// (image, audio, video) and its URL, file ID or inline base64 data (a data:
// URL by its payload, so the same bytes inline in a chat data URL and in an
// Anthropic base64 block are one item). The same picture at two URLs is two
// items; the EPP never fetches or decodes media.
package mmcache
