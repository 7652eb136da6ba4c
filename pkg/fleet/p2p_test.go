package fleet

import (
	"context"
	"strings"
	"testing"
	"time"
)

// queueOnly places requests by queue alone; withP2P adds a P2P source.
const queueOnly = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
`

// TestP2PPullsRecoverTheCacheLoadLedPlacementScatters: with placement
// blind to the cache, multi-turn chats land away from their history; a
// P2P source lets the new server pull that history, so more of every
// prompt is cached (pulled tokens count as cached, as vLLM counts them).
func TestP2PPullsRecoverTheCacheLoadLedPlacementScatters(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("multi-turn")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration, w.WarmupRequests = 2*time.Second, 200
	withP2P := strings.Replace(queueOnly, "- type: queue-scorer\n", "- type: queue-scorer\n- type: p2p-source-producer\n", 1)
	results := map[string]*StageResult{}
	for name, yaml := range map[string]string{"queue": queueOnly, "queue+p2p": withP2P} {
		res, err := Run(context.Background(), RunSpec{Workload: w, Policy: ConfigPolicy(name, "", []byte(yaml)), QPS: 300, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Completed == 0 || res.FirstError != "" {
			t.Fatalf("%s: implausible stage %+v", name, res)
		}
		results[name] = res
	}
	plain, p2p := results["queue"], results["queue+p2p"]
	if plain.P2P != nil || p2p.P2P == nil || p2p.P2P.PullsPerS == 0 || p2p.P2P.SourcedPct == 0 || p2p.P2P.TokensPerPull == 0 {
		t.Fatalf("P2P results: without a source %+v, with one %+v", plain.P2P, p2p.P2P)
	}
	if p2p.CacheHitPct < plain.CacheHitPct+10 {
		t.Errorf("cache hit %.1f%% → %.1f%% with pulls: want 10 points more", plain.CacheHitPct, p2p.CacheHitPct)
	}
	t.Logf("hit %.1f%% → %.1f%%, TTFT p50 %.1f → %.1f ms, pulls %+v", plain.CacheHitPct, p2p.CacheHitPct, plain.TTFT.P50, p2p.TTFT.P50, *p2p.P2P)
	var b strings.Builder
	writeP2PLines(&b, &Report{Workloads: []WorkloadReport{{Policies: []PolicyLadder{{Policy: "queue+p2p", Stages: []StageResult{*p2p}}}}}})
	if !strings.Contains(b.String(), "P2P KV pulls") {
		t.Errorf("the table has no P2P lines: %q", b.String())
	}
}
