package epp

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/extproc"
)

// objectivesFile writes InferenceObjective manifests for batch (-1) and
// critical (3) and returns the path.
func objectivesFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "objectives.yaml")
	doc := func(name string, priority string) string {
		return "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: " + name +
			"}\nspec: {priority: " + priority + "}\n"
	}
	if err := os.WriteFile(path, []byte(doc("batch", "-1")+"---\n"+doc("critical", "3")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func objectiveRequest(objective string) extproc.Request {
	req := flowRequest(objective)
	req.Headers.Set("x-gateway-inference-objective", objective)
	return req
}

// TestObjectivesFileEvictsWithoutKubernetes: with static endpoints, the
// objectives file gives requests their priorities, so flow control and
// in-flight eviction work without an InferencePool: a sheddable request
// holding the only slot is evicted (its stream gets 429, reason evicted)
// when a critical one arrives, and the critical one is routed at once.
func TestObjectivesFileEvictsWithoutKubernetes(t *testing.T) {
	r := startEPP(t, 1, 0, "--objectives-file", objectivesFile(t), flowConfig("  enableEviction: true\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held, err := r.client.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if d, err := held.SendRequest(ctx, objectiveRequest("batch")); err != nil || d.Immediate != nil {
		t.Fatalf("batch request not routed: %v %+v", err, d)
	}
	if err := held.SendResponseHeaders(ctx, extproc.Response{Status: 200, Headers: http.Header{"content-type": {"text/event-stream"}}}, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	critical, err := r.client.RoundTrip(ctx, objectiveRequest("critical"))
	if err != nil || critical.Immediate != nil {
		t.Fatalf("critical request not routed: %v %+v", err, critical)
	}
	t.Logf("critical request routed in %v", time.Since(start))
	select {
	case <-held.Ended():
	case <-ctx.Done():
		t.Fatal("the batch request was not evicted")
	}
	var imm *extproc.ImmediateResponse
	if !errors.As(held.Err(), &imm) || imm.Status != http.StatusTooManyRequests ||
		imm.Headers.Get("x-llm-d-request-dropped-reason") != "evicted" {
		t.Fatalf("the batch request ended with %v, want 429 evicted", held.Err())
	}
	// The debug page shows the eviction: nothing revocable is left, and the
	// batch request's revocation is outstanding or, once its stream ended,
	// cooling for concurrency-detector's 10 ms grace, its credit pending.
	var fc flowControlState
	r.debugJSON(t, flowControlPath, &fc)
	if e := fc.Eviction; e == nil || e.Evictable != 0 || e.Outstanding+e.Cooling > 1 || e.GraceMillis != 10 {
		t.Errorf("%s eviction block %+v, want nothing revocable, at most one revocation pending, 10 ms grace", flowControlPath, e)
	}
	_ = held.Close() // as the proxy does once it answered the client
	eventually(t, "the eviction to be confirmed", func() bool {
		page := r.metricsPage(t)
		return strings.Contains(page, `llm_d_epp_flow_control_revocations_total{inference_pool="",outcome="confirmed"} 1`) &&
			strings.Contains(page, `inference_objective_request_error_total{error_code="429",model_name="m",target_model_name="m"} 1`)
	})
}

// TestObjectivesFileRefusals: a broken file stops the EPP with the reason;
// the flag does not go with an InferencePool; the same for
// --model-rewrites-file.
func TestObjectivesFileRefusals(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "objectives.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: InferenceObjective\nmetadata: {name: a}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--endpoints", "127.0.0.1:1", "--objectives-file", bad}, "apiVersion: want one of"},
		{[]string{"--pool-name", "p", "--objectives-file", bad}, "--objectives-file is for pools without --pool-name"},
		{[]string{"--endpoints", "127.0.0.1:1", "--model-rewrites-file", bad}, "--model-rewrites-file: model rewrites file " + strconv.Quote(bad) + ": document 1: apiVersion"},
		{[]string{"--endpoint-picker-service", "epp", "--model-rewrites-file", bad}, "--model-rewrites-file is for pools without --pool-name"},
	} {
		err := Run(context.Background(), append([]string{"--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
