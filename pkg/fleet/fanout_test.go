package fleet

import (
	"context"
	"testing"
	"time"
)

// burstConfig is the default profile plus llm-d's burst placement.
const burstConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: burst-prefix-cache-producer
  parameters:
    windowDurationMs: 20
- type: prefix-cache-scorer
  parameters:
    prefixMatchInfoProducerName: burst-prefix-cache-producer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: prefix-cache-scorer
    weight: 3
`

func TestFanOutWorkload(t *testing.T) {
	w := studyWorkload(t, "FO")
	src, err := newSource(w.Traffic, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(1)
	var prev *prompt
	for i := range 3 * w.Traffic.Samples {
		p, err := src.next(rng)
		if err != nil {
			t.Fatal(err)
		}
		if same := p == prev; same != (i%w.Traffic.Samples != 0) {
			t.Fatalf("request %d: same prompt as the one before %v, want a new prompt every %d", i, same, w.Traffic.Samples)
		}
		prev = p
	}
}

// TestBatchingWindowsInVirtualTime runs the burst producer in the fleet:
// each burst's samples are held for the window and placed together, so
// their prompt is computed once (cache hits near 7 of 8), where
// round-robin computes it everywhere; every request completes.
func TestBatchingWindowsInVirtualTime(t *testing.T) {
	t.Parallel()
	w := FanOutWorkload()
	w.Duration, w.WarmupRequests = 2*time.Second, 80
	rr, err := Builtin(PolicyRoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	hit := map[string]float64{}
	for _, p := range []Policy{ConfigPolicy("burst", "", []byte(burstConfig)), rr} {
		res, err := Run(context.Background(), RunSpec{Workload: w, Policy: p, QPS: 80, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Completed != res.Requests || res.FirstError != "" {
			t.Fatalf("%s: %d of %d completed (%s)", p.Name, res.Completed, res.Requests, res.FirstError)
		}
		hit[p.Name] = res.CacheHitPct
		if p.Name == "burst" && res.TTFT.P50 < 20 {
			t.Errorf("burst: TTFT p50 %.1f ms, under the 20 ms window every sample waits", res.TTFT.P50)
		}
	}
	if hit["burst"] < hit[PolicyRoundRobin]+30 {
		t.Errorf("cache hit with burst placement %.1f %%, round-robin %.1f %%: want 30 points more", hit["burst"], hit[PolicyRoundRobin])
	}
}
