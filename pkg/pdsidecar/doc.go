// Package pdsidecar is a decode sidecar for prefill/decode (P/D)
// disaggregation, as llm-d's pd-sidecar with vLLM's NixlConnector: an
// http.Handler in front of a decode model server that runs a request's
// prefill on the endpoint the EPP named.
//
// A POST to /v1/completions, /v1/chat/completions, /v1/messages (vLLM's
// Anthropic endpoint) or /inference/v1/generate (vLLM's token-in endpoint)
// carrying the request header x-prefiller-host-port: <host:port> is served
// in three steps:
//
//  1. The request is sent to http://<host:port> on the same path, as a
//     prefill: max_tokens 1 (and max_completion_tokens 1 if the request set
//     it; for generate, sampling_params.max_tokens 1), stream false, no stream_options, and kv_transfer_params
//     {"do_remote_decode": true, "do_remote_prefill": false, the remote_*
//     fields null}.
//  2. The prefiller answers a normal completion whose kv_transfer_params
//     tell where its KV is (do_remote_prefill true, remote_block_ids,
//     remote_engine_id, remote_host, remote_port).
//  3. The original request, with those kv_transfer_params added, goes to
//     the local server, which pulls the KV instead of computing the prefill.
//     Its answer (streamed or not) is the client's, with the response header
//     x-openepp-prefilled-by: <host:port>.
//
// Everything else (neither routing header below, other paths, other
// methods) goes to the local server unchanged, except that
// x-prefiller-host-port and x-kv-cache-source-host-port are never
// forwarded.
// The paths llm-d disaggregates but this package does not (/v1/responses,
// SGLang's /generate) still decode locally, marked x-openepp-pd-fallback:
// unsupported-path, so the skipped prefill is never silent (llm-d #1461).
//
// # P2P KV pulls
//
// A POST on the same paths carrying x-kv-cache-source-host-port: <host:port>
// (set by the EPP's p2p-source-producer: a peer holding more of the
// prompt's prefix in its KV cache than this server) makes the server that
// computes the prompt pull that prefix from the peer, as llm-d's routing
// sidecar does for vLLM's OffloadingConnector: its kv_transfer_params get
// "p2p": {"kv_request_id": <fresh UUID>, "remote_host": <source host>,
// "remote_port": <port>}, the port being Options.P2PConnectorPort when set
// (llm-d's --p2p-connector-port, one connector per host) and the header's
// otherwise (the simulator's peers share a host). The server computing the
// prompt is the prefiller when x-prefiller-host-port names one (the block
// goes on the prefill request, beside do_remote_decode), and the local
// server otherwise, or when the prefill failed and the request falls back
// to a local prefill. No server pulls from itself: no block goes to a
// prefiller, or to the local server (the address the request reached the
// sidecar at), that is the source; with P2PConnectorPort set, same host
// means same server. With the header present the sidecar owns the block:
// a client-sent kv_transfer_params.p2p is replaced, or removed when no
// pull is asked; without the header the body is left as it is. On other
// paths the header is dropped and nothing pulled.
//
// # Failures
//
// A routing header (x-prefiller-host-port or x-kv-cache-source-host-port)
// that is not one host:port is refused with 400; a prefiller or KV cache
// source outside Options.AllowedPrefillers (the pool's endpoints) with 403
// (SSRF protection, like llm-d's --enable-ssrf-protection); a body that is
// not a JSON object with 400, as is one naming a source whose
// kv_transfer_params is neither an object nor null; one over
// Options.MaxBodyBytes with 413. A prefill that fails (unreachable,
// Options.PrefillTimeout exceeded, a non-2xx answer, or one without
// kv_transfer_params) does not fail the request: it is decoded locally with
// a full prefill, logged, counted, and marked x-openepp-pd-fallback:
// <reason>. A client that goes away cancels the prefill call. The
// sidecar's own error answers (these, and LocalURL's 502) are JSON in
// Anthropic's shape ({"type":"error","error":{"type","message"}}) on
// /v1/messages and OpenAI's ({"error":{"message","type","code"}}) elsewhere.
//
// # Metrics (on Options.Registerer)
//
//   - openepp_pd_sidecar_requests_total{result}: POSTs on the disaggregated
//     paths (and /v1/responses) by result: passthrough (no prefiller named),
//     disaggregated, fallback, rejected (400/403/413), canceled (the client
//     left during the prefill).
//   - openepp_pd_sidecar_prefill_calls_total{outcome}: success, failure,
//     canceled.
//   - openepp_pd_sidecar_fallbacks_total{reason}: unreachable, timeout,
//     error-status, no-kv-transfer-params, unsupported-path.
//   - openepp_pd_sidecar_prefill_duration_seconds: every prefill call that
//     ended (success or failure).
//   - openepp_pd_sidecar_p2p_pulls_total{leg}: requests sent with a p2p
//     block, by the leg carrying it: prefill, local (no prefiller, or a
//     fallback).
//
// The simulator (package sim, cmd/sim --pd-sidecar) puts a sidecar in front
// of each instance, on the instance's own port, through sim.Config.Frontend
// and Options.Wrap.
package pdsidecar
