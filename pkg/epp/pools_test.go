package epp

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/extproc"
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
	send := func(model string, headers ...string) *extproc.Decision {
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
	eventually(t, "every server's model list", func() bool {
		imm := r.listModels(t)
		return imm != nil && strings.Contains(string(imm.Body), `"llama"`) && strings.Contains(string(imm.Body), `"qwen"`)
	})
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
	page := r.metricsPage(t)
	for _, want := range []string{`inference_pool_ready_pods{name="llama"} 1`, `inference_pool_ready_pods{name="qwen"} 2`} {
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
	r := launchEPPSims(t, []sim.Config{{}, {}}, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", pooledFile(t, r, "a", "b"), agentFlowConfig}
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
	_, other := open("b")
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
	if _, err := first.PlayResponse(context.Background(), extproc.Response{Status: 200,
		Headers: http.Header{"content-type": {"application/json"}}, Body: []byte(`{"choices":[]}`)}); err != nil {
		t.Fatal(err)
	}
	wait(held, r.servers[0])
}

// TestSeveralPoolsRefuseEviction: in-flight eviction's books do not tell
// pools apart, so it is refused, with the reason, for several pools.
func TestSeveralPoolsRefuseEviction(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "eps.yaml")
	text := "- {name: a, address: 127.0.0.1, port: 1, pool: a}\n- {name: b, address: 127.0.0.1, port: 2, pool: b}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), []string{"--endpoints-file", path, agentFlowConfig + "  enableEviction: true\n", "--grpc-port", "0",
		"--grpc-health-port", "0", "--metrics-port", "0", "--bind-address", "127.0.0.1"}, WithLogger(logr.Discard()))
	if err == nil || !strings.Contains(err.Error(), "enableEviction needs one pool per EPP") {
		t.Errorf("Run error = %v, want eviction refused for several pools", err)
	}
}
