package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/fleet"
)

// TestQuickRun is the benchmark command's smoke test: at a tiny size it
// still starts, runs and writes a well-formed report, plots and the copy
// for the benchmark report.
func TestQuickRun(t *testing.T) {
	dir := t.TempDir()
	out, docs := filepath.Join(dir, "out"), filepath.Join(dir, "docs")
	args := []string{"--quick", "--seeds", "1", "--workers", "2", "--out", out, "--docs", docs,
		"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml",
		"--workloads", "shared-prefix,multi-turn", "--policies", "round-robin,upstream-default,ours-default,llm-d-baseline",
		"--freshness", "100ms", "--freshness-seeds", "2"}
	if err := run(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "fleet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Version   int
		Workloads []struct {
			Name     string
			Policies []struct {
				Policy string
				Stages []map[string]any
			}
		}
		Checks    []struct{ ID, Status string }
		Freshness struct {
			Rows []struct {
				Workload        string
				IntervalMs      float64
				ThroughputRatio float64
				Stages          []map[string]any
			}
		}
		Replicas struct {
			Workloads []struct {
				Workload string
				Arms     []struct{ Name string }
			}
		}
		Multimodal struct {
			Workload struct {
				Policies []struct {
					Policy string
					Stages []struct{ Encoder *struct{ HitPct float64 } }
				}
			}
		}
		Disagg struct {
			Arms      []struct{ Name string }
			Workloads []struct {
				Name     string
				Policies []struct {
					Policy string
					Stages []struct {
						Completed int
						Disagg    *struct{ DisaggregatedPct float64 }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("fleet.json: %v", err)
	}
	if rep.Version != 1 || len(rep.Workloads) != 2 || len(rep.Workloads[0].Policies) != 4 || len(rep.Checks) == 0 {
		t.Errorf("fleet.json: version %d, %d workloads, %d checks", rep.Version, len(rep.Workloads), len(rep.Checks))
	}
	if fr := rep.Freshness.Rows; len(fr) != 2 || fr[0].Workload != "shared-prefix" || fr[0].IntervalMs != 100 ||
		fr[0].ThroughputRatio <= 0 || len(fr[0].Stages) == 0 {
		t.Errorf("fleet.json freshness rows: %+v", fr)
	}
	// The replica study runs on both workloads.
	if r := rep.Replicas.Workloads; len(r) != 2 || r[0].Workload != "shared-prefix" || r[1].Workload != "multi-turn" || len(r[1].Arms) < 4 {
		t.Errorf("fleet.json replica study: %+v", r)
	}
	// The multimodal study runs its three policies up the quick ladder.
	if mm := rep.Multimodal.Workload.Policies; len(mm) != 3 || mm[2].Policy != "multimodal-affinity" || len(mm[2].Stages) != 3 ||
		mm[2].Stages[0].Encoder == nil {
		t.Errorf("fleet.json multimodal study: %+v", mm)
	}
	// The P/D study runs on its own workload and the matrix's shared-prefix.
	if d := rep.Disagg; len(d.Arms) < 2 || len(d.Workloads) != 2 || d.Workloads[0].Name != "long-prompt" ||
		d.Workloads[1].Name != "shared-prefix" || len(d.Workloads[0].Policies) != len(d.Arms) {
		t.Errorf("fleet.json P/D study: %+v", d)
	} else if s := d.Workloads[0].Policies[1].Stages[0]; s.Completed == 0 || s.Disagg == nil || s.Disagg.DisaggregatedPct == 0 {
		t.Errorf("fleet.json P/D study: %s on long-prompt: %+v", d.Workloads[0].Policies[1].Policy, s)
	}
	for _, f := range []string{
		filepath.Join(out, "fleet.md"), filepath.Join(docs, "fleet.md"),
		filepath.Join(out, "fleet-shared-prefix-ttft.png"), filepath.Join(docs, "fleet-shared-prefix-throughput.png"),
	} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "fleet.md"))
	if !strings.Contains(string(md), "fleet-shared-prefix-ttft.png") {
		t.Error("fleet.md does not link its plots")
	}
	if !strings.Contains(string(md), "### Reference: OpenEPP's default against llm-d's optimized baseline") ||
		!strings.Contains(string(md), "multi-turn: ours-default does not lose to llm-d-baseline") {
		t.Error("fleet.md has no comparison with llm-d's optimized baseline")
	}
	if !strings.Contains(string(md), "### What metric freshness is worth") || !strings.Contains(string(md), "| shared-prefix | 100 ms |") {
		t.Error("fleet.md has no freshness table")
	}
	if !strings.Contains(string(md), "### Priorities: shedding or flow control") || !strings.Contains(string(md), "| flow-96-hold |") ||
		!strings.Contains(string(md), "critical ok %") {
		t.Error("fleet.md has no priority table")
	}
	if !strings.Contains(string(md), "### Fairness between flows in one band") || !strings.Contains(string(md), "| program-aware |") ||
		!strings.Contains(string(md), "light ok %") {
		t.Error("fleet.md has no fairness table")
	}
	if !strings.Contains(string(md), "### Ordering within a band") || !strings.Contains(string(md), "| slo-deadline |") ||
		!strings.Contains(string(md), "interactive ≤ objective %") {
		t.Error("fleet.md has no ordering table")
	}
	if !strings.Contains(string(md), "### Prefill/decode disaggregation at equal server count") || !strings.Contains(string(md), "**long-prompt (PD)**") ||
		!strings.Contains(string(md), "| `pd-2p` |") {
		t.Error("fleet.md has no P/D study")
	}
	if !strings.Contains(string(md), "### Multimodal encoder-cache affinity") || !strings.Contains(string(md), "| `multimodal-affinity` | 500 |") ||
		!strings.Contains(string(md), "| multimodal: the multimodal-affinity config beats ours-default on TTFT p90") {
		t.Error("fleet.md has no multimodal study")
	}
	if !strings.Contains(string(md), "### Active-active EPP replicas and replica sync") || !strings.Contains(string(md), "| `3-replicas-sync` |") ||
		!strings.Contains(string(md), "**multi-turn**") || !strings.Contains(string(md), "| `3-replicas-sync-dispatches` |") ||
		!strings.Contains(string(md), "| `3-replicas-precise` |") || !strings.Contains(string(md), "| `3-replicas-precise-sync` |") {
		t.Error("fleet.md has no replica study")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--best", "no/such/file.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "no/such/file.yaml"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "no/such/file.yaml"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--multimodal", "no/such/file.yaml"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--workloads", "W0"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--policies", "fastest"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--seeds", "0"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--freshness", "50ms"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--freshness", "500us"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--freshness", "soon"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--freshness-seeds", "0"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--workloads", "shared-prefix", "--priorities", "a:1"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--workloads", "shared-prefix", "--fairness", "a:1:x"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--workloads", "shared-prefix", "--disagg", "W0"},
		{"--best", "../../config/openepp-recommended.yaml", "--agents", "../../config/agents.yaml", "--llmd", "../../config/llm-d-optimized-baseline.yaml", "--precise", "../../config/precise-prefix-cache.yaml", "--multimodal", "../../config/multimodal-affinity.yaml", "--workloads", "shared-prefix", "--rerun", "priorities"},
		{"--from", "fleet.json", "--from-commit", "0123abc"},
	} {
		if err := run(context.Background(), append(args, "--out", t.TempDir(), "--docs", "")); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestNoMultimodal: an empty --multimodal runs no multimodal study.
func TestNoMultimodal(t *testing.T) {
	o := options{multimodal: ""}
	if st, err := o.multimodalStudy(nil); st != nil || err != nil {
		t.Errorf("--multimodal \"\": study %v, error %v", st, err)
	}
	o = options{multimodal: "../../config/multimodal-affinity.yaml", quick: true}
	st, err := o.multimodalStudy(&fleet.Matrix{Seeds: []uint64{1}})
	if err != nil || st == nil || len(st.Policies) != 3 || st.Workload == nil || len(st.Workload.Ladder) != 3 {
		t.Errorf("--multimodal --quick: study %+v, error %v", st, err)
	}
}

// TestRerun: --rerun measures only the named study again on top of the
// --from report, keeps the rest, and records which commit measured what;
// it refuses what would mix runs silently.
func TestRerun(t *testing.T) {
	dir := t.TempDir()
	from := filepath.Join(dir, "fleet.json")
	kept := &fleet.PriorityReport{Classes: []fleet.Class{{Name: "heavy", Share: 1}}, WallSeconds: 7}
	js, err := (&fleet.Report{Version: fleet.ReportVersion, Seeds: []uint64{1, 2, 3}, Fairness: kept}).JSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(from, js, 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := &fleet.PriorityReport{Classes: []fleet.Class{{Name: "critical", Share: 1, Priority: 3}}, WallSeconds: 9}
	studies := []study{
		{"priorities", func(_ context.Context, rep *fleet.Report) error { rep.Priorities = fresh; return nil }},
		{"fairness", func(context.Context, *fleet.Report) error { t.Error("fairness re-run"); return nil }},
	}
	m := &fleet.Matrix{Seeds: []uint64{1, 2, 3}}
	out := filepath.Join(dir, "out")
	o := options{from: from, rerun: "priorities", fromCommit: "0123abc", out: out, workers: 2}
	if err := o.rerunStudies(context.Background(), m, studies); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "fleet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep fleet.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Commit != "0123abc" || len(rep.Reruns) != 1 || rep.Reruns[0].Study != "priorities" || rep.Reruns[0].Commit == "" ||
		rep.Reruns[0].Workers != 2 {
		t.Errorf("provenance: commit %q, re-runs %+v", rep.Commit, rep.Reruns)
	}
	if rep.Priorities == nil || rep.Priorities.WallSeconds != 9 || rep.Fairness == nil || rep.Fairness.WallSeconds != 7 {
		t.Errorf("priorities %+v, fairness %+v: want the first re-run, the second kept", rep.Priorities, rep.Fairness)
	}
	md, _ := os.ReadFile(filepath.Join(out, "fleet.md"))
	if want := "The priority study was re-run at commit " + rep.Reruns[0].Commit; !strings.Contains(string(md), want) ||
		!strings.Contains(string(md), "The rest is from commit 0123abc.") {
		t.Errorf("fleet.md does not say which commit measured what:\n%s", md)
	}
	for name, bad := range map[string]options{
		"unknown study":   {from: from, rerun: "nope", out: out},
		"no --from":       {rerun: "priorities", out: out},
		"--quick":         {from: from, rerun: "priorities", quick: true, out: out},
		"other commit":    {from: filepath.Join(out, "fleet.json"), rerun: "priorities", fromCommit: "fedcba9", out: out},
		"no such report":  {from: filepath.Join(dir, "none.json"), rerun: "priorities", out: out},
		"seeds differing": {from: from, rerun: "priorities", out: out, seeds: 1},
	} {
		mm := m
		if bad.seeds == 1 {
			mm = &fleet.Matrix{Seeds: []uint64{1}}
		}
		if err := bad.rerunStudies(context.Background(), mm, studies); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
