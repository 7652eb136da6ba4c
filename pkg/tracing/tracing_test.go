package tracing

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAreUpstreams(t *testing.T) {
	tr, err := Start(context.Background(), Options{Getenv: envOf(nil), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	want := []any{"exporter", "otlp grpc localhost:4317", "sampler", "parentbased_traceidratio 0.1"}
	if len(tr.Describe) != len(want) {
		t.Fatalf("Describe = %v", tr.Describe)
	}
	for i := range want {
		if tr.Describe[i] != want[i] {
			t.Errorf("Describe = %v, want %v", tr.Describe, want)
		}
	}
}

func TestServiceName(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, DefaultServiceName},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from%20attrs,team=ml"}, "from attrs"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs", "OTEL_SERVICE_NAME": "explicit"}, "explicit"},
	} {
		res, err := newResource(context.Background(), envOf(tc.env), "v1")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := res.Set().Value(attribute.Key("service.name"))
		if got.AsString() != tc.want {
			t.Errorf("%v: service.name = %q, want %q", tc.env, got.AsString(), tc.want)
		}
	}
}

func TestEndpointForms(t *testing.T) {
	for _, tc := range []struct {
		env      map[string]string
		want     string // Describe's exporter, or an error substring
		wantErrs bool
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "otlp grpc http://collector:4317", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "b:2"}, "otlp grpc b:2", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:4317"}, "want http://host:port", true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp grpc localhost:4317", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp http/protobuf localhost:4318", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "want grpc or http/protobuf", true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "-5"}, "OTEL_EXPORTER_OTLP_TIMEOUT", true},
	} {
		_, desc, err := newExporter(context.Background(), envOf(tc.env), nil)
		switch {
		case tc.wantErrs && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err = %v, want %q", tc.env, err, tc.want)
		case !tc.wantErrs && (err != nil || desc != tc.want):
			t.Errorf("%v: %q, %v; want %q", tc.env, desc, err, tc.want)
		}
	}
}

// traceOne starts tracing as o says, with every trace sampled, makes one
// gateway.request span and shuts down, which exports it.
func traceOne(t *testing.T, o Options) {
	t.Helper()
	getenv := o.Getenv
	o.Getenv = func(k string) string {
		if k == "OTEL_TRACES_SAMPLER" {
			return "always_on"
		}
		return getenv(k)
	}
	o.Log = logr.Discard()
	tr, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer.Start(context.Background(), "gateway.request")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleExporter: console writes every span, as JSON, to Console.
func TestConsoleExporter(t *testing.T) {
	var out bytes.Buffer
	traceOne(t, Options{Getenv: envOf(map[string]string{"OTEL_TRACES_EXPORTER": "console"}), Console: &out})
	if !strings.Contains(out.String(), `"Name":"gateway.request"`) {
		t.Errorf("console output lacks the span: %s", out.String())
	}
}

// TestNoneExporterStillPropagates: with nothing exported, spans still have
// a context to pass on to the model server.
func TestNoneExporterStillPropagates(t *testing.T) {
	tr, err := Start(context.Background(), Options{Getenv: envOf(map[string]string{"OTEL_TRACES_EXPORTER": "none"}), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	_, span := tr.Tracer.Start(context.Background(), "gateway.request")
	defer span.End()
	if !span.SpanContext().IsValid() {
		t.Error("no span context")
	}
}

func TestOTLPDestinationPaths(t *testing.T) {
	for _, tc := range []struct {
		env        map[string]string
		host, path string
		insecure   bool
	}{
		{nil, "localhost:4318", "/v1/traces", true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/otlp/"}, "c:4318", "/otlp/v1/traces", true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c:443/custom"}, "c:443", "/custom", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "c:4318", "OTEL_EXPORTER_OTLP_INSECURE": "true"}, "c:4318", "/v1/traces", true},
	} {
		d, err := otlpDestination(envOf(tc.env), "http/protobuf")
		if err != nil || d.hostPort != tc.host || d.path != tc.path || d.insecure != tc.insecure {
			t.Errorf("%v: %+v, %v; want %s%s insecure=%v", tc.env, d, err, tc.host, tc.path, tc.insecure)
		}
	}
}

// TestHTTPExport: over OTLP/HTTP, spans reach a receiver at /v1/traces as
// protobuf.
func TestHTTPExport(t *testing.T) {
	got := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					got <- sp.GetName()
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	traceOne(t, Options{Getenv: envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL})})
	select {
	case name := <-got:
		if name != "gateway.request" {
			t.Errorf("exported span %q", name)
		}
	default:
		t.Fatal("nothing exported")
	}
}

// TestSDKDisabled: OTEL_SDK_DISABLED=true makes no spans of its own, but a
// proxy's trace context still reaches the model server unchanged.
func TestSDKDisabled(t *testing.T) {
	tr, err := Start(context.Background(), Options{Getenv: envOf(map[string]string{"OTEL_SDK_DISABLED": "true"}), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := tr.Propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	ctx, span := tr.Tracer.Start(ctx, "gateway.request")
	defer span.End()
	if span.IsRecording() {
		t.Error("span recorded with the SDK disabled")
	}
	out := propagation.MapCarrier{}
	tr.Propagator.Inject(ctx, out)
	if out["traceparent"] != tp {
		t.Errorf("traceparent passed on as %q, want %q", out["traceparent"], tp)
	}
}
