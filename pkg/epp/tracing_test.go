package epp

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/openepp/openepp/pkg/extproc"
)

// collector is an OTLP/gRPC trace receiver: the real protocol a collector
// speaks, keeping what it is sent.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	addr string
	// hang, when set, holds every export until it is closed.
	hang chan struct{}

	mu       sync.Mutex
	spans    []*tracepb.Span
	resource []*commonpb.KeyValue
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: lis.Addr().String()}
	g := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(g, c)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return c
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if c.hang != nil {
		<-c.hang
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		c.resource = rs.GetResource().GetAttributes()
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// await returns the spans of traceID once n of them have arrived.
func (c *collector) await(t *testing.T, traceID string, n int) map[string]*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]*tracepb.Span{}
		c.mu.Lock()
		for _, s := range c.spans {
			if hex.EncodeToString(s.GetTraceId()) == traceID {
				got[s.GetName()] = s
			}
		}
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector has %d of %d spans of trace %s", len(got), n, traceID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func attr(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			v := kv.GetValue()
			if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok {
				return s.StringValue, true
			}
			if i, ok := v.GetValue().(*commonpb.AnyValue_IntValue); ok {
				return strconv.FormatInt(i.IntValue, 10), true
			}
			return v.String(), true
		}
	}
	return "", false
}

func envOf(m map[string]string) Option {
	return WithEnv(func(k string) string { return m[k] })
}

