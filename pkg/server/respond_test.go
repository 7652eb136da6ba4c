package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/models"
	"github.com/openepp/openepp/pkg/scheduler"
)

func modelsResponder(t *testing.T) scheduler.Plugin {
	t.Helper()
	p, err := models.ResponderFactory("models-responder", nil, &scheduler.Handle{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func setModels(t *testing.T, ep *endpoint.Endpoint, list string) {
	t.Helper()
	items, err := models.ParseList([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	ep.SetModels(endpoint.NewModels(items, time.Now()))
}

// TestModelsAnsweredByTheEPP runs the models-responder in a real server:
// GET /v1/models is routed to a server until a list is collected, then
// answered on its headers, for the whole pool, whatever the subset hint; other bodyless requests are routed; an inference
// request for an adapter goes only where it is loaded.
func TestModelsAnsweredByTheEPP(t *testing.T) {
	t.Parallel()
	h := start(t, setup{plugins: []scheduler.Plugin{modelsResponder(t)}, picker: randomPicker(1)})
	get := extproc.Request{Method: http.MethodGet, Path: "/v1/models"}

	d := h.exchange(t, get)
	if d.Immediate != nil || len(d.Endpoints) == 0 {
		t.Fatalf("before any list: answered %+v, routed to %v; want it routed to a model server", d.Immediate, d.Endpoints)
	}

	eps := h.store.Snapshot()
	setModels(t, eps[0], `{"data":[{"id":"base-model","object":"model","created":1,"owned_by":"vllm"}]}`)
	setModels(t, eps[1], `{"data":[{"id":"base-model","object":"model","created":1,"owned_by":"vllm"},{"id":"lora-a","parent":"base-model","created":2,"owned_by":"vllm"}]}`)
	want := `{"object":"list","data":[{"id":"base-model","object":"model","created":1,"owned_by":"vllm"},` +
		`{"id":"lora-a","object":"model","created":2,"owned_by":"vllm"}]}`
	subset := map[string]map[string]any{extproc.SubsetNamespace: {extproc.SubsetKey: []any{eps[2].HostPort}}}
	for _, req := range []extproc.Request{get, {Method: http.MethodGet, Path: "/v1/models/?order=asc"}, {Method: http.MethodGet, Path: "/v1/models", FilterMetadata: subset}} {
		d := h.exchange(t, req)
		if d.Immediate == nil {
			t.Fatalf("%s: routed to %v", req.Path, d.Endpoints)
		}
		if d.Immediate.Status != http.StatusOK || d.Immediate.Headers.Get("content-type") != "application/json" || string(d.Immediate.Body) != want {
			t.Errorf("%s: %d %q %s", req.Path, d.Immediate.Status, d.Immediate.Headers.Get("content-type"), d.Immediate.Body)
		}
	}

	h.route(t, extproc.Request{Method: http.MethodGet, Path: "/health"})
	for range 10 {
		d := h.route(t, post("/v1/completions", mustJSON(map[string]any{"model": "lora-a", "prompt": "x"})))
		if d.Endpoints[0] != eps[1].HostPort {
			t.Fatalf("lora-a went to %s; only %s lists it", d.Endpoints[0], eps[1].HostPort)
		}
	}
	// The base model: its two servers and the uncollected third.
	seen := map[string]bool{}
	for range 60 {
		seen[h.route(t, post("/v1/completions", completion("x"))).Endpoints[0]] = true
	}
	if len(seen) != 3 {
		t.Errorf("base-model went to %v, want all three", seen)
	}
}

// echo answers POST /echo with the request's method and path.
type echo struct{}

func (echo) TypedName() scheduler.TypedName { return scheduler.TypedName{Type: "echo", Name: "echo"} }

func (echo) Respond(_ context.Context, in *scheduler.Inbound, _ []*endpoint.Endpoint) (scheduler.Reply, bool) {
	if in.Path != "/echo" {
		return scheduler.Reply{}, false
	}
	return scheduler.Reply{Status: http.StatusAccepted, ContentType: "text/plain", Body: []byte(in.Method + " " + in.Path + " " + in.Headers["x-test"])}, true
}

// TestResponderAnswersBeforeTheBody: a request with a body can be answered
// on its headers; the body is never read and nothing is scheduled.
func TestResponderAnswersBeforeTheBody(t *testing.T) {
	t.Parallel()
	h := start(t, setup{plugins: []scheduler.Plugin{echo{}}})
	d := h.exchange(t, post("/echo", completion("x"), "x-test", "yes", "x-request-id", "echo-1"))
	if d.Immediate == nil || d.Immediate.Status != http.StatusAccepted || string(d.Immediate.Body) != "POST /echo yes" ||
		d.Immediate.Headers.Get("content-type") != "text/plain" {
		t.Fatalf("immediate %+v", d.Immediate)
	}
	if pre, _ := h.rec.counts("echo-1"); pre != 0 {
		t.Error("an answered request was scheduled")
	}
	h.route(t, post("/v1/completions", completion("x")))
}
