package eppkube_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
)

// TestSeveralPools: one EPP (--pool-name llama,qwen) routes each request
// among the pods of the pool that serves its model, or of the pool its
// header names; each pool's InferenceObjectives apply to its requests
// only; deleting one pool leaves the other serving.
func TestSeveralPools(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	llamaLabels, qwenLabels := map[string]string{"app": "llama"}, map[string]string{"app": "qwen"}
	llama := env.Pool(t, ns, "llama", llamaLabels, port)
	env.Pool(t, ns, "qwen", qwenLabels, port)
	ipL, ipQ := nextIP(), nextIP()
	simulatorWith(t, sim.Config{Address: ipL, Port: port, Model: "llama"})
	simulatorWith(t, sim.Config{Address: ipQ, Port: port, Model: "qwen"})
	env.RunningPod(t, ns, "l", ipL, llamaLabels)
	env.RunningPod(t, ns, "q", ipQ, qwenLabels)
	env.Create(t, modelRewrite(ns, "alias", "qwen", "fast", "qwen"))
	// The default config of these tests lists no models-data-source: an
	// EPP serving several pools adds one.
	in := startEPP(t, ns, "--pool-name", "llama,qwen")

	send := func(model string, headers ...string) (string, int) { return in.sendModel(t, model, headers...) }
	l, q := hostPort(ipL, port), hostPort(ipQ, port)
	eventually(t, "each model routed to its pool", func() bool {
		a, _ := send("llama")
		b, _ := send("qwen")
		return a == l && b == q
	})
	for range 5 {
		if got, status := send("qwen"); got != q {
			t.Fatalf("qwen: %s %d, want %s", got, status, q)
		}
	}
	if got, status := send("qwen", "x-openepp-pool", "llama"); got != l {
		t.Errorf("header naming pool llama: %s %d, want %s", got, status, l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d *extproc.Decision
	eventually(t, "pool qwen's rewrite rule to claim its model", func() bool {
		var err error
		d, err = in.client.RoundTrip(ctx, completionRequest(`{"model":"fast","prompt":"hi"}`))
		return err == nil && d.Immediate == nil
	})
	if d.Endpoints[0] != q || !strings.Contains(string(d.Body), `"model":"qwen"`) {
		t.Errorf("model fast (pool qwen's rewrite): sent %s to %v, want model qwen at %s", d.Body, d.Endpoints, q)
	}
	if body, status := send("mistral"); status != http.StatusNotFound {
		t.Errorf("model of no pool: %d %s, want 404", status, body)
	}
	page := in.metricsPage(t)
	for _, want := range []string{`inference_pool_ready_pods{name="llama"} 1`, `inference_pool_ready_pods{name="qwen"} 1`} {
		if !hasLine(page, want) {
			t.Errorf("metrics page lacks %s", want)
		}
	}

	env.Delete(t, llama)
	eventually(t, "pool llama's endpoints gone", func() bool {
		_, status := send("qwen", "x-openepp-pool", "llama")
		return status == http.StatusServiceUnavailable
	})
	if got, status := send("qwen"); got != q {
		t.Errorf("qwen after pool llama's deletion: %s %d, want %s", got, status, q)
	}
	if !in.serving(t) {
		t.Error("not serving after one of two pools was deleted")
	}
}

// TestPoolsFoundByTheirPicker: with --endpoint-picker-service the EPP
// serves the InferencePools whose endpointPickerRef names its Service, as
// they come and go: a pool created later is served, one pointed at another
// picker is not any more.
func TestPoolsFoundByTheirPicker(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	llamaLabels, qwenLabels := map[string]string{"app": "llama"}, map[string]string{"app": "qwen"}
	env.Pool(t, ns, "llama", llamaLabels, port) // its endpointPickerRef names Service "epp"
	ipL, ipQ := nextIP(), nextIP()
	simulatorWith(t, sim.Config{Address: ipL, Port: port, Model: "llama"})
	simulatorWith(t, sim.Config{Address: ipQ, Port: port, Model: "qwen"})
	env.RunningPod(t, ns, "l", ipL, llamaLabels)
	env.RunningPod(t, ns, "q", ipQ, qwenLabels)
	in := startEPP(t, ns, "--endpoint-picker-service", "epp")
	send := func(model string) (string, int) { return in.sendModel(t, model) }
	l, q := hostPort(ipL, port), hostPort(ipQ, port)
	eventually(t, "pool llama served", func() bool { got, _ := send("llama"); return got == l })

	qwen := env.Pool(t, ns, "qwen", qwenLabels, port)
	eventually(t, "pool qwen served too", func() bool {
		a, _ := send("llama")
		b, _ := send("qwen")
		return a == l && b == q
	})
	env.Update(t, qwen, func() { qwen.Spec.EndpointPickerRef.Name = "other-epp" })
	in.waitRoutable(t, q, false) // pool qwen's endpoint left the datastore
	// One pool is left: every request is its, as with an EPP of one pool.
	for _, model := range []string{"llama", "qwen"} {
		if got, status := send(model); got != l {
			t.Errorf("%s after qwen left: %s %d, want %s", model, got, status, l)
		}
	}

	// A served pool with no endpoints (none of its Pods exists yet) is
	// known: a request naming it waits for endpoints (503), not an unknown
	// pool (400); a model no endpoint lists may be that pool's (503).
	env.Pool(t, ns, "mistral", map[string]string{"app": "mistral"}, port)
	eventually(t, "pool mistral served", func() bool {
		_, status := in.sendModel(t, "llama", "x-openepp-pool", "mistral")
		return status == http.StatusServiceUnavailable
	})
	if got, status := send("llama"); got != l {
		t.Errorf("llama beside an empty pool: %s %d, want %s", got, status, l)
	}
	if body, status := send("qwen"); status != http.StatusServiceUnavailable || !strings.Contains(body, "mistral") {
		t.Errorf("qwen beside an empty pool: %d %s, want 503 naming pool mistral", status, body)
	}
	if body, status := in.sendModel(t, "llama", "x-openepp-pool", "gemma"); status != http.StatusBadRequest || !strings.Contains(body, "gemma") {
		t.Errorf("header naming no pool: %d %s, want 400 naming it", status, body)
	}
}

// sendModel asks in to route a completion for model and returns the
// endpoint and 200, or the immediate response's body and status.
func (in *instance) sendModel(t *testing.T, model string, headers ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := in.client.RoundTrip(ctx, completionRequest(`{"model":"`+model+`","prompt":"hi"}`, headers...))
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if d.Immediate != nil {
		return string(d.Immediate.Body), d.Immediate.Status
	}
	return d.Endpoints[0], http.StatusOK
}
