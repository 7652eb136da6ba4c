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

	send := func(model string, headers ...string) (string, int) {
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
