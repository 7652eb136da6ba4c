package fleet

import (
	"context"
	"os"
	"testing"
)

// TestPreciseConfigSeesTheServersCaches runs the shipped precise config in
// the simulation beside the default one: its producers get every server's
// KV events and the requests' tokens in process, so it finds cache hits as
// the approximate index does with one EPP replica, and keeps finding them
// with three replicas that share nothing, where each approximate index
// sees only a third of the routing.
func TestPreciseConfigSeesTheServersCaches(t *testing.T) {
	t.Parallel()
	read := func(name string) []byte {
		b, err := os.ReadFile("../../config/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	precise, def := ConfigPolicy("precise", "", read("precise-prefix-cache.yaml")), ConfigPolicy("default", "", read("default.yaml"))
	w, err := WorkloadByName("multi-turn")
	if err != nil {
		t.Fatal(err)
	}
	w = tiny(w)
	w.Duration *= 6
	hit := func(p Policy, replicas int) float64 {
		res, err := Run(context.Background(), RunSpec{Workload: w, Policy: p, QPS: w.Ladder[0], Seed: 1,
			Replication: Replication{Replicas: replicas}})
		if err != nil {
			t.Fatal(err)
		}
		return res.CacheHitPct
	}
	for _, replicas := range []int{1, 3} {
		p, d := hit(precise, replicas), hit(def, replicas)
		t.Logf("%d replicas: cache hit %.1f %% precise, %.1f %% default", replicas, p, d)
		if p < d-5 || p < 50 {
			t.Errorf("%d replicas: precise config hit %.1f %% of prompt tokens, default %.1f %%", replicas, p, d)
		}
	}
}
