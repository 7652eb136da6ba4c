package epp

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/extproc"
)

// flowConfig lets one request in flight at a time on one endpoint: the
// concurrency detector rates the pool saturated from the first request on.
func flowConfig(flowControl string) string {
	return flowConfigN(1, flowControl)
}

// flowConfigN allows n requests in flight.
func flowConfigN(n int, flowControl string) string {
	return `--config-text=apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: concurrency-detector
  parameters: {maxConcurrency: ` + strconv.Itoa(n) + `}
- type: random-picker
saturationDetector: {pluginRef: concurrency-detector}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: random-picker}]
flowControl:
` + flowControl
}

const flowBody = `{"model":"m","prompt":"hello"}`

func flowRequest(fairness string) extproc.Request {
	return extproc.Request{Method: "POST", Path: "/v1/completions", Body: []byte(flowBody),
		Headers: http.Header{"content-type": {"application/json"}, "x-gateway-inference-fairness-id": {fairness}}}
}

// hold routes one request and keeps its stream open (the model server is
// still answering), so it stays in flight until release is called.
func (r *running) hold(t *testing.T) (release func()) {
	t.Helper()
	return r.holdAs(t, "held")
}

// holdAs is hold for a request of the given fairness ID; it may wait in
// flow control first. Safe to call from other goroutines (it reports with
// Errorf).
func (r *running) holdAs(t *testing.T, fairness string) (release func()) {
	s, err := r.client.Open(context.Background())
	if err != nil {
		t.Error(err)
		return func() {}
	}
	d, err := s.SendRequest(context.Background(), flowRequest(fairness))
	if err != nil || d.Immediate != nil {
		t.Errorf("held request not routed: %v %+v", err, d)
		_ = s.Close()
		return func() {}
	}
	return func() {
		if _, err := s.PlayResponse(context.Background(), extproc.Response{Status: 200,
			Headers: http.Header{"content-type": {"application/json"}}, Body: []byte(`{"choices":[]}`)}); err != nil {
			t.Errorf("held request's response: %v", err)
		}
		_ = s.Close()
	}
}

// send starts a request in the background; its decision arrives on the
// channel.
func (r *running) send(ctx context.Context, fairness string) <-chan *extproc.Decision {
	out := make(chan *extproc.Decision, 1)
	go func() {
		d, err := r.client.RoundTrip(ctx, flowRequest(fairness))
		if err != nil {
			d = &extproc.Decision{Immediate: &extproc.ImmediateResponse{Status: -1, Body: []byte(err.Error())}}
		}
		out <- d
	}()
	return out
}

var queueSizeLine = regexp.MustCompile(`(?m)^inference_extension_flow_control_queue_size\{[^}]*fairness_id="([^"]*)"[^}]*\} (\S+)$`)

// queued sums the queue-size gauge of a fairness ID from the metrics page.
func (r *running) queued(t *testing.T, fairness string) int {
	t.Helper()
	n := 0
	for _, m := range queueSizeLine.FindAllStringSubmatch(r.metricsPage(t), -1) {
		if m[1] == fairness {
			v, _ := strconv.ParseFloat(m[2], 64)
			n += int(v)
		}
	}
	return n
}

func wantImmediate(t *testing.T, d *extproc.Decision, status int, reason string) {
	t.Helper()
	switch {
	case d.Immediate == nil:
		t.Fatalf("routed to %s, want %d %s", d.DestinationHeader, status, reason)
	case d.Immediate.Status != status || d.Immediate.Headers.Get("x-gateway-request-dropped-reason") != reason:
		t.Fatalf("answer %d %q (%s), want %d %s", d.Immediate.Status, d.Immediate.Headers.Get("x-gateway-request-dropped-reason"),
			d.Immediate.Body, status, reason)
	}
}

