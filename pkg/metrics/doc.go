// Package metrics keeps every endpoint in the datastore supplied with fresh
// model-server metrics: waiting queue, running requests, KV-cache usage,
// LoRA adapters and cache geometry, scraped from each server's Prometheus
// page, plus a staleness verdict the scheduler's filters can trust.
//
// # Design
//
// A Scraper is a controller-runtime Runnable. Start follows store membership
// (datastore.Store.Changed, then Snapshot): every *endpoint.Endpoint gets a
// target, scraped at once by a goroutine of its own (so a new endpoint gets
// metrics promptly) and dropped, with its connection, when the endpoint
// leaves the store. A label change gives an endpoint a new identity in the
// store, so its target is replaced and its engine re-resolved; the last
// update time carries over.
//
// Every Interval, each endpoint is scraped at one of a few instants shared
// by waves of about 25 endpoints (Options.AlignedSlots); the number of
// instants follows the pool's size, so a pool whose pods arrive one at a
// time ends with the same waves as one listed at once. A wave is one
// goroutine (wave.go): at its instant it writes the requests of all its
// members, then reads and applies the answers in turn, so one timer
// wake-up and one runnable goroutine serve 25 scrapes. Only quick, healthy
// endpoints with a live connection are members; a new, failing, refusing
// or slow one (answer not begun within a tenth of the interval) is scraped
// by its own goroutine, and rejoins when it is quick again. So
// a hanging server blocks only itself, for at most Timeout; a server that
// starts an answer and then stalls delays its wave-mates once.
//
// Each scrape:
//
//  1. GET scheme://host:metricsPort/path with a per-scrape Timeout, on the
//     endpoint's own kept-alive connection, written and read by the wave or
//     the endpoint's goroutine with http.ReadResponse (no Transport
//     goroutines to hand off to; no gzip; Accept: text/plain 0.0.4) into a
//     pooled buffer, bounded by MaxPageBytes. A kept-alive connection the
//     server closed is retried once on a fresh one. After a whole page of
//     at least 4 KiB the GET asks for only the engine's families
//     (?name[]=...), which Prometheus's client libraries honour, and keeps
//     asking only if the answer had every family the whole page had and was
//     smaller; otherwise (query ignored, refused with a 4xx, or answered
//     with families missing, as prometheus_client's multiprocess mode does)
//     the endpoint is scraped whole from then on, the doubtful answer
//     discarded rather than counted as a failure (narrow.go; FullPages
//     turns it off; openepp_metrics_narrow_endpoints counts the endpoints
//     served narrow).
//  2. Pre-filter the page line by line to the handful of metric families
//     the endpoint's engine reads (their samples and # HELP/# TYPE lines).
//     On a vLLM page this drops ~95% of the bytes: histogram buckets,
//     process and runtime metrics never reach the parser.
//  3. If the kept lines equal those of the last applied page, skip parsing
//     and only republish the previous snapshot with a new UpdateTime.
//     Otherwise parse, with expfmt's TextParser (reused per endpoint), only
//     the families whose lines changed; a counter or gauge family whose
//     lines changed only in their values keeps the last parse with the new
//     values written in (patchValues; the usual case on a busy server).
//     Then extract each field through its selector.
//  4. Publish a new immutable endpoint.Metrics (one allocation; LoRA sets
//     are shared between snapshots while the adapter lists are unchanged)
//     and set the staleness flag: stale when the last successful scrape is
//     older than StalenessThreshold or there was none. Staleness is judged
//     after every attempt, so a server that hangs is stale within
//     StalenessThreshold + Timeout (+ Interval); Timeout must be below the
//     threshold.
//
// Over https (Options.Scheme) the server is verified against CACertFile
// when one is given, and not at all otherwise unless InsecureSkipVerify is
// false (upstream's default skips; tls.go); ClientCertFile/ClientKeyFile
// are presented to servers that ask, reread for new connections when the
// files change. Options.Port replaces every endpoint's metrics port.
//
// # Engines
//
// What to read is an engine mapping (EngineConfig), chosen per endpoint by
// the label inference.networking.k8s.io/engine-type, then llm-d.ai/engine-type
// (an explicit EngineLabelKey comes first), else DefaultEngine. Built in:
// vllm (default), sglang (cache geometry from cache_config_info or, in newer
// releases, the page_size and num_pages gauges), atom, trtllm-serve (served
// at /prometheus/metrics), triton-tensorrt-llm and triton (classic models:
// queue only), with the metric names of GIE/llm-d. Each metric is a
// PromQL-like instant selector, `name{label="value"}` (unquoted values
// accepted, =, !=, =~, !~), and "" disables it. The newest series (explicit
// timestamp) wins, ties go to the first series on the page; nothing is
// summed. For vLLM's lora_requests_info the series with the largest value (a
// timestamp) wins. Configs decode strictly from upstream's
// core-metrics-extractor parameters (engineConfigs, defaultEngine,
// engineLabelKey); an entry named like a built-in replaces it entirely.
// An unknown engine name is logged once and counted, and the endpoint is
// scraped with the default engine. An engine's customMetrics (llm-d's) map
// further series to endpoint attributes of producer core-metrics-extractor,
// which endpoint-attribute-filter, endpoint-attribute-scorer and
// metric-scorer read; an optional one the page lacks is dropped, a required
// one keeps its last value and counts as a field error ("customMetrics").
//
// # Failures
//
// A scrape fails on a transport error, a non-200 status, an oversized page,
// a parse error, or a page with none of the configured metrics; the
// snapshot is then left alone. A field that is missing or invalid on an
// otherwise good page keeps its previous value while the others update.
// Both are logged only on change (healthy to failing with the reason,
// failing to healthy; the set of unreadable fields), never per scrape, and
// counted in openepp_metrics_scrape_errors_total{reason} and
// openepp_metrics_field_errors_total{field}. Also registered:
// openepp_metrics_scrapes_total, openepp_metrics_scrape_duration_seconds,
// openepp_metrics_stale_endpoints, openepp_metrics_wave_endpoints,
// openepp_metrics_narrow_endpoints,
// openepp_metrics_unknown_engine_total and,
// for each pool (PoolNames, and the pools endpoints name), upstream's
// inference_pool_average_kv_cache_utilization,
// inference_pool_average_queue_size, inference_pool_average_running_requests
// and inference_pool_ready_pods (averages over the pool's fresh endpoints,
// computed at collection time), and openepp_pool_stale_endpoints (the
// pool's share of openepp_metrics_stale_endpoints).
//
// # Cost
//
// Upstream's EPP reportedly idles at ~7.5 cores with 100 pods at the 50 ms
// default, parsing every full page. Here, on a shared 2-core VM
// (BenchmarkScrape, BenchmarkFleet; 28 KB vLLM page, ~220 series with
// histograms):
//
//   - filter + compare of an unchanged page: ~8 µs, 1 allocation;
//   - a changed page served narrow (the same families, 1.5 KB): ~2 µs
//     against ~9 µs whole; with the loopback GET and an in-process server,
//     ~55 µs of CPU per scrape against ~90 µs (BenchmarkScrape/http);
//   - a page whose load gauges changed: ~9 µs, 3 allocations (11 µs and 37
//     allocations when those families went through the parser, ~40 µs and
//     ~400 allocations when the whole filtered page did);
//   - 100 endpoints at 50 ms (2,000 scrapes/s), the model servers in
//     another process, on this project's 2-core VM: ~0.08 cores with the
//     default waves of 25 (~40 µs of CPU per scrape: 40% read and write
//     syscalls, 25% filtering and parsing, the rest HTTP headers, timers
//     and scheduling), ~0.24 cores with every endpoint at its own instant
//     (AlignedSlots=-1: waking the runtime from idle per scrape).
//
// Memory is one pooled page buffer per concurrent scrape, a few KB of
// filtered lines per endpoint and one idle connection per endpoint.
package metrics
