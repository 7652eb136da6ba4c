// Package tracing sets up OpenTelemetry tracing for the EPP from the
// standard OTEL_* environment, with the upstream EPP's defaults where the
// OpenTelemetry ones differ: export over OTLP/gRPC to localhost:4317 without
// TLS, and sample a tenth of the traces that do not arrive with a sampling
// decision (parentbased_traceidratio, 0.1).
//
// Nothing is global: Start returns the tracer and the propagator (W3C trace
// context and baggage) for the caller to hand to the code that makes spans,
// so several EPPs can run in one process (tests) without sharing a
// provider. Export problems are logged when they start and when they end,
// never per batch: an EPP without a collector keeps routing and says once
// that its spans are being dropped.
package tracing

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Defaults applied when the environment does not say otherwise; the same
// as the upstream EPP's, so that existing collectors and trace queries
// keep working when OpenEPP replaces it.
const (
	DefaultServiceName  = "gateway-api-inference-extension/epp"
	DefaultEndpoint     = "localhost:4317" // OTLP/gRPC
	DefaultHTTPEndpoint = "localhost:4318" // OTLP/HTTP
	DefaultSampler      = "parentbased_traceidratio"
	DefaultSamplerArg   = 0.1
)

// TracerName is the instrumentation scope of the EPP's spans.
const TracerName = "github.com/openepp/openepp"

// Options configure Start.
type Options struct {
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Console receives spans when OTEL_TRACES_EXPORTER=console; nil means
	// standard output.
	Console io.Writer
	// Version is reported as service.version.
	Version string
	Log     logr.Logger
}

// Tracing is a started tracer provider.
type Tracing struct {
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	provider   *sdktrace.TracerProvider // nil when the SDK is disabled
	// Describe summarises the setup for the startup log.
	Describe []any
}

// Shutdown flushes the spans not yet exported, waiting at most until ctx
// ends (a collector that is down would otherwise hold the exit up).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Start builds the tracer provider the environment describes. An unknown
// exporter, protocol or sampler, or a sampler argument outside [0, 1], is
// an error rather than a silent fallback.
func Start(ctx context.Context, o Options) (*Tracing, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	propagator := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		// No spans of our own; a proxy's trace context still passes through.
		return &Tracing{Tracer: noop.NewTracerProvider().Tracer(TracerName), Propagator: propagator,
			Describe: []any{"sdk", "disabled (OTEL_SDK_DISABLED)"}}, nil
	}
	sampler, samplerDesc, err := parseSampler(getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, getenv, o.Version)
	if err != nil {
		return nil, err
	}
	delay, err := millis(getenv, "OTEL_BSP_SCHEDULE_DELAY")
	if err != nil {
		return nil, err
	}
	exp, expDesc, err := newExporter(ctx, getenv, o.Console)
	if err != nil {
		return nil, err
	}
	popts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sampler), sdktrace.WithResource(res)}
	if exp != nil {
		var bopts []sdktrace.BatchSpanProcessorOption
		if delay > 0 {
			bopts = append(bopts, sdktrace.WithBatchTimeout(delay))
		}
		popts = append(popts, sdktrace.WithBatcher(&watchedExporter{SpanExporter: exp, log: o.Log}, bopts...))
	}
	otel.SetErrorHandler(&errorLog{log: o.Log})
	p := sdktrace.NewTracerProvider(popts...)
	return &Tracing{
		Tracer:     p.Tracer(TracerName, trace.WithInstrumentationVersion(o.Version)),
		Propagator: propagator,
		provider:   p,
		Describe:   []any{"exporter", expDesc, "sampler", samplerDesc},
	}, nil
}

// parseSampler reads OTEL_TRACES_SAMPLER and its argument (the
// OpenTelemetry names; the jaeger and xray samplers are not supported).
func parseSampler(name, arg string) (sdktrace.Sampler, string, error) {
	if name == "" {
		name = DefaultSampler
		if arg == "" {
			arg = strconv.FormatFloat(DefaultSamplerArg, 'g', -1, 64)
		}
	}
	ratio := 1.0
	if strings.HasSuffix(name, "traceidratio") && arg != "" {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(r >= 0 && r <= 1) {
			return nil, "", fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		ratio = r
	}
	desc := name
	if strings.HasSuffix(name, "traceidratio") {
		desc += " " + strconv.FormatFloat(ratio, 'g', -1, 64)
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), desc, nil
	case "always_off":
		return sdktrace.NeverSample(), desc, nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), desc, nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), desc, nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), desc, nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), desc, nil
	}
	return nil, "", fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", name)
}

// newResource names the service: OTEL_SERVICE_NAME, else a service.name
// in OTEL_RESOURCE_ATTRIBUTES, else DefaultServiceName.
func newResource(ctx context.Context, getenv func(string) string, version string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", DefaultServiceName)}
	if version != "" {
		attrs = append(attrs, attribute.String("service.version", version))
	}
	for _, kv := range strings.Split(getenv("OTEL_RESOURCE_ATTRIBUTES"), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
		if k != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		attrs = append(attrs, attribute.String("service.name", name))
	}
	// The last value of a key wins within one set; the SDK's own attributes
	// (telemetry.sdk.*) are merged underneath.
	return resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
}