// TestFlowControlQueuesUntilCapacityFrees runs the whole path: a request
// that finds the pool saturated waits in the EPP and is routed as soon as
// the request ahead of it finishes.
func TestFlowControlQueuesUntilCapacityFrees(t *testing.T) {
	r := startEPP(t, 1, 0, flowConfig("  maxRequests: 10\n"))
	release := r.hold(t)
	waiting := r.send(context.Background(), "tenant-a")
	eventually(t, "the second request waits", func() bool { return r.queued(t, "tenant-a") == 1 })
	select {
	case d := <-waiting:
		t.Fatalf("answered while the pool was saturated: %+v", d.Immediate)
	case <-time.After(100 * time.Millisecond):
	}
	var fc flowControlState
	r.debugJSON(t, flowControlPath, &fc)
	if !fc.Enabled || fc.Requests != 1 || len(fc.Bands) != 1 || len(fc.Bands[0].Flows) != 1 ||
		fc.Bands[0].Flows[0].ID != "tenant-a" || fc.Saturation < 1 {
		t.Errorf("%s while one request waits: %+v", flowControlPath, fc)
	}
	// llm-d's utilization gauges: 1 of the default band's 5000, 1 of the global 10.
	page := r.metricsPage(t)
	for _, want := range []string{`llm_d_epp_flow_control_capacity_utilization_requests{inference_pool="",priority="0"} 0.0002`,
		`llm_d_epp_flow_control_global_capacity_utilization_requests{inference_pool=""} 0.1`} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics page lacks %q while one request waits", want)
		}
	}
	release()
	select {
	case d := <-waiting:
		if d.Immediate != nil {
			t.Fatalf("refused: %d %s", d.Immediate.Status, d.Immediate.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not released after the request ahead finished")
	}
	page = r.metricsPage(t)
	for _, want := range []string{`outcome="Dispatched"`,
		`inference_extension_flow_control_request_enqueue_duration_seconds_count{fairness_id="tenant-a",outcome="Enqueued",priority="0"} 1`,
		`llm_d_epp_flow_control_request_enqueue_duration_seconds_count{fairness_id="tenant-a",outcome="Enqueued",priority="0"} 1`,
		"inference_extension_flow_control_dispatch_cycle_duration_seconds_count ",
		"llm_d_epp_flow_control_dispatch_cycle_duration_seconds_count "} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics page lacks %q", want)
		}
	}
	if r.queued(t, "tenant-a") != 0 {
		t.Errorf("queue gauge not back to 0")
	}
}

// TestFlowControlRefusals covers every way out of the queue but dispatch:
// a full queue (429 at once), an expired wait (429), and a client that
// gives up (its place is freed).
func TestFlowControlRefusals(t *testing.T) {
	r := startEPP(t, 1, 0, flowConfig("  maxRequests: 1\n  defaultRequestTTL: 1s\n"))
	release := r.hold(t)
	defer release()

	first := r.send(context.Background(), "a")
	eventually(t, "one request waits", func() bool { return r.queued(t, "a") == 1 })
	full, err := r.client.RoundTrip(context.Background(), flowRequest("b"))
	if err != nil {
		t.Fatal(err)
	}
	wantImmediate(t, full, http.StatusTooManyRequests, "rejected-saturated")
	if !strings.Contains(string(full.Immediate.Body), "maxRequests") {
		t.Errorf("capacity refusal does not name the limit: %s", full.Immediate.Body)
	}
	select {
	case d := <-first:
		wantImmediate(t, d, http.StatusTooManyRequests, "rejected-ttl-expired")
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request outlived its TTL")
	}

	ctx, cancel := context.WithCancel(context.Background())
	gone := r.send(ctx, "c")
	eventually(t, "the next request waits", func() bool { return r.queued(t, "c") == 1 })
	cancel()
	<-gone
	eventually(t, "a departed client leaves the queue", func() bool { return r.queued(t, "c") == 0 })
	page := r.metricsPage(t)
	for _, outcome := range []string{"RejectedCapacity", "EvictedTTL", "EvictedContextCancelled"} {
		if !strings.Contains(page, fmt.Sprintf("outcome=%q", outcome)) {
			t.Errorf("no %s outcome on the metrics page", outcome)
		}
	}
	if !regexp.MustCompile(`(?m)^llm_d_epp_flow_control_pool_saturation\{[^}]*stage="effective"[^}]*\} `).MatchString(page) {
		t.Error(`llm_d_epp_flow_control_pool_saturation has no stage="effective" series, which llm-d's alerts select`)
	}
}

