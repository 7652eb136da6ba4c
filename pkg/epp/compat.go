package epp

import (
	"flag"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/metrics"
)

// compatFlags are upstream EPP flags accepted so that existing Deployments
// and Helm values run unchanged. Where OpenEPP has the feature the flag is
// honoured; otherwise it is accepted and its effect (none) is logged.
type compatFlags struct {
	metricsAuth, grpcStreamMetrics, experimentalPlugins bool
	promRefresh                                         time.Duration

	// Deprecated upstream scrape settings, honoured when set.
	scheme, path string
	insecure     bool
	port         int
	// Deprecated upstream metric-name flags, honoured as an override of the
	// default engine's names (upstream rejects them; its chart still passes them).
	queued, running, kvUsage, lora, cacheInfo string

	set map[string]bool // flags given explicitly
}

func (c *compatFlags) bind(fs *flag.FlagSet) {
	fs.BoolVar(&c.metricsAuth, "metrics-endpoint-auth", true, "in Kubernetes mode, /metrics and /debug/pprof need a bearer token the API server authenticates and authorizes for GET on the path (nonResourceURLs); false serves them openly")
	fs.BoolVar(&c.grpcStreamMetrics, "enable-grpc-stream-metrics", false, "serve llm-d's ext_proc stream metrics (llm_d_epp_extproc_streams_inflight, _stream_duration_seconds, _streams_total)")
	fs.BoolVar(&c.experimentalPlugins, "allow-experimental-plugins", false, "accepted for compatibility with llm-d; all built-ins are available")
	fs.DurationVar(&c.promRefresh, "refresh-prometheus-metrics-interval", 5*time.Second, "accepted for upstream compatibility; pool gauges are computed when scraped")
	fs.StringVar(&c.scheme, "model-server-metrics-scheme", "", "deprecated: metrics scheme (use metrics-data-source parameters)")
	fs.StringVar(&c.path, "model-server-metrics-path", "", "deprecated: metrics path (use metrics-data-source parameters)")
	fs.BoolVar(&c.insecure, "model-server-metrics-https-insecure-skip-verify", true, "deprecated: skip TLS verification when scraping over https")
	fs.IntVar(&c.port, "model-server-metrics-port", 0, "deprecated: metrics port of every endpoint instead of its own (use metrics-data-source parameters)")
	fs.StringVar(&c.queued, "total-queued-requests-metric", "", "deprecated: waiting-queue metric of the default engine (use engineConfigs)")
	fs.StringVar(&c.running, "total-running-requests-metric", "", "deprecated: running-requests metric of the default engine")
	fs.StringVar(&c.kvUsage, "kv-cache-usage-percentage-metric", "", "deprecated: KV-cache usage metric of the default engine")
	fs.StringVar(&c.lora, "lora-info-metric", "", "deprecated: LoRA info metric of the default engine")
	fs.StringVar(&c.cacheInfo, "cache-info-metric", "", "deprecated: cache config info metric of the default engine")
}

// record remembers which flags were given, after parsing.
func (c *compatFlags) record(fs *flag.FlagSet) {
	c.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
}

// applyScrape folds the deprecated scrape flags into o. They sit between
// the defaults and the config file's data-layer parameters, as upstream.
func (c *compatFlags) applyScrape(o *metrics.Options) {
	if c.scheme != "" {
		o.Scheme = c.scheme
	}
	if c.path != "" {
		o.Path = c.path
	}
	if c.set["model-server-metrics-https-insecure-skip-verify"] {
		o.InsecureSkipVerify = &c.insecure
	}
	if c.port != 0 {
		o.Port = c.port
	}
	if c.queued == "" && c.running == "" && c.kvUsage == "" && c.lora == "" && c.cacheInfo == "" {
		return
	}
	base := metrics.BuiltinEngines()[0] // vllm, the default engine
	for _, spec := range []struct {
		flag string
		dst  *string
	}{
		{c.queued, &base.QueuedRequestsSpec}, {c.running, &base.RunningRequestsSpec}, {c.kvUsage, &base.KVUsageSpec},
		{c.lora, &base.LoRASpec}, {c.cacheInfo, &base.CacheInfoSpec},
	} {
		if spec.flag != "" {
			*spec.dst = spec.flag
		}
	}
	o.Engines = append(o.Engines, base)
}

// logIgnored says once, at startup, which given flags have no effect.
func (c *compatFlags) logIgnored(log logr.Logger) {
	for _, name := range []string{"refresh-prometheus-metrics-interval"} {
		if c.set[name] {
			log.Info("flag accepted for compatibility but has no effect in OpenEPP", "flag", name)
		}
	}
}
