package epp

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/poolroute"
	"github.com/openepp/openepp/pkg/sim"
)

// pooledFile writes r's simulators as an endpoints file whose entries name
// the pools given by index, and returns its path.
func pooledFile(t *testing.T, r *running, pools ...string) string {
	t.Helper()
	var b strings.Builder
	for i, e := range r.entries {
		b.WriteString(strings.TrimSuffix(e, "}\n") + ", pool: " + pools[i] + "}\n")
	}
	path := filepath.Join(t.TempDir(), "pooled.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sendModel routes a completion for model with the headers given as name,
// value pairs.
func (r *running) sendModel(t *testing.T, model string, headers ...string) *extproc.Decision {
	t.Helper()
	req := extproc.Request{Method: "POST", Path: "/v1/completions", Headers: http.Header{"content-type": {"application/json"}},
		Body: []byte(`{"model":"` + model + `","prompt":"hi"}`)}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Headers.Set(headers[i], headers[i+1])
	}
	d, err := r.client.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// waitModelLists waits until the EPP's model list has every model given.
func (r *running) waitModelLists(t *testing.T, models ...string) {
	t.Helper()
	eventually(t, "every server's model list", func() bool {
		imm := r.listModels(t)
		for _, m := range models {
			if imm == nil || !strings.Contains(string(imm.Body), `"`+m+`"`) {
				return false
			}
		}
		return true
	})
}

// TestSeveralPoolsFromAnEndpointsFile: one EPP for pool llama (one server)
// and pool qwen (two): each request goes to the pool serving its model (the
// models-data-source's lists), or to the one its header names; GET
// /v1/models lists both pools' models; every pool has its
// inference_pool_* series.
func TestSeveralPoolsFromAnEndpointsFile(t *testing.T) {
	t.Parallel()
	sims := []sim.Config{{Model: "llama"}, {Model: "qwen"}, {Model: "qwen"}}
	r := launchEPPSims(t, sims, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", pooledFile(t, r, "llama", "qwen", "qwen"), "--config-text", modelsConfig}
	})
	send := func(model string, headers ...string) *extproc.Decision { return r.sendModel(t, model, headers...) }
	r.waitModelLists(t, "llama", "qwen")
	d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: http.MethodGet, Path: "/v1/models",
		Headers: http.Header{"X-Openepp-Pool": {"qwen"}}})
	if err != nil || d.Immediate == nil || strings.Contains(string(d.Immediate.Body), "llama") || !strings.Contains(string(d.Immediate.Body), `"qwen"`) {
		t.Errorf("GET /v1/models for pool qwen: %v %+v, want qwen's models only", err, d)
	}
	for range 6 {
		if d := send("llama"); d.Immediate != nil || d.Endpoints[0] != r.servers[0] {
			t.Fatalf("llama: %+v, want %s", d, r.servers[0])
		}
		if d := send("qwen"); d.Immediate != nil || d.Endpoints[0] == r.servers[0] {
			t.Fatalf("qwen: %+v, want a server of pool qwen", d)
		}
	}
	if d := send("qwen", "x-openepp-pool", "llama"); d.Immediate != nil || d.Endpoints[0] != r.servers[0] {
		t.Errorf("header naming pool llama: %+v", d)
	}
	if d := send("gpt"); d.Immediate == nil || d.Immediate.Status != http.StatusNotFound || !strings.Contains(string(d.Immediate.Body), "pools llama, qwen") {
		t.Errorf("a model no pool serves: %+v, want 404 naming the pools", d.Immediate)
	}
	if d := send("qwen", "x-openepp-pool", "mistral"); d.Immediate == nil || d.Immediate.Status != http.StatusBadRequest {
		t.Errorf("header naming an unknown pool: %+v, want 400", d.Immediate)
	}
	var pools poolsState
	r.debugJSON(t, poolsPath, &pools)
	want := poolsState{Header: "x-openepp-pool", Pools: []poolroute.Pool{
		{Name: "llama", Endpoints: 1, Models: []string{"llama"}}, {Name: "qwen", Endpoints: 2, Models: []string{"qwen"}}}}
	if diff := cmp.Diff(want, pools); diff != "" {
		t.Errorf("%s (-want +got):\n%s", poolsPath, diff)
	}
	page := r.metricsPage(t)
	for _, want := range []string{`inference_pool_ready_pods{name="llama"} 1`, `inference_pool_ready_pods{name="qwen"} 2`,
		`openepp_pool_stale_endpoints{name="llama"} `, `openepp_pool_stale_endpoints{name="qwen"} `} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics page lacks %s", want)
		}
	}
}

