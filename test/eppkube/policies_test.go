package eppkube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
)

// TestObjectivePriority checks that an InferenceObjective's priority
// reaches the scheduler for requests naming it in the objective header
// (observed through the request metric's priority label).
func TestObjectivePriority(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ip := nextIP()
	simulator(t, ip, port)
	env.RunningPod(t, ns, "a", ip, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	in.waitRoutable(t, hostPort(ip, port), true)
	env.Create(t, &v1alpha2.InferenceObjective{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "critical"},
		Spec:       v1alpha2.InferenceObjectiveSpec{Priority: ptr.To(7), PoolRef: v1alpha2.PoolObjectReference{Name: "pool"}},
	})
	env.Create(t, &v1alpha2.InferenceObjective{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "batch"},
		Spec:       v1alpha2.InferenceObjectiveSpec{Priority: ptr.To(-2), PoolRef: v1alpha2.PoolObjectReference{Name: "pool"}},
	})
	tests := []struct{ header, objective, priority string }{
		{"x-gateway-inference-objective", "critical", "7"},
		{"x-llm-d-inference-objective", "batch", "-2"},
		{"x-gateway-inference-objective", "unknown", "0"},
	}
	for _, tc := range tests {
		line := `inference_objective_request_total{model_name="sim-model",priority="` + tc.priority + `",target_model_name="sim-model"}`
		eventually(t, "priority "+tc.priority+" on the metrics page", func() bool {
			req := completionRequest(`{"model":"sim-model","prompt":"hi"}`, tc.header, tc.objective)
			if d, err := in.client.RoundTrip(context.Background(), req); err != nil || d.Immediate != nil {
				t.Fatalf("request: %v %v", err, d.Immediate)
			}
			return hasLine(in.metricsPage(t), line)
		})
	}
}

// TestRewriteEndToEnd checks that an InferenceModelRewrite changes the
// model the simulator receives while the client sees the name it asked
// for, for plain and streamed responses.
func TestRewriteEndToEnd(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ip := nextIP()
	inst := simulator(t, ip, port)
	env.RunningPod(t, ns, "a", ip, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	in.waitRoutable(t, hostPort(ip, port), true)
	env.Create(t, modelRewrite(ns, "alias", "pool", "my-alias", inst.Model()))
	for _, stream := range []bool{false, true} {
		body, _ := json.Marshal(map[string]any{"model": "my-alias", "prompt": "hello there", "max_tokens": 3, "stream": stream})
		var got []byte
		eventually(t, "the rewrite to apply", func() bool {
			var sent string
			got, sent = exchangeThroughSim(t, in, body)
			return sent == inst.Model()
		})
		if !bytes.Contains(got, []byte(`"model":"my-alias"`)) || bytes.Contains(got, []byte(inst.Model())) {
			t.Errorf("stream=%v: client received %q, want model my-alias only", stream, got)
		}
	}
	if !strings.Contains(in.metricsPage(t), `inference_extension_model_rewrite_decisions_total{model_name="my-alias",model_rewrite_name="alias",target_model="`+inst.Model()+`"}`) {
		t.Error("rewrite decision not counted")
	}
}

// modelRewrite is an InferenceModelRewrite of pool sending requests for
// model as target.
func modelRewrite(ns, name, pool, model, target string) *v1alpha2.InferenceModelRewrite {
	return &v1alpha2.InferenceModelRewrite{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha2.InferenceModelRewriteSpec{
			PoolRef: &v1alpha2.PoolObjectReference{Name: v1alpha2.ObjectName(pool)},
			Rules: []v1alpha2.InferenceModelRewriteRule{{
				Matches: []v1alpha2.Match{{Model: &v1alpha2.ModelMatch{Value: model}}},
				Targets: []v1alpha2.TargetModel{{ModelRewrite: target, Weight: 1}},
			}},
		},
	}
}

// exchangeThroughSim plays what Envoy does: it asks the EPP, sends the
// (possibly rewritten) body to the chosen simulator, and passes the
// simulator's response back through the EPP. It returns the body the
// client receives and the model the simulator was sent.
func exchangeThroughSim(t *testing.T, in *instance, body []byte) ([]byte, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := in.client.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := s.SendRequest(ctx, completionRequest(string(body)))
	if err != nil || d.Immediate != nil {
		t.Fatalf("request: %v %v", err, d.Immediate)
	}
	var sent struct{ Model string }
	if err := json.Unmarshal(d.Body, &sent); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+d.Endpoints[0]+"/v1/completions", bytes.NewReader(d.Body))
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	upstream, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.PlayResponse(ctx, extproc.Response{Status: resp.StatusCode, Headers: resp.Header, Body: upstream, ChunkSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	return out.Body, sent.Model
}

// TestSheddingUnderSaturation checks legacy admission end to end, with the
// default saturation detector: while the only model server's queue is
// deeper than utilization-detector's threshold (5), a request whose
// objective has a negative priority is answered 429 with llm-d's drop
// reason, a request of positive priority is still routed, and once the
// queue drains the sheddable request is routed again.
func TestSheddingUnderSaturation(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ip := nextIP()
	// One sequence at a time, 20 ms per token: each flooding request holds
	// the server for a few seconds, so the rest wait in its queue.
	inst := simulatorWith(t, sim.Config{Address: ip, Port: port, Capacity: sim.Capacity{MaxNumSeqs: 1},
		Latency: sim.Latency{InterTokenLatency: sim.Ptr(20 * time.Millisecond)}})
	env.RunningPod(t, ns, "a", ip, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	in.waitRoutable(t, hostPort(ip, port), true)
	for name, prio := range map[string]int{"batch": -1, "critical": 3} {
		env.Create(t, &v1alpha2.InferenceObjective{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha2.InferenceObjectiveSpec{Priority: ptr.To(prio), PoolRef: v1alpha2.PoolObjectReference{Name: "pool"}},
		})
	}
	ask := func(objective string) *extproc.Decision {
		t.Helper()
		d, err := in.client.RoundTrip(context.Background(), completionRequest(`{"model":"sim-model","prompt":"hi"}`,
			"x-gateway-inference-objective", objective))
		if err != nil {
			t.Fatalf("%s request: %v", objective, err)
		}
		return d
	}
	// The objectives are known once a batch request shows up as priority -1.
	eventually(t, "the objectives to be loaded", func() bool {
		if d := ask("batch"); d.Immediate != nil {
			t.Fatalf("batch request refused on an idle pool: %+v", d.Immediate)
		}
		return hasLine(in.metricsPage(t), `inference_objective_request_total{model_name="sim-model",priority="-1"`)
	})

	flood, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := strings.NewReader(`{"model":"sim-model","prompt":"fill the queue","max_tokens":400}`)
			req, _ := http.NewRequestWithContext(flood, http.MethodPost, inst.URL()+"/v1/completions", body)
			req.Header.Set("content-type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	var shed *extproc.ImmediateResponse
	eventually(t, "a sheddable request to be shed", func() bool {
		shed = ask("batch").Immediate
		return shed != nil
	})
	if shed.Status != http.StatusTooManyRequests || shed.Headers.Get("x-llm-d-request-dropped-reason") != "rejected-saturated" {
		t.Errorf("shed answer: status %d, headers %v; want 429 rejected-saturated", shed.Status, shed.Headers)
	}
	if d := ask("critical"); d.Immediate != nil {
		t.Errorf("priority 3 request refused under saturation: %+v", d.Immediate)
	}
	stop()
	wg.Wait()
	eventually(t, "the sheddable request to be routed once the queue drained", func() bool {
		return ask("batch").Immediate == nil
	})
}
