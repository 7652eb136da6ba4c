package epp

import (
	"errors"
	"flag"
	"fmt"
	"time"

	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/openepp/openepp/pkg/poolroute"
	"github.com/openepp/openepp/pkg/server"
)

// Flags are the EPP's command-line options. Names and defaults follow the
// upstream EPP so existing deployments can switch binaries.
type Flags struct {
	BindAddress         string
	GRPCPort            int
	GRPCHealthPort      int
	MetricsPort         int
	SecureServing       bool
	CertPath            string
	EnableCertReload    bool
	HealthChecking      bool
	GRPCMaxRecvMsgSize  int
	GRPCMaxSendMsgSize  int
	MaxRequestBodyBytes int
	DisableSubsetFilter bool
	PoolHeader          string
	EmitEndpointScores  bool
	IncludeStreamUsage  bool
	Endpoints           string
	EndpointsFile       string
	ObjectivesFile      string
	ModelRewritesFile   string
	RefreshMetrics      time.Duration
	MetricsTimeout      time.Duration
	StalenessThreshold  time.Duration
	ConfigFile          string
	ConfigText          string
	DrainTimeout        time.Duration
	EnablePprof         bool
	Tracing             bool
	Verbosity           int
	Seed                uint64
	UpstreamScoring     bool
	ScrapeSlots         int
	MaxScrapes          int
	FullMetricsPages    bool
	TLS                 tlsFlags
	Kube                KubeFlags
	Replicas            replicaFlags
	EnginePriority      enginePriorityFlags
	compat              compatFlags
	Zap                 crzap.Options
}

// bind registers every flag on fs.
func (f *Flags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.BindAddress, "bind-address", "", "address the servers listen on (empty: all interfaces)")
	fs.IntVar(&f.GRPCPort, "grpc-port", 9002, "ext_proc gRPC port")
	fs.IntVar(&f.GRPCHealthPort, "grpc-health-port", 9003, "gRPC health port (services liveness, readiness, "+server.ExtProcService+")")
	fs.IntVar(&f.MetricsPort, "metrics-port", 9090, "Prometheus metrics (and pprof) HTTP port; -1 disables")
	fs.BoolVar(&f.SecureServing, "secure-serving", true, "serve ext_proc over TLS (self-signed unless --cert-path)")
	fs.StringVar(&f.CertPath, "cert-path", "", "directory holding tls.crt and tls.key for the ext_proc server")
	fs.BoolVar(&f.EnableCertReload, "enable-cert-reload", false, "reload the key pair in --cert-path when it changes")
	fs.BoolVar(&f.HealthChecking, "health-checking", false, "also serve gRPC health on the ext_proc port")
	fs.IntVar(&f.GRPCMaxRecvMsgSize, "grpc-max-recv-msg-size", 0, "largest gRPC message accepted in bytes (0: fits --max-request-body-bytes)")
	fs.IntVar(&f.GRPCMaxSendMsgSize, "grpc-max-send-msg-size", 0, "largest gRPC message sent in bytes (0: same as receive)")
	fs.IntVar(&f.MaxRequestBodyBytes, "max-request-body-bytes", server.DefaultMaxRequestBodyBytes, "larger request bodies are answered with 413")
	fs.BoolVar(&f.DisableSubsetFilter, "disable-endpoint-subset-filter", false, "ignore the proxy's envoy.lb.subset_hint")
	fs.StringVar(&f.PoolHeader, "pool-header", poolroute.DefaultHeader, "request header naming the request's pool when the EPP serves several (--pool-name a,b or an endpoints file's pools)")
	fs.BoolVar(&f.Tracing, "tracing", true, "trace requests with OpenTelemetry, configured by the OTEL_* environment (default: OTLP/gRPC to localhost:4317, a tenth of new traces), and pass the trace context on to model servers")
	fs.BoolVar(&f.EmitEndpointScores, "emit-endpoint-scores", false, "add every candidate's score to the envoy.lb metadata")
	fs.BoolVar(&f.IncludeStreamUsage, "include-stream-usage", false, "ask model servers for token usage on streamed chat and text completions whose client did not (stream_options.include_usage), for token metrics and accounting, and remove that usage event from the client's stream")
	fs.StringVar(&f.Endpoints, "endpoints", "", "static endpoints ip:port,ip:port (no Kubernetes)")
	fs.StringVar(&f.EndpointsFile, "endpoints-file", "", "YAML file listing endpoints (name, address, port, labels; llm-d's format too), reloaded on change")
	fs.StringVar(&f.ObjectivesFile, "objectives-file", "", "InferenceObjective manifests (YAML documents) giving requests their priority without an InferencePool, reloaded on change")
	fs.StringVar(&f.ModelRewritesFile, "model-rewrites-file", "", "InferenceModelRewrite manifests (YAML documents) rewriting requests' models without an InferencePool (canaries, renames), reloaded on change")
	fs.DurationVar(&f.RefreshMetrics, "refresh-metrics-interval", 50*time.Millisecond, "model-server metrics scrape interval")
	fs.DurationVar(&f.MetricsTimeout, "metrics-scrape-timeout", time.Second, "per-scrape timeout")
	fs.IntVar(&f.ScrapeSlots, "metrics-scrape-slots", 0, "scrape instants per interval shared by endpoints, batching wake-ups (0: one per 25 endpoints; -1: each endpoint its own)")
	fs.IntVar(&f.MaxScrapes, "max-scrapes-per-second", 0, "cap on model-server scrapes per second for the whole pool; large pools are scraped less often instead (0: 4000; -1: no cap)")
	fs.BoolVar(&f.FullMetricsPages, "metrics-full-pages", false, "always fetch whole metrics pages; by default a server that honours name[] queries (Prometheus client libraries do) is asked for only the metric families read")
	fs.DurationVar(&f.StalenessThreshold, "metrics-staleness-threshold", 2*time.Second, "metrics older than this mark an endpoint stale")
	fs.StringVar(&f.ConfigFile, "config-file", "", "EndpointPickerConfig file (reloaded on change)")
	fs.StringVar(&f.ConfigText, "config-text", "", "EndpointPickerConfig as inline text")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight streams may finish")
	fs.BoolVar(&f.EnablePprof, "enable-pprof", true, "serve /debug/pprof on the metrics port")
	fs.IntVar(&f.Verbosity, "v", 0, "log verbosity: 0 lifecycle, 1 one line per decision, 2 plugin detail")
	fs.Uint64Var(&f.Seed, "seed", 0, "random seed for scheduling tie-breaks (0: random)")
	fs.BoolVar(&f.UpstreamScoring, "upstream-compatible-scoring", false,
		"score exactly as upstream GIE v1.5.0 does: turn off OpenEPP's default improvements of queue-scorer and prefix-cache-scorer (see docs/plugins.md)")
	f.TLS.bind(fs)
	f.Kube.bind(fs)
	f.Replicas.bind(fs)
	f.EnginePriority.bind(fs)
	f.compat.bind(fs)
	f.Zap.BindFlags(fs)
}

