package eppkube_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/gateway"
	"github.com/openepp/openepp/pkg/sim"
)

// TestInFlightEvictionMakesRoomForCriticalRequests runs llm-d's in-flight
// eviction end to end: a sheddable (priority -1) request streams a long
// answer from the only slot of the pool; a critical one (priority 3)
// arrives and waits behind it. The EPP evicts the sheddable request (its
// client's stream is reset, the simulator aborts it), and the critical
// request is served long before the sheddable one would have finished.
func TestInFlightEvictionMakesRoomForCriticalRequests(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ip := nextIP()
	itl := 5 * time.Millisecond // 4,000 tokens: 20 s alone
	server := simulatorWith(t, sim.Config{Address: ip, Port: port, Latency: sim.Latency{InterTokenLatency: &itl}})
	env.RunningPod(t, ns, "a", ip, model)
	in := startEPP(t, ns, "--pool-name", "pool", "--config-text", oneAtATime+"flowControl: {enableEviction: true}\n")
	in.waitRoutable(t, hostPort(ip, port), true)
	in.objectives(t, ns, map[string]int{"batch": -1, "critical": 3})

	gw, err := gateway.New(gateway.Options{ExtProc: in.client})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	t.Cleanup(front.Close)
	t.Cleanup(gw.Close)
	post := func(ctx context.Context, objective, body string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, front.URL+"/v1/completions", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("content-type", "application/json")
		req.Header.Set("x-gateway-inference-objective", objective)
		return http.DefaultClient.Do(req)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	batch, err := post(ctx, "batch", `{"model":"sim-model","prompt":"long","max_tokens":4000,"stream":true}`)
	if err != nil || batch.StatusCode != http.StatusOK {
		t.Fatalf("batch request: %v %v", err, batch)
	}
	defer batch.Body.Close()
	lines := bufio.NewReader(batch.Body)
	if _, err := lines.ReadString('\n'); err != nil {
		t.Fatalf("batch stream did not start: %v", err)
	}
	batchEnd := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, lines)
		batchEnd <- err
	}()

	start := time.Now()
	critical, err := post(ctx, "critical", `{"model":"sim-model","prompt":"urgent","max_tokens":4}`)
	if err != nil {
		t.Fatalf("critical request: %v", err)
	}
	body, _ := io.ReadAll(critical.Body)
	critical.Body.Close()
	took := time.Since(start)
	if critical.StatusCode != http.StatusOK {
		t.Fatalf("critical request answered %d %s", critical.StatusCode, body)
	}
	t.Logf("critical request served in %v", took)
	if took > 10*time.Second {
		t.Errorf("critical request took %v: it waited for the batch request to finish", took)
	}
	select {
	case err := <-batchEnd:
		if err == nil {
			t.Errorf("the evicted batch stream ended cleanly; want a reset")
		}
	case <-time.After(waitFor):
		t.Fatal("the batch stream was never ended")
	}
	eventually(t, "the simulator to abort the evicted request", func() bool {
		m := server.EngineMetrics()
		return m.Running == 0 && m.Waiting == 0
	})
	page := in.metricsPage(t)
	for _, want := range []string{
		`llm_d_epp_flow_control_revocations_issued_total{inference_pool="pool",priority="3"} 1`,
		`llm_d_epp_flow_control_revocations_total{inference_pool="pool",outcome="confirmed"} 1`,
		`llm_d_epp_flow_control_revocation_confirmation_seconds_count{inference_pool="pool"} 1`,
	} {
		if !hasLine(page, want) {
			t.Errorf("metrics page lacks %q", want)
		}
	}
}