func (r *running) routeTraced(t *testing.T, traceparent string) *extproc.Decision {
	t.Helper()
	h := map[string][]string{"content-type": {"application/json"}}
	if traceparent != "" {
		h["traceparent"] = []string{traceparent}
	}
	d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/completions",
		Headers: h, Body: []byte(`{"model":"m","prompt":"trace me"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Immediate != nil {
		t.Fatalf("immediate response %d: %s", d.Immediate.Status, d.Immediate.Body)
	}
	return d
}

// TestTracingContinuesTheProxysTrace: with upstream's defaults (only the
// collector's address given), a request arriving in a sampled trace gets
// gateway.request and gateway.request_orchestration spans in that trace,
// exported over OTLP/gRPC, and the model server is sent the request span's
// context; an unsampled trace is passed on unsampled and not exported.
func TestTracingContinuesTheProxysTrace(t *testing.T) {
	t.Parallel()
	c := startCollector(t)
	r := startEPPWith(t, 2, 0, []Option{envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + c.addr,
		"OTEL_BSP_SCHEDULE_DELAY":     "50",
		"OTEL_SERVICE_NAME":           "epp-under-test",
	})})

	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
		skipped  = "0af7651916cd43dd8448eb211c80319c"
	)
	unsampled := r.routeTraced(t, "00-"+skipped+"-b7ad6b7169203331-00")
	if tp := unsampled.Headers.Get("traceparent"); !strings.HasPrefix(tp, "00-"+skipped+"-") || !strings.HasSuffix(tp, "-00") {
		t.Errorf("unsampled trace passed on as %q", tp)
	}
	d := r.routeTraced(t, "00-"+traceID+"-"+parentID+"-01")
	tp := d.Headers.Get("traceparent")
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[1] != traceID || parts[2] == parentID || parts[3] != "01" {
		t.Fatalf("model server is sent traceparent %q, want trace %s continued, sampled", tp, traceID)
	}

	spans := c.await(t, traceID, 2)
	req, orch := spans["gateway.request"], spans["gateway.request_orchestration"]
	if req == nil || orch == nil {
		t.Fatalf("spans = %v", spans)
	}
	if got := hex.EncodeToString(req.GetParentSpanId()); got != parentID {
		t.Errorf("gateway.request parent = %s, want the proxy's span %s", got, parentID)
	}
	if got := hex.EncodeToString(req.GetSpanId()); got != parts[2] {
		t.Errorf("model server's parent span %s is not gateway.request (%s)", parts[2], got)
	}
	if req.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("gateway.request kind = %v", req.GetKind())
	}
	if got := hex.EncodeToString(orch.GetParentSpanId()); got != hex.EncodeToString(req.GetSpanId()) {
		t.Errorf("orchestration parent = %s, want gateway.request", got)
	}
	if v, _ := attr(orch.GetAttributes(), "target_model"); v != "m" {
		t.Errorf("target_model = %q", v)
	}
	if v, _ := attr(orch.GetAttributes(), "openepp.destination"); v != d.DestinationHeader {
		t.Errorf("openepp.destination = %q, decision %q", v, d.DestinationHeader)
	}
	if v, _ := attr(req.GetAttributes(), "url.path"); v != "/v1/completions" {
		t.Errorf("url.path = %q", v)
	}
	// A refused request's span carries the status the client got, as an error.
	const refusedID = "5bf92f3577b34da6a3ce929d0e0e4736"
	bad, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/completions",
		Headers: map[string][]string{"content-type": {"application/json"}, "traceparent": {"00-" + refusedID + "-" + parentID + "-01"}},
		Body:    []byte(`{"model":`)})
	if err != nil || bad.Immediate == nil {
		t.Fatalf("malformed body: %v, %+v", err, bad)
	}
	refused := c.await(t, refusedID, 1)["gateway.request"]
	if code, _ := attr(refused.GetAttributes(), "http.response.status_code"); code != strconv.Itoa(bad.Immediate.Status) ||
		refused.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("refused request's span: status_code %q, status %v; the client got %d", code, refused.GetStatus(), bad.Immediate.Status)
	}

	c.mu.Lock()
	name, _ := attr(c.resource, "service.name")
	for _, s := range c.spans {
		if hex.EncodeToString(s.GetTraceId()) == skipped {
			t.Errorf("span %s of the unsampled trace was exported", s.GetName())
		}
	}
	c.mu.Unlock()
	if name != "epp-under-test" {
		t.Errorf("service.name = %q", name)
	}
}

// TestTracingOffPassesNoTraceContext: --tracing=false adds nothing.
func TestTracingOffPassesNoTraceContext(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 1, 0, "--tracing=false")
	d := r.routeTraced(t, "")
	if tp := d.Headers.Get("traceparent"); tp != "" {
		t.Errorf("traceparent %q sent with tracing off", tp)
	}
}

// TestTracingWithoutCollectorKeepsRouting: every span sampled and nothing
// listening where they go; requests are routed as usual, and the failure
// is logged once, not per batch.
func TestTracingWithoutCollectorKeepsRouting(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	r := startEPPWith(t, 1, 0, []Option{envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + dead,
		"OTEL_EXPORTER_OTLP_TIMEOUT":  "200",
		"OTEL_BSP_SCHEDULE_DELAY":     "20",
		"OTEL_TRACES_SAMPLER":         "always_on",
	})})
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if tp := r.routeTraced(t, "").Headers.Get("traceparent"); !strings.HasSuffix(tp, "-01") {
			t.Fatalf("traceparent %q, want a sampled trace", tp)
		}
		if len(r.log.find("trace export failing")) > 0 && i >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the export failure was never logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(r.log.find("trace export failing")); n != 1 {
		t.Errorf("export failure logged %d times, want once", n)
	}
}

// TestTracingBadEnvironmentIsAClearError: a typo in OTEL_* stops the EPP at
// startup with the variable named, instead of tracing nothing quietly.
func TestTracingBadEnvironmentIsAClearError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ key, value string }{
		{"OTEL_TRACES_EXPORTER", "zipkin"},
		{"OTEL_TRACES_SAMPLER", "sometimes"},
		{"OTEL_TRACES_SAMPLER_ARG", "1.5"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
		{"OTEL_BSP_SCHEDULE_DELAY", "soon"},
	} {
		env := map[string]string{tc.key: tc.value}
		if tc.key == "OTEL_TRACES_SAMPLER_ARG" {
			env["OTEL_TRACES_SAMPLER"] = "traceidratio"
		}
		err := Run(context.Background(), []string{"--endpoints", "127.0.0.1:1", "--grpc-port", "0", "--grpc-health-port", "0",
			"--metrics-port", "0", "--bind-address", "127.0.0.1", "--secure-serving=false"}, envOf(env), WithLogger(logr.Discard()))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s=%s: err = %v, want it named", tc.key, tc.value, err)
		}
	}
}

// TestTracingHangingCollectorDoesNotHoldUpExit: a collector that accepts
// spans and never answers delays the EPP's exit by the flush bound (3 s),
// not by the exporter's own timeouts.
func TestTracingHangingCollectorDoesNotHoldUpExit(t *testing.T) {
	t.Parallel()
	c := startCollector(t)
	c.hang = make(chan struct{})
	t.Cleanup(func() { close(c.hang) }) // before the collector stops
	r := startEPPWith(t, 1, 0, []Option{envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + c.addr,
		"OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "20"})}, "--drain-timeout=0s")
	r.routeTraced(t, "")
	r.routeTraced(t, "")
	time.Sleep(200 * time.Millisecond) // the first batch is now stuck in the collector
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Errorf("epp: %v", err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("exit took %v with a hanging collector", took)
	}
}