// newExporter reads OTEL_TRACES_EXPORTER: otlp (the default; gRPC only),
// console (one JSON document per span on Console), or none (spans are
// still made, so trace context still propagates, but go nowhere).
func newExporter(ctx context.Context, getenv func(string) string, console io.Writer) (sdktrace.SpanExporter, string, error) {
	switch kind := getenv("OTEL_TRACES_EXPORTER"); kind {
	case "", "otlp":
		return newOTLP(ctx, getenv)
	case "console":
		if console == nil {
			console = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(console))
		return exp, "console", err
	case "none":
		return nil, "none", nil
	default:
		return nil, "", fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", kind)
	}
}

// newOTLP is the OTLP exporter: over gRPC (the default, as upstream) or
// HTTP with protobuf bodies (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf).
// The endpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (over HTTP, the full
// URL) or OTEL_EXPORTER_OTLP_ENDPOINT (over HTTP, the base to which
// /v1/traces is added): a URL (http:// means no TLS) or host:port (TLS
// unless OTEL_EXPORTER_OTLP_INSECURE=true). With neither, localhost:4317
// (gRPC) or localhost:4318 (HTTP) without TLS. The exporter reads the other
// OTEL_EXPORTER_OTLP_* settings (headers, compression, certificates) itself.
func newOTLP(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, string, error) {
	protocol := "grpc"
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(k); p != "" {
			if p != "grpc" && p != "http/protobuf" {
				return nil, "", fmt.Errorf("%s=%q: want grpc or http/protobuf", k, p)
			}
			protocol = p
			break
		}
	}
	var timeout time.Duration
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"} {
		t, err := millis(getenv, k)
		if err != nil {
			return nil, "", err
		}
		if t > 0 {
			timeout = t
			break
		}
	}
	dest, err := otlpDestination(getenv, protocol)
	if err != nil {
		return nil, "", err
	}
	desc := "otlp " + protocol + " " + dest.show
	// Both clients connect lazily and retry, so a collector that is not up
	// yet is not a startup error.
	if protocol == "grpc" {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(dest.hostPort)}
		if dest.insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if timeout > 0 {
			opts = append(opts, otlptracegrpc.WithTimeout(timeout))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("OTLP trace exporter: %w", err)
		}
		return exp, desc, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(dest.hostPort), otlptracehttp.WithURLPath(dest.path)}
	if dest.insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(timeout))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, desc, nil
}

// destination is where OTLP spans go.
type destination struct {
	hostPort, path string // path: HTTP only
	insecure       bool
	show           string // for the startup log
}

// tracesPath is the OTLP/HTTP path of traces under a base endpoint.
const tracesPath = "/v1/traces"

func otlpDestination(getenv func(string) string, protocol string) (destination, error) {
	endpoint, signal := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), true
	if endpoint == "" {
		endpoint, signal = getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), false
	}
	if endpoint == "" {
		hp := DefaultEndpoint
		if protocol != "grpc" {
			hp = DefaultHTTPEndpoint
		}
		return destination{hostPort: hp, path: tracesPath, insecure: true, show: hp}, nil
	}
	if !strings.Contains(endpoint, "://") {
		insecure := getenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
		if insecure == "" {
			insecure = getenv("OTEL_EXPORTER_OTLP_INSECURE")
		}
		return destination{hostPort: endpoint, path: tracesPath, insecure: strings.EqualFold(insecure, "true"), show: endpoint}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return destination{}, fmt.Errorf("OTLP endpoint %q: want http://host:port, https://host:port or host:port", endpoint)
	}
	path := u.Path
	if !signal || path == "" {
		path = strings.TrimSuffix(path, "/") + tracesPath
	}
	return destination{hostPort: u.Host, path: path, insecure: u.Scheme == "http", show: endpoint}, nil
}

// millis reads an OpenTelemetry duration setting (whole milliseconds); 0
// when unset.
func millis(getenv func(string) string, key string) (time.Duration, error) {
	v := getenv(key)
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.Atoi(v)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive number of milliseconds", key, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// watchedExporter logs export failures when they start and the recovery
// when they stop, instead of one line per failed batch: an EPP with no
// collector keeps routing and says once that its spans are dropped.
type watchedExporter struct {
	sdktrace.SpanExporter
	log logr.Logger

	mu       sync.Mutex
	failures int // since the last success
}

func (w *watchedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := w.SpanExporter.ExportSpans(ctx, spans)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil:
		w.failures++
		if w.failures == 1 {
			w.log.Error(err, "trace export failing; spans are dropped until the collector answers")
		}
	case w.failures > 0:
		w.log.Info("trace export recovered", "failedBatches", w.failures)
		w.failures = 0
	}
	// The batch is gone either way; returning nil keeps the SDK from
	// logging it a second time.
	return nil
}

// errorLog is the OpenTelemetry error handler for everything else the SDK
// reports: at most one line a minute.
type errorLog struct {
	log logr.Logger

	mu      sync.Mutex
	lastLog time.Time
	dropped int
}

// Handle implements otel.ErrorHandler.
func (e *errorLog) Handle(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Sub(e.lastLog) >= time.Minute {
		e.log.Error(err, "opentelemetry", "suppressedSince", e.dropped)
		e.lastLog, e.dropped = now, 0
		return
	}
	e.dropped++
}
