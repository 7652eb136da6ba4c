// Package p2psource is llm-d's p2p-source-producer: it names, per request,
// a peer model server holding more of the prompt's prefix in its KV cache
// than the server that will compute it, in the request header
// x-kv-cache-source-host-port, so the routing sidecar has that server pull
// the blocks from the peer (vLLM's OffloadingConnector P2P tier) instead
// of recomputing them.
//
// It lets placement and cache part ways: a config may balance load first
// and still reuse a prefix cached elsewhere, at the price of a transfer
// rather than a prefill. Package pdsidecar turns the header into
// kv_transfer_params; the simulator (package sim, and the fleet's engine
// through engine.Request.PullTokens) serves the pull.
package p2psource
