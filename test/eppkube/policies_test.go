package eppkube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/extproc"
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
	env.Create(t, &v1alpha2.InferenceModelRewrite{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alias"},
		Spec: v1alpha2.InferenceModelRewriteSpec{
			PoolRef: &v1alpha2.PoolObjectReference{Name: "pool"},
			Rules: []v1alpha2.InferenceModelRewriteRule{{
				Matches: []v1alpha2.Match{{Model: &v1alpha2.ModelMatch{Value: "my-alias"}}},
				Targets: []v1alpha2.TargetModel{{ModelRewrite: inst.Model(), Weight: 1}},
			}},
		},
	})
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