func (f *Flags) validate() error {
	var errs []error
	if f.ConfigFile != "" && f.ConfigText != "" {
		errs = append(errs, errors.New("--config-file and --config-text are mutually exclusive"))
	}
	if f.MaxRequestBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("--max-request-body-bytes must be > 0, got %d", f.MaxRequestBodyBytes))
	}
	if f.RefreshMetrics <= 0 {
		errs = append(errs, fmt.Errorf("--refresh-metrics-interval must be > 0, got %s", f.RefreshMetrics))
	}
	if f.ObjectivesFile != "" && (f.Kube.PoolName != "" || f.Kube.PickerService != "") {
		errs = append(errs, errors.New("--objectives-file is for pools without --pool-name: with an InferencePool the EPP reads its InferenceObjectives from the API server"))
	}
	if f.ModelRewritesFile != "" && (f.Kube.PoolName != "" || f.Kube.PickerService != "") {
		errs = append(errs, errors.New("--model-rewrites-file is for pools without --pool-name: with an InferencePool the EPP reads its InferenceModelRewrites from the API server"))
	}
	if f.EnableCertReload && f.CertPath == "" {
		errs = append(errs, errors.New("--enable-cert-reload needs --cert-path"))
	}
	errs = append(errs, f.TLS.validate()...)
	errs = append(errs, f.validateSource()...)
	errs = append(errs, f.Kube.validatePools()...)
	errs = append(errs, f.Replicas.validate(f.Kube.enabled())...)
	errs = append(errs, f.EnginePriority.validate()...)
	return errors.Join(errs...)
}

// recvLimit is the gRPC receive limit: room for the largest allowed body
// plus framing, and never below gRPC's 4 MiB default.
func (f *Flags) recvLimit() int {
	if f.GRPCMaxRecvMsgSize > 0 {
		return f.GRPCMaxRecvMsgSize
	}
	return max(4<<20, f.MaxRequestBodyBytes+(1<<20))
}

func (f *Flags) sendLimit() int {
	if f.GRPCMaxSendMsgSize > 0 {
		return f.GRPCMaxSendMsgSize
	}
	return f.recvLimit()
}
