package fleet

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tiny shrinks w so that a run takes a fraction of a second: one low stage
// of half a second after a short warm-up, on the workload's own fleet.
func tiny(w Workload) Workload {
	w.Duration = 500 * time.Millisecond
	w.WarmupRequests = 10
	w.Ladder = []float64{w.Ladder[0]}
	w.MinSeeds = 0
	return w
}

func recommended(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../../config/openepp-recommended.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSmokeEveryWorkload runs every standard policy on every built-in
// workload at a tiny size and checks that the report is well formed: the
// benchmark command's code path, minus the size.
func TestSmokeEveryWorkload(t *testing.T) {
	t.Parallel()
	var ws []Workload
	for _, w := range Workloads() {
		ws = append(ws, tiny(w))
	}
	m := &Matrix{Workloads: ws, Policies: StandardPolicies(recommended(t)), Seeds: []uint64{1, 2}, Workers: 2}
	rep, err := m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range rep.Workloads {
		if len(w.Policies) != len(m.Policies) {
			t.Errorf("%s: %d policies reported, want %d", w.Name, len(w.Policies), len(m.Policies))
		}
		for _, l := range w.Policies {
			s := l.Stages[0]
			if s.Requests == 0 || s.Completed == 0 || s.FirstError != "" || s.OutputTokensPerS <= 0 || s.TTFT.P50 <= 0 {
				t.Errorf("%s/%s: implausible stage %+v", w.Name, l.Policy, s)
			}
			if len(l.PerSeedThroughput) != 1 || len(l.PerSeedThroughput[0]) != 2 {
				t.Errorf("%s/%s: per-seed throughput %v, want one stage of two seeds", w.Name, l.Policy, l.PerSeedThroughput)
			}
		}
	}
	checkJSON(t, rep)
}

// checkJSON decodes the report's JSON generically and checks the fields a
// consumer (the report assembly, plots) relies on.
func checkJSON(t *testing.T, rep *Report) {
	t.Helper()
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	for _, k := range []string{"version", "seeds", "scrapeIntervalMs", "workloads", "checks", "policies", "wallSeconds"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	w := doc["workloads"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "id", "profile", "servers", "kvTokensPerServer", "slo", "policies"} {
		if _, ok := w[k]; !ok {
			t.Errorf("workload lacks %q", k)
		}
	}
	stage := w["policies"].([]any)[0].(map[string]any)["stages"].([]any)[0].(map[string]any)
	want := []string{"qps", "requests", "completed", "successPct", "outputTokensPerS", "windowOutputTokensPerS",
		"ttftMs", "e2eMs", "tpotMs", "cacheHitPct", "loadCV", "goodputReqPerS", "goodputPct", "windowCompletionsPerS"}
	for _, k := range want {
		if _, ok := stage[k]; !ok {
			t.Errorf("stage lacks %q", k)
		}
	}
	ttft := stage["ttftMs"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "mean"} {
		if _, ok := ttft[k]; !ok {
			t.Errorf("ttftMs lacks %q", k)
		}
	}
}

func TestDeterministicForSeed(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("shared-prefix")
	if err != nil {
		t.Fatal(err)
	}
	w = tiny(w)
	for _, p := range StandardPolicies(recommended(t)) {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			run := func(seed uint64) StageResult {
				r, err := Run(context.Background(), RunSpec{Workload: w, Policy: p, QPS: 100, Seed: seed})
				if err != nil {
					t.Fatal(err)
				}
				r.WallSeconds = 0
				return *r
			}
			a, b := run(7), run(7)
			if diff := cmp.Diff(a, b); diff != "" {
				t.Fatalf("same seed, different results (-first +second):\n%s", diff)
			}
			if cmp.Equal(a, run(8)) {
				t.Error("seeds 7 and 8 gave identical results")
			}
		})
	}
}

func TestMarkdownAndTable(t *testing.T) {
	t.Parallel()
	w, _ := WorkloadByName("W1")
	pols, err := SelectPolicies(StandardPolicies(recommended(t)), []string{PolicyRoundRobin, PolicyUpstreamDefault})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := (&Matrix{Workloads: []Workload{tiny(w)}, Policies: pols}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var md, table stringsBuilder
	if err := Markdown(&md, rep, "img/"); err != nil {
		t.Fatal(err)
	}
	if err := WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Routing quality", "img/" + PlotName("shared-prefix", "ttft"), "| `round-robin` |", "Credibility"} {
		if !md.contains(want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if !table.contains("upstream-default") || !table.contains("[SKIP] no-sharing control") {
		t.Errorf("table lacks policies or checks:\n%s", table.String())
	}
	if ids := checkIDs(rep.Checks); !slices.Contains(ids, "cache-aware-vs-rr") {
		t.Errorf("checks %v lack cache-aware-vs-rr", ids)
	}
}

func checkIDs(cs []Check) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// TestSmokeReplicaStudy runs the replica study at a tiny size on two
// workloads and checks its report and section: every arm at each compared
// stage of each workload.
func TestSmokeReplicaStudy(t *testing.T) {
	t.Parallel()
	var ws []Workload
	for _, n := range []string{"shared-prefix", "multi-turn"} {
		w, err := WorkloadByName(n)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, Quick(w))
	}
	st := &ReplicaStudy{Workloads: ws, Policy: ConfigPolicy(PolicyOursBest, "", recommended(t)), Workers: 2}
	rep, err := st.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Workloads) != len(ws) {
		t.Fatalf("report = %+v", rep)
	}
	for _, wr := range rep.Workloads {
		if len(wr.QPS) == 0 || len(wr.Arms) != len(ReplicaArms()) || wr.Arms[2].Replicas != 3 || wr.Arms[2].Dispatches ||
			!wr.Arms[3].Sync || !wr.Arms[3].Dispatches {
			t.Fatalf("%s: report = %+v", wr.Workload, wr)
		}
		for _, a := range wr.Arms {
			if len(a.Stages) != len(wr.QPS) || a.Stages[0].Completed == 0 || a.Stages[0].QPS != wr.QPS[0] {
				t.Errorf("%s %s: stages %+v", wr.Workload, a.Name, a.Stages)
			}
		}
	}
	var md stringsBuilder
	if err := Markdown(&md, &Report{Replicas: rep}, ""); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Active-active EPP replicas and replica sync", "**shared-prefix**", "**multi-turn**",
		"| `3-replicas-sync-250ms` |", "| `3-replicas-sync-dispatches` |", "winning back",
		"sharing the dispatches too, against `3-replicas-sync`"} {
		if !md.contains(want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}