// TestFlowControlReleasesOnlyWhatFits: when room for two opens up, two
// waiting requests go and the rest keep waiting. The dispatcher waits for
// each released request to be scheduled (and counted by the detector)
// before it judges the next, so a queue is not emptied onto a pool that
// has room for two.
func TestFlowControlReleasesOnlyWhatFits(t *testing.T) {
	r := startEPP(t, 1, 0, flowConfigN(2, "  maxRequests: 10\n"))
	first, second := r.hold(t), r.hold(t)
	routed := make(chan func(), 4)
	for range 4 {
		go func() { routed <- r.holdAs(t, "waiting") }()
	}
	eventually(t, "four requests wait", func() bool { return r.queued(t, "waiting") == 4 })
	first()
	second()
	var held []func()
	for range 2 {
		select {
		case release := <-routed:
			held = append(held, release)
		case <-time.After(10 * time.Second):
			t.Fatal("waiting requests not released when room opened")
		}
	}
	select {
	case release := <-routed:
		held = append(held, release)
		t.Errorf("a third request went while two were in flight (limit 2)")
	case <-time.After(200 * time.Millisecond):
	}
	if n := r.queued(t, "waiting"); n != 2-(len(held)-2) {
		t.Errorf("%d still waiting, want 2", n)
	}
	for _, release := range held {
		release()
	}
	for range 4 - len(held) {
		select {
		case release := <-routed:
			release()
		case <-time.After(10 * time.Second):
			t.Fatal("the last requests were never released")
		}
	}
}

// TestFlowControlSurvivesReload: a reload reconfigures the one queue in
// place: a request waiting when the config changes stays queued, the new
// limits apply at once, and the waiting requests are released as the
// request in flight ends.
func TestFlowControlSurvivesReload(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	write := func(flowControl string) {
		text := strings.TrimPrefix(flowConfigN(1, flowControl), "--config-text=")
		if err := os.WriteFile(cfg+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".tmp", cfg); err != nil {
			t.Fatal(err)
		}
	}
	write("  maxRequests: 10\n")
	r := startEPP(t, 1, 0, "--config-file", cfg)
	release := r.hold(t)
	first := r.send(context.Background(), "before")
	eventually(t, "a request waits", func() bool { return r.queued(t, "before") == 1 })
	write("  maxRequests: 2\n")
	eventually(t, "the reload to take effect", func() bool {
		return strings.Contains(r.metricsPage(t), `openepp_config_reloads_total{result="success"} 1`)
	})
	second := r.send(context.Background(), "after")
	eventually(t, "the next request waits behind it", func() bool { return r.queued(t, "after") == 1 })
	full, err := r.client.RoundTrip(context.Background(), flowRequest("third"))
	if err != nil {
		t.Fatal(err)
	}
	wantImmediate(t, full, http.StatusTooManyRequests, "rejected-saturated") // the new limit of 2
	release()
	for _, ch := range []<-chan *extproc.Decision{first, second} {
		select {
		case d := <-ch:
			if d.Immediate != nil {
				t.Fatalf("refused: %d %s", d.Immediate.Status, d.Immediate.Body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiting request was never released after the reload")
		}
	}
}

// TestFlowControlIsTraced: the request span says which flow the request
// was in and how long flow control held it.
func TestFlowControlIsTraced(t *testing.T) {
	c := startCollector(t)
	r := startEPPWith(t, 1, 0, []Option{envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + c.addr, "OTEL_BSP_SCHEDULE_DELAY": "50",
	})}, flowConfigN(4, "  maxRequests: 10\n"))
	const traceID = "6bf92f3577b34da6a3ce929d0e0e4736"
	req := flowRequest("tenant-t")
	req.Headers.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if d, err := r.client.RoundTrip(context.Background(), req); err != nil || d.Immediate != nil {
		t.Fatalf("not routed: %v %+v", err, d)
	}
	span := c.await(t, traceID, 2)["gateway.request"]
	if v, _ := attr(span.GetAttributes(), "openepp.fairness_id"); v != "tenant-t" {
		t.Errorf("openepp.fairness_id = %q", v)
	}
	if _, ok := attr(span.GetAttributes(), "openepp.flow_control.wait_seconds"); !ok {
		t.Errorf("no openepp.flow_control.wait_seconds on the request span")
	}
}

