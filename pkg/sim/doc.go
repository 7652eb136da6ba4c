// Package sim is a model-server simulator that behaves like vLLM on the
// wire, so the EPP can be tested and benchmarked without GPUs.
//
// An Instance serves the OpenAI API (/v1/completions, /v1/chat/completions,
// streaming or not, with usage and cached-token counts, cache_salt, and P/D
// and P2P kv_transfer_params; chat tools are rendered into the system turn, after a
// leading system message's text, as Qwen's and Hermes' templates do; image,
// audio and video content parts, below), the Anthropic Messages API as vLLM does
// (/v1/messages and /v1/messages/count_tokens, below), vLLM's token-in/
// token-out /inference/v1/generate (below), SGLang's /generate (below),
// vLLM's /tokenize,
// /v1/models, /health, and Prometheus metrics under
// the names of vLLM, SGLang, TensorRT-LLM serve or Triton TensorRT-LLM
// (reference.md §3.2). Behind the
// API runs engine.Engine in real time; the same engine runs in virtual time
// in the fleet simulation, so the routing benchmark and the integration
// tests exercise one model.
//
// # The model (package engine)
//
// The server is modelled per engine iteration, after BLIS
// (inference-sim/inference-sim, which mirrors vLLM's scheduler):
//
//	iteration = (β0 + β1·uncached prefill tokens + β2·decoding sequences
//	             + PrefillOverhead if a prefill starts) · loadFactor · jitter
//	            + LoRALoadDelay per adapter loaded from disk
//	            + LoRAActivateDelay per adapter moved into a GPU slot
//
// Continuous batching keeps at most max-num-seqs sequences running; others
// wait, first come first served unless the priority policy (below) is set.
// Prompts longer than the max-num-batched-tokens budget are
// prefilled in chunks. The KV cache has N blocks of block-size tokens with
// vLLM-style automatic prefix caching: each full prompt block is keyed by a
// hash chained over all tokens up to it and the model or adapter name;
// blocks are reference counted and unreferenced cached blocks are evicted
// least recently freed first. A request computes only its uncached suffix,
// starts only when free plus evictable blocks can hold its prompt, and
// reports the hit as usage.prompt_tokens_details.cached_tokens. A
// request's cache_salt (a non-empty string; anything else is a 400, as in
// vLLM) is folded into its first block's key, so only requests with the
// same salt share blocks, and a salted one never shares with an unsalted
// one (vLLM's per-tenant cache isolation). A decode
// that finds the cache full preempts the newest sequence (recompute; the
// least urgent under the priority policy). LoRA
// adapters occupy max-loras GPU slots behind a host cache (below).
// Prompts are turned into tokens by package tokenize (words and
// punctuation, about four characters per token).
//
// # LoRA adapters
//
// As in vLLM, adapters live in two tiers: a host (CPU) cache of
// --max-cpu-loras adapters (default: --max-loras) and --max-loras GPU
// slots, whose holders are also in the host cache. A request for an
// adapter resident nowhere costs its first iteration --lora-load-delay
// (disk → host) plus --lora-activate-delay (host → GPU, default 0); one
// only in the host cache costs the activation; one on the GPU nothing. A
// slot is taken from the least recently used adapter no running request
// uses (it stays in the host cache); a full host cache drops its least
// recently used adapter that is not on the GPU. --pinned-loras (adapters of
// --lora-modules, at most --max-loras) hold GPU slots from the start and are
// never evicted. With --max-cpu-loras set, --lora-modules are loaded into
// the host cache at start as far as it holds them; without it adapters load
// on first use and the model is the single tier it was.
// POST /v1/load_lora_adapter reads the adapter into the host cache (as a
// full cache drops one; not when every cached adapter is on the GPU or
// pinned), holding the engine loop for --lora-load-delay as vLLM's load
// between iterations does; /v1/unload_lora_adapter drops it from both tiers
// (requests already running finish). With LoRA enabled
// the vLLM metrics add vllm:lora_adapter_loaded{adapter_name, level="gpu"|
// "cpu", pinned} (1 while resident there, 0 after it left; the 32 longest
// gone are forgotten), vllm:num_gpu_loaded_lora_adapters,
// vllm:max_gpu_lora_adapters and the histogram
// vllm:lora_adapter_load_seconds{transition="load"|"activate"}, all
// labelled model_name.
//
// # Scheduling policy and request priority
//
// Config.SchedulingPolicy (cmd/sim --scheduling-policy) is vLLM's: "fcfs"
// by default, or "priority". Every generation API (completions, chat
// completions, /v1/messages, /inference/v1/generate, SGLang's /generate)
// takes a top-level integer priority: absent or null is 0; a string,
// boolean, object, fraction or a value outside int32 is a 400 in the API's
// error shape naming the field. Under fcfs it is then ignored, as vLLM
// ignores it. Under priority, as in vLLM v1, waiting requests start by
// (priority, arrival), lower first, a preempted request keeps its place in
// that order, and a decode that finds the cache full preempts the running
// sequence with the highest (priority, arrival) instead of the newest;
// admission never preempts, and a request that does not fit still stops
// admission. The value is read as the impersonated engine reads it: as is
// (vLLM: lower is more urgent) except under MetricsEngine "sglang", where
// it is negated, since SGLang runs higher values first by default. See
// package engine for the one simplification.
//
// # Presets (engine.Profile) and their sources (performance.md §3.3, §5.A)
//
//   - blis-l8b-h100: Llama-3.1-8B, H100, TP1, vLLM 0.8.4 as fitted by BLIS:
//     β0 5,752.7 µs, β1 17.25 µs/token, β2 6.00 µs/seq, 29,205 blocks × 16.
//   - blis-l8b-h100-tp2: the TP2 fit: 6,910 µs, 17.67, 2.84; 132,139 blocks.
//   - sim-8b-h100: llm-d-inference-sim's 8B/H100 latency profile: prefill
//     30 ms + 250 µs/token, ITL 12 ms, time-factor-under-load 2.0 (so β0 =
//     12 ms and PrefillOverhead = 30 − 12 ms); KV size from the BLIS fit.
//   - sim-70b-tp8-h100: 80 ms + 500 µs/token, ITL 25 ms, factor 3.0; 461,376
//     tokens of KV (llm-d's Llama-3.1-70B pod).
//   - sim-3b-l40s: 20 ms + 350 µs/token, ITL 15 ms, factor 1.5.
//   - llmd-sim-fast: the llm-d-router perf-suite settings: prefill 5 ms +
//     4 µs/token, ITL 1 ms, 256 seqs, 10,000,000 blocks of 16 (allocated
//     lazily). For router-stress runs only.
//   - qwen32b-tp2: llm-d's Qwen3-32B TP2 anchor: β1 ≈ 63 µs/token (1/15,928
//     tokens/s), 307,328 tokens of KV; β0 = 8 ms is assumed and β2 = 0.3 ms
//     chosen so ITL is 30–45 ms at batch 64–128, as llm-d reports.
//   - fast (default): small latencies for tests and demos (β0 2 ms, prefill
//     overhead 3 ms, 5 µs/token, 20 µs/seq, 32 seqs, 4,096 blocks × 16).
//
// All presets but the BLIS ones use vLLM defaults where nothing is
// published: max-num-seqs 256, max-num-batched-tokens 8,192, block size 16,
// one LoRA slot and a 50 ms adapter load (no published number; the quality
// benchmark sweeps 0/50/200 ms).
//
// # Flags
//
// The llm-d-inference-sim style latency flags map onto the iteration model
// as documented on Latency: inter-token-latency is β0, time-to-first-token
// (or prefill-overhead) is the unloaded TTFT excluding per-token cost,
// prefill-time-per-token is β1, time-factor-under-load is the load factor.
//
// # Prefill/decode disaggregation (kv_transfer_params)
//
// Requests may carry vLLM's NixlConnector kv_transfer_params, as llm-d's
// decode sidecar (package pdsidecar) sends them:
//
//   - do_remote_decode: true makes a prefill-only request: it generates
//     exactly 1 token whatever max_tokens says, and the JSON answer carries
//     kv_transfer_params {do_remote_prefill: true, do_remote_decode: false,
//     remote_block_ids (one synthetic ID per prompt block), remote_engine_id
//     (Instance.EngineID, stable for an address and model), remote_host and
//     remote_port (the instance's address)}. Streaming is refused with 400:
//     the answer's JSON body is what carries the parameters.
//   - do_remote_prefill: true (with remote_engine_id, remote_host,
//     remote_port and remote_block_ids) makes the engine pull the prompt's
//     KV instead of computing it (engine.Request.RemotePrefill): it is
//     admitted like any request (queue order, KV blocks allocated here,
//     local prefix-cache hits taken), pulls the rest of the prompt beside
//     the running batch in KVTransferOverhead + tokens · KVTransferPerToken
//     (presets: 0 + 1 µs/token; flags --kv-transfer-overhead and
//     --kv-transfer-time-per-token), then computes only the last prompt
//     token. TTFT = queueing + transfer + one iteration. As in vLLM, usage
//     reports prompt − 1 cached tokens (pulled tokens count as computed).
//
// Malformed parameters (not an object, wrong types, both flags true,
// do_remote_prefill without its fields, several prompts) get 400 with param
// "kv_transfer_params". The metrics page adds, under every metrics engine,
// openepp_sim_kv_remote_decode_requests_total,
// openepp_sim_kv_remote_prefill_requests_total and
// openepp_sim_kv_transfer_tokens_total (also Instance.KVTransferStats).
//
// # P2P KV pulls (kv_transfer_params.p2p)
//
// A request (any of the generation APIs, with or without the P/D
// flags) may name a peer holding a prefix of its prompt, as llm-d's routing
// sidecar does for vLLM's OffloadingConnector when the EPP's
// p2p-source-producer set x-kv-cache-source-host-port: kv_transfer_params
// {"p2p": {"kv_request_id": string (optional), "remote_host": an IP or host
// name, "remote_port": 1..65535}}. Before submitting, the instance asks the
// peer at http://remote_host:remote_port what it holds, on the
// simulator-only endpoint POST /openepp/sim/kv/lookup (KVLookupPath):
// {"prompts": [[token IDs], ...], "lora": adapter or "", "cache_salt":
// salt or ""} answered by {"cached_tokens": [n, ...]}, the leading tokens
// of each prompt the peer's prefix cache holds now, in whole blocks, for
// that adapter and salt (engine.CachedPrefixSalted, under the driver's
// lock). The engine then pulls what its own cache lacks of those tokens at
// the KV transfer price and computes the rest (engine.Request.PullTokens);
// usage reports the local hit plus the pulled tokens as cached. The lookup
// is bounded (2 s, the instance's request size limit, a 1 MiB answer, no
// redirects); a peer that is unreachable, slow or answers anything but a
// well-formed count serves the request without a pull, logged and
// counted. With do_remote_prefill the whole prompt is pulled from the
// prefiller anyway, so no lookup is made. A malformed p2p block is a 400
// with param "kv_transfer_params". The metrics page adds
// openepp_sim_kv_p2p_requests_total (requests naming a source),
// openepp_sim_kv_p2p_lookup_failures_total, openepp_sim_kv_p2p_pulls_total
// (pulls started: the source held more than the local cache) and
// openepp_sim_kv_p2p_pull_tokens_total (also Instance.KVTransferStats).
// The lookup names any host a request names: expose an instance only
// behind the sidecar, whose allowlist bounds the sources.
//
// Config.Frontend wraps an instance's API on its own port; cmd/sim
// --pd-sidecar uses it to put a pdsidecar.Handler in front of every
// instance, so each one decodes with a remote prefill when a request names
// a prefiller in x-prefiller-host-port, and serves prefills for the others
// (those arrive without the header and pass straight through).
//
// # Anthropic Messages API
//
// POST /v1/messages takes vLLM's Anthropic request (model, messages and a
// positive max_tokens required; system, stream, tools, kv_transfer_params
// and priority read; sampling fields ignored, and, as in vLLM, no
// cache_salt) and, like vLLM, renders it as a chat: one leading system
// turn (the system text blocks concatenated, then the text of any
// system-role messages, then the tools as compact JSON lines), then the
// user and assistant turns through the template of
// /v1/chat/completions, so both APIs render a conversation alike and a
// conversation's next request extends its previous prompt. A message's
// blocks render one a line: text, thinking text, tool_use as its name and
// compact JSON input, tool_result's text, an image block as its
// placeholders (below); redacted thinking renders as nothing (images inside
// a tool_result are left out). As in vLLM, system blocks starting with
// "x-anthropic-billing-header" (Claude Code's per-request hash) are left
// out, so they do not defeat prefix caching.
//
// Answers have vLLM's shape (id msg_<n>, one text block, stop_reason
// max_tokens as the simulator always generates max_tokens, and
// kv_transfer_params for a remote-decode prefill) except for usage, which
// follows Anthropic's spec where vLLM does not: input_tokens counts only
// the uncached prompt, cache_read_input_tokens the prefix-cache hit and
// cache_creation_input_tokens is 0. vLLM reports the whole prompt as
// input_tokens and no cache fields; input + cache read + cache creation is
// the whole prompt either way. Streams are named events: message_start
// (sent with the first token, its usage holding the prompt counts),
// content_block_start, one content_block_delta per token,
// content_block_stop, message_delta (stop reason and output_tokens only)
// and message_stop, without [DONE]. POST /v1/messages/count_tokens answers
// {"input_tokens": n} for the same rendering. Errors are Anthropic-shaped,
// {"type":"error","error":{"type","message"}}, the type following the
// status (400 invalid_request_error, 404 not_found_error, 429
// rate_limit_error, 503 overloaded_error, other 5xx api_error), with
// messages naming the field at fault.
//
// # Tokens in, tokens out: /inference/v1/generate
//
// POST /inference/v1/generate is vLLM's API for RL frameworks and llm-d's
// vllmhttp-parser: {token_ids, sampling_params, model, stream,
// stream_options, request_id, cache_salt, kv_transfer_params, priority
// (above)}, token_ids and sampling_params required (of which only
// max_tokens is read; the other sampling fields, n and features are
// ignored; one choice). The IDs go to the engine as a completions token-ID
// prompt does, so caching, P/D and P2P behave alike. The answer is {id
// generate-tokens-<request_id>, request_id (echoed, else random), created,
// model, choices [{index, logprobs null, finish_reason, token_ids}], usage,
// prompt_logprobs null, kv_transfer_params}; a stream sends one
// {request_id, choices} chunk per token (usage on each with
// continuous_usage_stats), a usage chunk with include_usage, then [DONE].
// Generated IDs are the simulator tokenizer's IDs of the words the
// completions API would answer, so they never look like media placeholders
// when fed back in a prompt. Errors are OpenAI-shaped, naming the field.
//
// # SGLang's native API: /generate
//
// POST /generate, served by every instance whatever its MetricsEngine,
// takes SGLang's single-request GenerateReqInput: exactly one of text (a
// string, tokenized as a completions prompt) or input_ids (token IDs),
// sampling_params.max_new_tokens (default 128, as SGLang; 0 is a prefill
// that the engine runs with one token and reports as none), stream, rid
// (echoed, else 32 random hex digits), lora_path (resolved as a model
// name; unknown is a 404) and priority (above). Other fields, model
// included, are ignored;
// batches and input_embeds are refused. The prompt goes to the engine as a
// completions prompt does, so prefix caching is shared. The answer is
// {text, output_ids, meta_info {id, finish_reason {type length, length},
// prompt_tokens, completion_tokens, cached_tokens, e2e_latency}}, the text
// and IDs as /inference/v1/generate makes them; a stream sends one such
// chunk per token, cumulative as SGLang's default non-incremental stream
// (finish_reason null until the last), then [DONE]. The simulator never
// stops early, so finish_reason is never SGLang's stop type. Errors are
// SGLang-shaped, {"error": {"message"}}, with the status.
//
// # Multimodal requests
//
// The simulator serves as a multimodal model would, without fetching or
// decoding media. Chat content parts image_url, video_url and audio_url
// ({"url": ...}, or the URL as a bare string) and input_audio ({data,
// format}), and Anthropic image blocks (source base64 with its data, or
// url), become placeholder tokens where they stand among the text: 64 for
// an image, 32 for audio, 128 for a video (constants in media.go; a real
// model's count depends on the model and the media's size). A part without
// its URL or data is a 400 naming the part (a Messages image names the
// field); other part types still are. An item is known by its kind and URL,
// or by its base64 data (a data: URL's payload is the same item as that
// data sent inline), the identity the EPP's mm-embeddings-cache plugins
// use. vLLM repeats one placeholder ID and keys the blocks holding an item
// by the item's hash; here the hash is folded into the placeholder IDs,
// which lie in a range text never tokenizes into (tokenize.ReservedBase), so
// the prefix cache shares an item's blocks only with requests holding the
// same item after the same prefix. Usage, /tokenize (whose token_strs show
// "<|image|>", "<|audio|>", "<|video|>"), count_tokens and the render
// endpoints count and return the placeholders exactly as generation
// submits them.
//
// # Precise prefix-cache routing: /tokenize and KV events
//
// POST /tokenize takes vLLM's two forms, {model, prompt: "text"} and {model,
// messages, tools, add_generation_prompt, continue_final_message}, and
// answers {count, max_model_len, tokens, token_strs} (token_strs only with
// return_token_strs). The IDs are exactly those the generation APIs submit
// to the engine for the same request (chat completions honour the same
// template switches), so a router that hashes them the way the engine
// does, folding in a request's cache_salt, finds the engine's blocks (the
// salt changes the hashes, not the IDs). Config.KVEvents receives the
// engine's prefix-cache changes (engine.KVEventListener: blocks stored,
// with their tokens, parent, adapter and, on the run starting a prompt,
// cache salt, and blocks evicted), the stream vLLM publishes as KV events,
// for a publisher to put on the wire. KVEventPublisher sends them with
// vLLM's extra_keys: the adapter's name on each block of an adapter's
// request, the salt on a salted prompt's first block, on each block holding
// placeholders one [identifier, offset] array per item it overlaps (the
// item's hash in hex, and where the item starts relative to the block's
// first token), none for a base-model text request without a salt. The
// items are read off the placeholder IDs, so an item cut by a stored run's
// edge to fewer than eight placeholders (a prefill chunk ending in it)
// shows only part of its hash there.
//
// # GPU utilization (DCGM)
//
// Under every metrics engine the page also serves what an NVIDIA DCGM
// Exporter in the server's pod would, for the EPP's dcgm-data-source:
// DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID,device,modelName} (no pod label), the
// share of wall time the engine spent in iterations × 100 over the last
// second or so: since the newest earlier scrape at least a second old, or
// since the previous scrape when scrapes are further apart.
//
// # Faults
//
// Faults make /metrics slow, hang, fail or return garbage, refuse
// connections, close completions mid-stream or fail them; they are set by
// Config, Instance.SetFaults or POST /admin/faults.
package sim
