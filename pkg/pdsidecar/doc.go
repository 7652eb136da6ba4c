// Package pdsidecar is a decode sidecar for prefill/decode (P/D)
// disaggregation, as llm-d's pd-sidecar with vLLM's NixlConnector: an
// http.Handler in front of a decode model server that runs a request's
// prefill on the endpoint the EPP named.
//
// A POST to /v1/completions, /v1/chat/completions or /v1/messages (vLLM's
// Anthropic endpoint) carrying the request header x-prefiller-host-port:
// <host:port> is served in three steps:
//
//  1. The request is sent to http://<host:port> on the same path, as a
//     prefill: max_tokens 1 (and max_completion_tokens 1 if the request set
//     it), stream false, no stream_options, and kv_transfer_params
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
// Everything else (no header, other paths, other methods) goes to the local
// server unchanged, except that x-prefiller-host-port is never forwarded.
// The paths llm-d disaggregates but this package does not (/v1/responses)
// still decode locally, marked x-openepp-pd-fallback: unsupported-path, so
// the skipped prefill is never silent (llm-d #1461).
//
// # Failures
//
// A header that is not one host:port is refused with 400; a prefiller
// outside Options.AllowedPrefillers with 403 (SSRF protection, like llm-d's
// --enable-ssrf-protection); a body that is not a JSON object with 400, one
// over Options.MaxBodyBytes with 413. A prefill that fails (unreachable,
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
//     paths (and /v1/responses) by result: passthrough (no header),
//     disaggregated, fallback, rejected (400/403/413), canceled (the client
//     left during the prefill).
//   - openepp_pd_sidecar_prefill_calls_total{outcome}: success, failure,
//     canceled.
//   - openepp_pd_sidecar_fallbacks_total{reason}: unreachable, timeout,
//     error-status, no-kv-transfer-params, unsupported-path.
//   - openepp_pd_sidecar_prefill_duration_seconds: every prefill call that
//     ended (success or failure).
//
// The simulator (package sim, cmd/sim --pd-sidecar) puts a sidecar in front
// of each instance, on the instance's own port, through sim.Config.Frontend
// and Options.Wrap.
package pdsidecar