// TestFlowControlScaleFromZero: with the pool empty a request waits instead
// of failing, and is routed as soon as an endpoint appears (a pool scaled
// to zero coming back); past noEndpointRequestTTL it gets 503
// rejected-no-endpoints.
func TestFlowControlScaleFromZero(t *testing.T) {
	r := startEPP(t, 1, 0, flowConfig("  noEndpointRequestTTL: 2s\n"))
	// Nothing is in flight, so the detector rates the pool 1 exactly when it
	// is empty.
	empty := func() bool { return poolSaturation(r.metricsPage(t)) == "1" }
	r.writeEndpoints(t)
	eventually(t, "the pool to be empty", empty)
	waiting := r.send(context.Background(), "cold")
	eventually(t, "the request to wait for an endpoint", func() bool { return r.queued(t, "cold") == 1 })
	r.writeEndpoints(t, r.entries...)
	select {
	case d := <-waiting:
		if d.Immediate != nil {
			t.Fatalf("refused: %d %s", d.Immediate.Status, d.Immediate.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not routed after an endpoint appeared")
	}

	r.writeEndpoints(t)
	eventually(t, "the pool to be empty again", empty)
	d, err := r.client.RoundTrip(context.Background(), flowRequest("cold"))
	if err != nil {
		t.Fatal(err)
	}
	wantImmediate(t, d, http.StatusServiceUnavailable, "rejected-no-endpoints")
}

// TestFlowControlFullQueueWithoutEndpoints: when the queue in front of an
// empty pool is full, the next request is refused 503 rejected-no-endpoints
// (llm-d's RejectedNoEndpoints), not 429: the pool is unavailable, not busy.
func TestFlowControlFullQueueWithoutEndpoints(t *testing.T) {
	r := startEPP(t, 1, 0, flowConfig("  maxRequests: 1\n  noEndpointRequestTTL: 30s\n"))
	r.writeEndpoints(t)
	eventually(t, "the pool to be empty", func() bool { return poolSaturation(r.metricsPage(t)) == "1" })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := r.send(ctx, "cold")
	eventually(t, "the first request to wait", func() bool { return r.queued(t, "cold") == 1 })
	d, err := r.client.RoundTrip(context.Background(), flowRequest("cold"))
	if err != nil {
		t.Fatal(err)
	}
	wantImmediate(t, d, http.StatusServiceUnavailable, "rejected-no-endpoints")
	if page := r.metricsPage(t); !strings.Contains(page, `outcome="RejectedNoEndpoints"`) {
		t.Error("no RejectedNoEndpoints outcome on the metrics page")
	}
	cancel()
	<-waiting
}

var saturationLine = regexp.MustCompile(`(?m)^inference_extension_flow_control_pool_saturation\{[^}]*\} (\S+)$`)

// poolSaturation is the saturation gauge's value on page ("" if absent).
func poolSaturation(page string) string {
	if m := saturationLine.FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return ""
}

// TestReloadedDetectorKeepsInFlightCount: a reload that raises the
// concurrency detector's limit builds a new detector, which must count the
// requests already in flight: with two held and the limit raised from 2 to
// 3, one more request is dispatched and the next waits (a detector that
// started from zero let both through).
func TestReloadedDetectorKeepsInFlightCount(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	write := func(limit int) {
		text := strings.TrimPrefix(flowConfigN(limit, "  maxRequests: 10\n"), "--config-text=")
		if err := os.WriteFile(cfg+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".tmp", cfg); err != nil {
			t.Fatal(err)
		}
	}
	write(2)
	r := startEPP(t, 1, 0, "--config-file", cfg)
	first, second := r.holdAs(t, "first"), r.holdAs(t, "second")
	write(3)
	eventually(t, "the reload to take effect", func() bool {
		return strings.Contains(r.metricsPage(t), `openepp_config_reloads_total{result="success"} 1`)
	})
	third := r.holdAs(t, "third")
	fourth := r.send(context.Background(), "fourth")
	select {
	case d := <-fourth:
		t.Fatalf("dispatched with 3 of 3 requests in flight: %+v", d)
	case <-time.After(500 * time.Millisecond):
	}
	if n := r.queued(t, "fourth"); n != 1 {
		t.Errorf("queued requests of flow fourth = %d, want 1", n)
	}
	first()
	select {
	case d := <-fourth:
		if d.Immediate != nil {
			t.Fatalf("refused: %d %s", d.Immediate.Status, d.Immediate.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request was not released when a request in flight ended")
	}
	second()
	third()
}
