package models

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// serving returns an endpoint named name that lists body's models, or
// none (uncollected) when body is "".
func serving(t *testing.T, name, body string) *endpoint.Endpoint {
	t.Helper()
	ep := endpoint.New(endpoint.Spec{Name: name, Address: "10.0.0.1", Port: 8000})
	if body != "" {
		items, err := ParseList([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		ep.SetModels(endpoint.NewModels(items, time.Unix(1, 0)))
	}
	return ep
}

// lists is a model list of base models and adapters ("name<parent").
func lists(entries ...string) string {
	var data []map[string]any
	for _, e := range entries {
		m := map[string]any{"id": e, "object": "model", "owned_by": "vllm", "created": 1}
		for i := range e {
			if e[i] == '<' {
				m["id"], m["parent"] = e[:i], e[i+1:]
			}
		}
		data = append(data, m)
	}
	b, _ := json.Marshal(map[string]any{"object": "list", "data": data})
	return string(b)
}

func newResponder(t *testing.T) (*Responder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := ResponderFactory("r", nil, &scheduler.Handle{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Responder), reg
}

func TestRespondUnionsTheCollectedLists(t *testing.T) {
	t.Parallel()
	r, reg := newResponder(t)
	eps := []*endpoint.Endpoint{
		serving(t, "b", `{"data":[{"id":"base","object":"model","created":2,"owned_by":"b-owner","root":"/m","max_model_len":4096},
			{"id":"lora-b","parent":"base","root":"/a/b","created":3,"owned_by":"vllm","shutdown_date":"2027-01-01"}]}`),
		serving(t, "c", ""), // not collected yet: skipped
		serving(t, "a", `{"data":[{"id":"lora-a","parent":"base","object":"model","created":4,"owned_by":"vllm"},
			{"id":"base","object":"model","created":1,"owned_by":"a-owner"}]}`),
	}
	reply, ok := r.Respond(context.Background(), &scheduler.Inbound{Method: "GET", Path: "/v1/models"}, eps)
	if !ok {
		t.Fatal("GET /v1/models declined")
	}
	if reply.Status != http.StatusOK || reply.ContentType != "application/json" {
		t.Fatalf("reply %d %q", reply.Status, reply.ContentType)
	}
	// base from "a", the first endpoint by name; sorted by id; only the
	// OpenAI fields; a missing object becomes "model".
	want := `{"object":"list","data":[` +
		`{"id":"base","object":"model","created":1,"owned_by":"a-owner"},` +
		`{"id":"lora-a","object":"model","created":4,"owned_by":"vllm"},` +
		`{"id":"lora-b","object":"model","created":3,"owned_by":"vllm","shutdown_date":"2027-01-01"}]}`
	if diff := cmp.Diff(want, string(reply.Body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(r.tel.byCode.WithLabelValues("200")); got != 1 {
		t.Errorf("openepp_models_responses_total{code=200} = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "openepp_models_responses_total"); err != nil || n != 1 {
		t.Errorf("series %d, %v", n, err)
	}
}

// TestRespondWithoutCollectedListsDeclines: until a list is collected a
// model server answers (with the client's credentials), rather than a 503.
func TestRespondWithoutCollectedListsDeclines(t *testing.T) {
	t.Parallel()
	r, reg := newResponder(t)
	for _, eps := range [][]*endpoint.Endpoint{nil, {serving(t, "a", ""), serving(t, "b", "")}} {
		if reply, ok := r.Respond(context.Background(), &scheduler.Inbound{Method: "GET", Path: "/v1/models"}, eps); ok {
			t.Fatalf("answered %d %s, want the request routed to a model server", reply.Status, reply.Body)
		}
	}
	// Collected but empty is an answer, not an outage.
	reply, _ := r.Respond(context.Background(), &scheduler.Inbound{Method: "GET", Path: "/v1/models"}, []*endpoint.Endpoint{serving(t, "a", `{"data":[]}`)})
	if reply.Status != http.StatusOK || string(reply.Body) != `{"object":"list","data":[]}` {
		t.Errorf("empty collected list: %d %s", reply.Status, reply.Body)
	}
	if n, err := testutil.GatherAndCount(reg, "openepp_models_responses_total"); err != nil || n != 1 {
		t.Errorf("openepp_models_responses_total series %d (%v), want only code 200", n, err)
	}
}

func TestRespondDeclinesOtherRequests(t *testing.T) {
	t.Parallel()
	r, _ := newResponder(t)
	eps := []*endpoint.Endpoint{serving(t, "a", lists("base"))}
	tests := []struct {
		method, path string
		answered     bool
	}{
		{"GET", "/v1/models", true},
		{"GET", "/v1/models/", true},
		{"GET", "/v1/models?limit=5", true},
		{"GET", "/v1/models/?x", true},
		{"POST", "/v1/models", false},
		{"HEAD", "/v1/models", false},
		{"GET", "/v1/models/base", true}, // one model: answered from the lists (TestRespondOneModel)
		{"GET", "/v1/modelsx", false},
		{"GET", "/v2/models", false},
		{"POST", "/v1/completions", false},
		{"GET", "/health", false},
	}
	for _, tc := range tests {
		if _, got := r.Respond(context.Background(), &scheduler.Inbound{Method: tc.method, Path: tc.path}, eps); got != tc.answered {
			t.Errorf("%s %s: answered %v, want %v", tc.method, tc.path, got, tc.answered)
		}
	}
}

// TestRespondOneModel checks GET /v1/models/{id}: the entry when any
// endpoint lists it (ids with slashes, escaped or not), 404 when every
// list is collected and none has it, and a decline (a server answers) when
// an uncollected endpoint might have it or nothing is collected.
func TestRespondOneModel(t *testing.T) {
	t.Parallel()
	r, _ := newResponder(t)
	all := []*endpoint.Endpoint{serving(t, "a", lists("org/base", "lora-a<org/base")), serving(t, "b", lists("org/base"))}
	partly := append([]*endpoint.Endpoint{serving(t, "c", "")}, all...)
	none := []*endpoint.Endpoint{serving(t, "c", "")}
	tests := []struct {
		name     string
		eps      []*endpoint.Endpoint
		path     string
		answered bool
		status   int
		body     string
	}{
		{"adapter", all, "/v1/models/lora-a", true, 200, `{"id":"lora-a","object":"model","created":1,"owned_by":"vllm"}`},
		{"slashed id", all, "/v1/models/org/base?x=1", true, 200, `{"id":"org/base","object":"model","created":1,"owned_by":"vllm"}`},
		{"escaped id", partly, "/v1/models/org%2Fbase", true, 200, `{"id":"org/base","object":"model","created":1,"owned_by":"vllm"}`},
		{"unknown, all collected", all, "/v1/models/nope", true, 404, `{"error":{"code":404,"message":"The model ` + "`nope`" + ` does not exist.","type":"NotFoundError"}}`},
		{"unknown, one uncollected", partly, "/v1/models/nope", false, 0, ""},
		{"nothing collected", none, "/v1/models/org/base", false, 0, ""},
	}
	for _, tc := range tests {
		reply, ok := r.Respond(context.Background(), &scheduler.Inbound{Method: "GET", Path: tc.path}, tc.eps)
		if ok != tc.answered || reply.Status != tc.status || string(reply.Body) != tc.body {
			t.Errorf("%s: answered %v, %d %s; want %v, %d %s", tc.name, ok, reply.Status, reply.Body, tc.answered, tc.status, tc.body)
		}
	}
}

func TestScreen(t *testing.T) {
	t.Parallel()
	const (
		base  = "base"
		other = "other-base"
	)
	tests := []struct {
		name  string
		model string
		// lists maps each endpoint (e0, e1, …) to its list; "" is
		// uncollected.
		lists []string
		want  []string
	}{
		{name: "no model: everyone", model: "", lists: []string{lists(base), lists(other), ""}, want: []string{"e0", "e1", "e2"}},
		{name: "base model: listers and uncollected", model: base,
			lists: []string{lists(base), lists(other), "", lists(base, "a<"+base)}, want: []string{"e0", "e2", "e3"}},
		{name: "base here, adapter there: both kinds of listers", model: "m",
			lists: []string{lists("m"), lists(base, "m<"+base), lists(other)}, want: []string{"e0", "e1"}},
		{name: "adapter: only its servers", model: "a",
			lists: []string{lists(base, "a<"+base), lists(base, "b<"+base), "", lists(base, "a<"+base, "b<"+base)}, want: []string{"e0", "e3"}},
		{name: "nobody lists it: the uncollected", model: "ghost",
			lists: []string{lists(base), "", lists(other), ""}, want: []string{"e1", "e3"}},
		{name: "nobody lists it, all collected: everyone", model: "ghost",
			lists: []string{lists(base), lists(other)}, want: []string{"e0", "e1"}},
		{name: "nothing collected: everyone", model: base, lists: []string{"", ""}, want: []string{"e0", "e1"}},
		{name: "everyone lists it: everyone", model: base, lists: []string{lists(base), lists(base)}, want: []string{"e0", "e1"}},
	}
	r, _ := newResponder(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eps := make([]*endpoint.Endpoint, len(tc.lists))
			for i, l := range tc.lists {
				eps[i] = serving(t, fmt.Sprintf("e%d", i), l)
			}
			got := r.Screen(context.Background(), plugintest.State(1), &scheduler.Request{Model: tc.model}, eps)
			names := []string{}
			for _, ep := range got {
				names = append(names, ep.Name)
			}
			if diff := cmp.Diff(tc.want, names); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if len(got) == len(eps) && &got[0] != &eps[0] {
				t.Error("keeping everyone must return the input itself, allocating nothing")
			}
		})
	}
}

func TestScreenerContract(t *testing.T) {
	t.Parallel()
	r, _ := newResponder(t)
	plugintest.Screener(t, r, plugintest.Request("m", 100))
	plugintest.Screener(t, r, plugintest.Request("", 100))
}
