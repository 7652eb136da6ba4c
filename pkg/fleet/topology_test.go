package fleet

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestTopologyPairsPrefillOnTheDecodeNode: with servers two to a node
// (each node holding a prefill and a decode server) and pulls between
// nodes 40 times dearer, config/pd-topology.yaml pairs each prefill with
// its decode server's node, so the hand-off from prefill to first token is
// shorter than config/pd.yaml's, which pairs by load alone.
func TestTopologyPairsPrefillOnTheDecodeNode(t *testing.T) {
	t.Parallel()
	w := LongPromptWorkload()
	w.Duration, w.WarmupRequests = 5*time.Second, 8
	handoff := map[string]float64{}
	for _, name := range []string{"pd", "pd-topology"} {
		yaml, err := os.ReadFile("../../config/" + name + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), RunSpec{Workload: w, Policy: ConfigPolicy(name, "", yaml), QPS: 4, Seed: 1,
			PrefillServers: 4, Topology: Topology{ServersPerNode: 2, CrossNodeCost: 40}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Disagg == nil || res.Disagg.DisaggregatedPct < 90 || res.Completed == 0 {
			t.Fatalf("%s: implausible P/D stage %+v", name, res.Disagg)
		}
		handoff[name] = res.Disagg.HandoffMs.P50
	}
	if handoff["pd-topology"] >= handoff["pd"]/2 {
		t.Errorf("hand-off p50 %.0f ms with topology pairing, %.0f ms without: want under half", handoff["pd-topology"], handoff["pd"])
	}
	if (Topology{ServersPerNode: 3, CrossNodeCost: 0.5}).validate(8) == nil || (Topology{ServersPerNode: 9}).validate(8) == nil {
		t.Error("a bad topology validated")
	}
}
