package server_test

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/metadata"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/poolroute"
	"github.com/openepp/openepp/pkg/server"
)

// twoPools are pool a (llama, and "shared") and pool b (qwen, "shared",
// the adapter "qwen-sql" running on b1).
func twoPools(h *harness) {
	models := map[string][]string{
		"a0": {"llama", "shared"}, "a1": {"llama", "shared"},
		"b0": {"qwen", "shared"}, "b1": {"qwen", "shared"},
	}
	for _, e := range h.store.Snapshot() {
		var items []endpoint.Model
		for _, id := range models[e.Name] {
			items = append(items, endpoint.Model{ID: id})
		}
		e.SetModels(endpoint.NewModels(items, time.Now()))
		if e.Name == "b1" {
			e.SetMetrics(&endpoint.Metrics{ActiveModels: map[string]int{"qwen-sql": 1}})
		}
	}
}

func poolSpecs(pools map[string][]string) []endpoint.Spec {
	var out []endpoint.Spec
	i := 0
	for _, pool := range slices.Sorted(func(yield func(string) bool) {
		for p := range pools {
			if !yield(p) {
				return
			}
		}
	}) {
		for _, name := range pools[pool] {
			i++
			out = append(out, endpoint.Spec{Name: name, Pool: pool, Address: "10.2.0." + string(rune('0'+i)), Port: 8000})
		}
	}
	return out
}

// poolRewrites claims model "alias" for the pool it belongs to.
type poolRewrites struct{ claims string }

func (r poolRewrites) Rewrite(model string, _ *rand.Rand) (string, string, bool) {
	if model == r.claims {
		return "qwen", "alias-rule", true
	}
	return "", "", false
}

func (r poolRewrites) Claims(model string) bool { return model == r.claims }

// poolObjectives gives every objective the pool's priority.
type poolObjectives int

func (p poolObjectives) Priority(string) (int, bool) { return int(p), true }