// TestFlowControlPerPool: with several pools each pool has its own gate,
// rated on its own endpoints: a request in flight saturates pool a (one
// server, one request at a time) and the next request of pool a waits,
// while pool b's go straight through; the queue and saturation series are
// per pool.
func TestFlowControlPerPool(t *testing.T) {
	t.Parallel()
	var file string
	r := launchEPPSims(t, []sim.Config{{}, {}}, 0, nil, func(r *running) []string {
		file = pooledFile(t, r, "a", "b")
		return []string{"--endpoints-file", file, agentFlowConfig}
	})
	open := func(pool string) (*extproc.Stream, chan *extproc.Decision) {
		s, err := r.client.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		routed := make(chan *extproc.Decision, 1)
		go func() {
			d, err := s.SendRequest(context.Background(), extproc.Request{Method: "POST", Path: "/v1/completions",
				Headers: http.Header{"content-type": {"application/json"}, "x-openepp-pool": {pool}}, Body: []byte(`{"model":"m","prompt":"hi"}`)})
			if err != nil {
				t.Error(err)
			}
			routed <- d
		}()
		return s, routed
	}
	wait := func(routed chan *extproc.Decision, want string) {
		t.Helper()
		select {
		case d := <-routed:
			if d == nil || d.Immediate != nil || d.Endpoints[0] != want {
				t.Fatalf("routed %+v, want %s", d, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("a request for %s was not released", want)
		}
	}
	first, routed := open("a")
	wait(routed, r.servers[0])
	_, held := open("a")
	eventually(t, "pool a's second request waits", func() bool { return r.queued(t, "default-flow") == 1 })
	second, other := open("b")
	wait(other, r.servers[1])
	page := r.metricsPage(t)
	for _, want := range []string{`inference_extension_flow_control_pool_saturation{inference_pool="a"} 1`,
		`inference_extension_flow_control_queue_size{fairness_id="default-flow",inference_pool="a",model_name="m",priority="0",target_model_name="m"} 1`} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics page lacks %s", want)
		}
	}
	var fc flowControlState
	r.debugJSON(t, flowControlPath, &fc)
	if len(fc.Pools) != 2 {
		t.Errorf("/debug/flowcontrol pools %v, want a and b", fc.Pools)
	}
	for _, s := range []*extproc.Stream{first, second} {
		if _, err := s.PlayResponse(context.Background(), extproc.Response{Status: 200,
			Headers: http.Header{"content-type": {"application/json"}}, Body: []byte(`{"choices":[]}`)}); err != nil {
			t.Fatal(err)
		}
	}
	wait(held, r.servers[0])

	// A pool the endpoints file names later gets its own gate on its first
	// request.
	if err := os.WriteFile(file, []byte(strings.Replace(string(mustRead(t, file)), "pool: b", "pool: c", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pool c's request routed", func() bool {
		_, routed := open("c")
		select {
		case d := <-routed:
			return d != nil && d.Immediate == nil && d.Endpoints[0] == r.servers[1]
		case <-time.After(5 * time.Second):
			return false
		}
	})
	r.debugJSON(t, flowControlPath, &fc)
	if _, ok := fc.Pools["c"]; !ok {
		t.Errorf("/debug/flowcontrol pools %v lack the new pool c", fc.Pools)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestEvictionPerPool: each pool evicts only its own requests. A batch
// request in flight in each pool (one server each, one request at a time);
// a critical request for pool b evicts pool b's batch request, and pool
// a's keeps running.
func TestEvictionPerPool(t *testing.T) {
	t.Parallel()
	r := launchEPPSims(t, []sim.Config{{}, {}}, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", pooledFile(t, r, "a", "b"), "--objectives-file", objectivesFile(t),
			flowConfig("  enableEviction: true\n")}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inPool := func(req extproc.Request, pool string) extproc.Request {
		req.Headers.Set("x-openepp-pool", pool)
		return req
	}
	held := map[string]*extproc.Stream{}
	for i, pool := range []string{"a", "b"} {
		s, err := r.client.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if d, err := s.SendRequest(ctx, inPool(objectiveRequest("batch"), pool)); err != nil || d.Immediate != nil || d.Endpoints[0] != r.servers[i] {
			t.Fatalf("pool %s's batch request: %v %+v", pool, err, d)
		}
		if err := s.SendResponseHeaders(ctx, extproc.Response{Status: 200, Headers: http.Header{"content-type": {"text/event-stream"}}}, false); err != nil {
			t.Fatal(err)
		}
		held[pool] = s
	}
	if d, err := r.client.RoundTrip(ctx, inPool(objectiveRequest("critical"), "b")); err != nil || d.Immediate != nil || d.Endpoints[0] != r.servers[1] {
		t.Fatalf("pool b's critical request: %v %+v", err, d)
	}
	select {
	case <-held["b"].Ended():
	case <-ctx.Done():
		t.Fatal("pool b's batch request was not evicted")
	}
	select {
	case <-held["a"].Ended():
		t.Fatalf("pool a's batch request was evicted for pool b's: %v", held["a"].Err())
	case <-time.After(200 * time.Millisecond):
	}
	var fc flowControlState
	r.debugJSON(t, flowControlPath, &fc)
	if a, b := fc.Pools["a"].Eviction, fc.Pools["b"].Eviction; a == nil || b == nil || a.Evictable != 1 || b.Evictable != 0 {
		t.Errorf("%s eviction per pool a %+v, b %+v: want pool a's batch request still revocable, none in b", flowControlPath, a, b)
	}
	if page := r.metricsPage(t); !strings.Contains(page, `llm_d_epp_flow_control_revocations_issued_total{inference_pool="b",priority="3"} 1`) {
		t.Error("the revocation is not counted under pool b")
	}
}
