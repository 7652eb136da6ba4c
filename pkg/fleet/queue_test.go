package fleet

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// flowConfig is the upstream default scoring with flow control gated by a
// concurrency detector allowing perServer requests in flight per server.
func flowConfig(perServer int, flowControl string) []byte {
	return []byte(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: concurrency-detector
  parameters: {maxConcurrency: ` + strconv.Itoa(perServer) + `}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: queue-scorer}, {pluginRef: kv-cache-utilization-scorer}]
saturationDetector: {pluginRef: concurrency-detector}
flowControl:
` + flowControl)
}

// TestFlowControlHoldsRequests: with flow control the fleet holds requests
// in the EPP while the pool has as many in flight as the detector allows,
// so they wait there instead of in the servers' queues (TTFT grows, time
// per token falls); a short TTL or a small queue refuses requests, counted
// as failed with flow control's reason; and a run stays deterministic.
func TestFlowControlHoldsRequests(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration, w.WarmupRequests = 2*time.Second, 50
	run := func(name string, yaml []byte) *StageResult {
		t.Helper()
		r, err := Run(context.Background(), RunSpec{Workload: w, Policy: ConfigPolicy(name, "", yaml), QPS: 400, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	open := run("open", flowConfig(100, "  maxRequests: 0\n")) // high limit: rarely holds
	held := run("held", flowConfig(4, "  maxRequests: 0\n"))
	if !(held.TTFT.P50 > open.TTFT.P50 && held.TPOT.P50 < open.TPOT.P50) {
		t.Errorf("holding to 4 per server: TTFT p50 %.0f vs %.0f ms, TPOT p50 %.1f vs %.1f ms; want later first tokens, faster decoding",
			held.TTFT.P50, open.TTFT.P50, held.TPOT.P50, open.TPOT.P50)
	}
	if held.Failed != 0 || held.FirstError != "" {
		t.Errorf("no limit, no TTL: %d failed (%s)", held.Failed, held.FirstError)
	}
	for _, tc := range []struct{ flowControl, reason string }{
		{"  defaultRequestTTL: 50ms\n", errQueueTTL.Error()},
		{"  maxRequests: 5\n", errQueueFull.Error()},
	} {
		r := run("bounded", flowConfig(4, tc.flowControl))
		if r.Failed == 0 || !strings.Contains(r.FirstError, tc.reason) {
			t.Errorf("%s: %d failed, first error %q; want refusals %q", strings.TrimSpace(tc.flowControl), r.Failed, r.FirstError, tc.reason)
		}
		if r.Completed == 0 {
			t.Errorf("%s: nothing completed", strings.TrimSpace(tc.flowControl))
		}
	}
	again := run("held", flowConfig(4, "  maxRequests: 0\n"))
	held.WallSeconds, again.WallSeconds = 0, 0
	if !cmp.Equal(*held, *again) {
		t.Error("same seed, different results with flow control")
	}
}

// TestClassesAndPriority splits traffic into a critical class (priority 3)
// and a sheddable batch class (priority -1) on an overloaded fleet: the
// report has one line per class; legacy admission (no flow control) sheds
// only batch requests; flow control with batch held at 80 % of the pool
// refuses nobody and serves critical requests first.
func TestClassesAndPriority(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration, w.WarmupRequests = 2*time.Second, 50
	classes, err := ParseClasses("critical:1:3,batch:4:-1")
	if err != nil {
		t.Fatal(err)
	}
	run := func(yaml []byte) *StageResult {
		t.Helper()
		r, err := Run(context.Background(), RunSpec{Workload: w, Policy: ConfigPolicy("p", "", yaml), QPS: 400, Seed: 5, Classes: classes})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Classes) != 2 || r.Classes[0].Name != "critical" || r.Classes[1].Priority != -1 ||
			r.Classes[0].Requests+r.Classes[1].Requests != r.Requests {
			t.Fatalf("classes %+v of %d requests", r.Classes, r.Requests)
		}
		return r
	}
	legacy := run([]byte(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: queue-scorer}, {type: concurrency-detector, parameters: {maxConcurrency: 4}}]
saturationDetector: {pluginRef: concurrency-detector}
`))
	if c, b := legacy.Classes[0], legacy.Classes[1]; c.Failed != 0 || b.Failed == 0 {
		t.Errorf("legacy shedding: critical failed %d, batch failed %d; want only batch shed", c.Failed, b.Failed)
	}
	held := run([]byte(strings.Replace(string(flowConfig(4, "  maxRequests: 0\n")), "schedulingProfiles:",
		"- {type: static-usage-limit-policy, parameters: {priorityThresholds: {\"-1\": 0.8}}}\nschedulingProfiles:", 1)))
	c, b := held.Classes[0], held.Classes[1]
	if c.Failed+b.Failed != 0 {
		t.Errorf("flow control refused %d critical and %d batch requests", c.Failed, b.Failed)
	}
	if !(c.TTFT.P90 < b.TTFT.P50) {
		t.Errorf("critical TTFT p90 %.0f ms, batch p50 %.0f ms: want critical served first", c.TTFT.P90, b.TTFT.P50)
	}
}

// TestFairnessBetweenFlows: two classes in one band queue behind a pool
// held to 4 per server; the band's fairness policy picks the flow. Global
// strict (the default) serves the band oldest first, so both classes wait
// alike; round-robin and program-aware-fairness serve the light class,
// which asks for a fifth of the traffic, ahead of the heavy one.
func TestFairnessBetweenFlows(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration, w.WarmupRequests = 2*time.Second, 50
	classes, err := ParseClasses("heavy:4:0,light:1:0")
	if err != nil {
		t.Fatal(err)
	}
	run := func(policy string) (heavy, light ClassResult) {
		t.Helper()
		yaml := strings.Replace(string(flowConfig(4, "  defaultPriorityBand: {fairnessPolicyRef: "+policy+"}\n")),
			"schedulingProfiles:", "- type: "+policy+"\nschedulingProfiles:", 1)
		r, err := Run(context.Background(), RunSpec{Workload: w, Policy: ConfigPolicy(policy, "", []byte(yaml)), QPS: 400, Seed: 5, Classes: classes})
		if err != nil {
			t.Fatal(err)
		}
		return r.Classes[0], r.Classes[1]
	}
	h, l := run("global-strict-fairness-policy")
	if ratio := l.TTFT.P50 / h.TTFT.P50; ratio < 0.5 || ratio > 2 {
		t.Errorf("global strict: light TTFT p50 %.0f ms against heavy %.0f: want alike", l.TTFT.P50, h.TTFT.P50)
	}
	for _, policy := range []string{"round-robin-fairness-policy", "program-aware-fairness"} {
		h, l := run(policy)
		if !(l.TTFT.P90 < h.TTFT.P50) {
			t.Errorf("%s: light TTFT p90 %.0f ms, heavy p50 %.0f: want the light flow served first", policy, l.TTFT.P90, h.TTFT.P50)
		}
	}
}
