// Package fleet is the routing-quality benchmark: a deterministic
// discrete-event simulation of an EPP in front of a fleet of model servers,
// run in virtual time so that policies can be compared over thousands of
// requests per second in seconds of wall time (performance.md §5.A).
//
// # The model
//
// A run (Run, one RunSpec) is one policy on one workload at one offered QPS.
// It is single-threaded and driven by one queue of events over virtual
// microseconds; equal specs give equal results. The events are:
//
//   - arrivals: Poisson at the stage's rate, after WarmupRequests warm-up
//     requests at the same rate; requests arriving in the following
//     Duration are the measured window. At each arrival the EPP decides and
//     the request is submitted to the chosen server at once;
//   - engine iterations: every server is a pkg/sim/engine Engine (vLLM-like
//     continuous batching, chunked prefill, a paged KV cache with prefix
//     caching and LRU eviction, recompute preemption, LoRA slots), stepped
//     at its NextEventTime;
//   - scrapes: every ScrapeInterval (50 ms, ± ScrapeJitter, each server on
//     its own phase) the server's endpoint gets a new endpoint.Metrics
//     (waiting, running, KV usage, LoRA adapters, cache geometry) stamped
//     with the virtual time, so decisions see metrics up to one interval
//     old, as a real EPP does;
//   - client timeouts: a request unfinished Timeout after it arrived is
//     cancelled on its server and counts as failed.
//
// Policies built from an EndpointPickerConfig run OpenEPP's real scheduler
// and plugins (pkg/config, pkg/plugins) with a virtual clock and a fixed
// seed, through every lifecycle hook a live EPP calls: Schedule and
// PreRequest at arrival, ResponseHeaders and (for plugins that read them)
// the first response chunk at the first token, and ResponseComplete with
// usage (or cancelled) at the end, so in-flight and
// TTL-based plugins behave as in production. Prompts are real request
// bodies parsed by pkg/request: generated text whose tokenization
// (pkg/sim/tokenize) has exactly the wanted token counts, with each group's
// system prompt a shared text prefix, so the approximate prefix index
// hashes realistic bytes while the engines cache token blocks.
//
// A config with the flowControl feature gate holds requests in the EPP
// while its saturation detector rates the pool saturated and routes them
// by priority, fairness and ordering policy as it frees up (queue.go; a
// class's TTFT objective gives slo-deadline-ordering-policy its deadline),
// so `epp simulate` can weigh a
// flow-control setting before it is deployed; with enableEviction, the
// EPP's own tracker and reclaimer end sheddable requests in flight for
// higher priorities (evict.go), and RunSpec.Retry has their clients send
// them again (retry.go).
//
// RunSpec.Replication runs the policy as several active-active EPP
// replicas: one router per replica, each with its own plugin instances and
// state, the requests handed to them in turn as a round-robin proxy does,
// each request's hooks (and, with flow control, its wait) on the replica
// that routed it. With ReplicaSync the replicas' approximate prefix
// indexes share their insertions, and their dispatch-counting plugins
// (queue-scorer) the requests they routed, batched every SyncFlush and
// applied SyncLatency later in virtual time (replicas.go). The replica
// study (replicastudy.go) measures what three replicas cost on shared
// prefixes and multi-turn chat, and what sync wins back: of the insertions
// alone, and of the insertions and dispatches at three flush intervals.
//
// RunSpec.PrefillServers labels the first K servers llm-d.ai/role: prefill
// and the rest decode. When a config's scheduler names a prefill endpoint
// (disagg-profile-handler's x-prefiller-host-port), the request runs as
// llm-d's decode sidecar runs it: a prefill-only copy on the prefill server,
// then the request on its decode server, which pulls the KV at the engine's
// transfer price (disagg.go). The P/D study (pdstudy.go) sets aggregated
// serving against such splits at equal server count.
//
// # Policies
//
// StandardPolicies lists random, round-robin and least-queue (baselines in
// this package), prefix-only (prefix-cache-scorer alone), upstream-default
// (the upstream EPP's default config re-implemented here from its
// documented formulas, independent of OpenEPP's plugins: see
// upstreamRouter), ours-default (the same config file run through OpenEPP's
// plugins) and ours-best (config/openepp-recommended.yaml).
//
// # Workloads and scaling
//
// Workloads lists W1–W7 of performance.md §5.A. Long-prompt workloads are
// scaled down by a token factor (catalogue.go), and KV caches are sized by
// the sizing rule: the shared working set is 73 % of the fleet's cache and
// about 5.8 servers' worth, the regime where cache-aware routing matters.
//
// # Outputs and checks
//
// Each stage reports TTFT, end-to-end latency and TPOT percentiles, output
// tokens/s (inference-perf's definition, drain included, and the rate inside
// the window), success, token-weighted prefix-cache hit rate, the spread of
// work over servers and goodput under the workload's SLO (StageResult). A
// Matrix runs workloads × policies × ladders × seeds on a few goroutines and
// assembles a Report whose Checks verify, before any win is quoted, that
// the simulation reproduces the published shapes (cache-aware ≈ 2× round-
// robin on shared prefixes, parity without sharing, collapse of prefix-only
// routing) and then compare ours-default with upstream-default. Markdown
// and WriteTable render a report; package fleetplot draws its QPS curves.
//
// `make bench-fleet` (hack/benchfleet) runs the whole matrix and the
// freshness, priority and P/D studies; `epp simulate` (pkg/epp) evaluates
// one config against baselines for plugin developers.
package fleet