// TestSeveralPools routes each request among one pool's endpoints, chosen
// by header, subset hint or model, and answers the requests whose pool
// cannot be told with a status and a message that says how to fix them.
func TestSeveralPools(t *testing.T) {
	t.Parallel()
	specs := poolSpecs(map[string][]string{"a": {"a0", "a1"}, "b": {"b0", "b1"}})
	policies := func(pool string) (server.Objectives, server.Rewrites) {
		if pool == "b" {
			return poolObjectives(7), poolRewrites{claims: "alias"}
		}
		return poolObjectives(1), nil
	}
	h := start(t, setup{endpoints: specs, picker: randomPicker(10), server: server.Options{
		Pools: poolroute.New([]string{"a", "b"}, ""), PoolPolicies: policies}})
	twoPools(h)
	addrOf := map[string]string{}
	for _, e := range h.store.Snapshot() {
		addrOf[e.Name] = e.HostPort
	}
	pool := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, addrOf[n])
		}
		slices.Sort(out)
		return out
	}
	chat := func(model string, kv ...string) extproc.Request {
		return post("/v1/completions", mustJSON(map[string]any{"model": model, "prompt": "hi"}), kv...)
	}
	hinted := func(req extproc.Request, addrs ...string) extproc.Request {
		req.FilterMetadata = map[string]map[string]any{server.SubsetNamespace: {server.SubsetKey: addrs}}
		return req
	}
	tests := []struct {
		name     string
		req      extproc.Request
		want     []string
		status   int
		reason   string
		bodyHas  string
		priority int
	}{
		{name: "model of pool a", req: chat("llama"), want: pool("a0", "a1"), priority: 1},
		{name: "model of pool b", req: chat("qwen"), want: pool("b0", "b1"), priority: 7},
		{name: "adapter running in pool b", req: chat("qwen-sql"), want: pool("b0", "b1")},
		{name: "model a rewrite rule of pool b claims", req: chat("alias"), want: pool("b0", "b1")},
		{name: "header wins over the model", req: chat("llama", "x-openepp-pool", "b"), want: pool("b0", "b1")},
		{name: "hint picks the pool", req: hinted(chat("shared"), addrOf["a1"]), want: pool("a1")},
		{name: "hint over two pools, model decides", req: hinted(chat("qwen"), addrOf["a0"], addrOf["b0"]), want: pool("b0")},
		{name: "header and hint disagree", req: hinted(chat("qwen", "x-openepp-pool", "b"), addrOf["a0"]),
			status: http.StatusServiceUnavailable, reason: "rejected-no-endpoints", bodyHas: "subset"},
		{name: "bodyless without a clue goes anywhere", req: extproc.Request{Method: "GET", Path: "/v1/models"}, want: pool("a0", "a1", "b0", "b1")},
		{name: "bodyless with a header", req: extproc.Request{Method: "GET", Path: "/v1/models", Headers: http.Header{"X-Openepp-Pool": {"a"}}}, want: pool("a0", "a1")},
		{name: "unknown pool", req: chat("llama", "x-openepp-pool", "c"), status: http.StatusBadRequest, reason: "bad-request", bodyHas: `unknown pool "c"`},
		{name: "model in both pools", req: chat("shared"), status: http.StatusBadRequest, reason: "bad-request", bodyHas: "set header x-openepp-pool"},
		{name: "model in no pool", req: chat("gpt"), status: http.StatusNotFound, reason: "model-not-found", bodyHas: `"gpt"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Headers == nil {
				tc.req.Headers = http.Header{}
			}
			tc.req.Headers.Set("x-request-id", tc.name)
			tc.req.Headers.Set("x-gateway-inference-objective", "any")
			d := h.exchange(t, tc.req)
			if tc.status != 0 {
				requireImmediate(t, d, tc.status, tc.reason, tc.bodyHas)
				return
			}
			if d.Immediate != nil {
				t.Fatalf("immediate response %d %q", d.Immediate.Status, d.Immediate.Body)
			}
			got := slices.Sorted(slices.Values(d.Endpoints))
			if !isSubset(got, tc.want) {
				t.Errorf("routed to %v, want endpoints of %v", got, tc.want)
			}
			if tc.priority != 0 {
				if got := h.rec.request(t, tc.name).Priority; got != tc.priority {
					t.Errorf("priority %d, want the pool's objective's %d", got, tc.priority)
				}
			}
		})
	}
}

func isSubset(got, want []string) bool {
	for _, g := range got {
		if !slices.Contains(want, g) {
			return false
		}
	}
	return len(got) > 0
}

// TestSeveralPoolsUnreported: pools whose servers have not said what they
// serve cannot be told apart by model, and an empty declared pool makes an
// unlisted model a 503 (it may be that pool's) rather than a 404.
func TestSeveralPoolsUnreported(t *testing.T) {
	t.Parallel()
	specs := poolSpecs(map[string][]string{"a": {"a0"}, "b": {"b0"}})
	h := start(t, setup{endpoints: specs, server: server.Options{Pools: poolroute.New([]string{"a", "b", "c"}, "x-pool")}})
	req := post("/v1/completions", completion("hi"))
	requireImmediate(t, h.exchange(t, req), http.StatusBadRequest, "bad-request", "have not reported their models")
	twoPools(h)
	requireImmediate(t, h.exchange(t, req), http.StatusServiceUnavailable, "rejected-no-endpoints", "pools c have no endpoints")
	requireImmediate(t, h.exchange(t, post("/v1/completions", completion("hi"), "x-pool", "c")), http.StatusServiceUnavailable,
		"rejected-no-endpoints", `pool "c" has none`)
	d := h.exchange(t, post("/v1/completions", completion("hi"), "x-pool", "a"))
	if diff := cmp.Diff([]string{specs[0].Address + ":8000"}, d.Endpoints); d.Immediate != nil || diff != "" {
		t.Errorf("header x-pool: a: %+v %s", d.Immediate, diff)
	}
}

// TestPoolFromStreamMetadata: the pool header may come as the ext_proc
// stream's gRPC metadata (Envoy's initial_metadata, per filter or per
// route) instead of a request header; a request header wins.
func TestPoolFromStreamMetadata(t *testing.T) {
	t.Parallel()
	specs := poolSpecs(map[string][]string{"a": {"a0"}, "b": {"b0"}})
	h := start(t, setup{endpoints: specs, server: server.Options{Pools: poolroute.New([]string{"a", "b"}, "")}})
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "x-openepp-pool", "b")
	d, err := h.client.RoundTrip(ctx, post("/v1/completions", completion("hi")))
	if err != nil || d.Immediate != nil || d.Endpoints[0] != specs[1].Address+":8000" {
		t.Fatalf("pool b from the stream's metadata: %v %+v, want %s", err, d, specs[1].Address)
	}
	d, err = h.client.RoundTrip(ctx, post("/v1/completions", completion("hi"), "x-openepp-pool", "a"))
	if err != nil || d.Immediate != nil || d.Endpoints[0] != specs[0].Address+":8000" {
		t.Fatalf("request header a over metadata b: %v %+v, want %s", err, d, specs[0].Address)
	}
}
