package tracing

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/attribute"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAreUpstreams(t *testing.T) {
	tr, err := Start(context.Background(), Options{Getenv: envOf(nil), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	want := []any{"exporter", "otlp localhost:4317", "sampler", "parentbased_traceidratio 0.1"}
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
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "otlp http://collector:4317", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "b:2"}, "otlp b:2", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:4317"}, "want http://host:port", true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp localhost:4317", false},
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

// TestConsoleExporter: console writes every span, as JSON, to Console.
func TestConsoleExporter(t *testing.T) {
	var out bytes.Buffer
	tr, err := Start(context.Background(), Options{Getenv: envOf(map[string]string{
		"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_on"}), Console: &out, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer.Start(context.Background(), "gateway.request")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
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
