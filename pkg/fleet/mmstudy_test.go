package fleet

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSmokeMultimodalStudy runs the study at a small size and checks its
// report, its section of fleet.md and its check.
func TestSmokeMultimodalStudy(t *testing.T) {
	t.Parallel()
	yaml, err := os.ReadFile("../../config/multimodal-affinity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := MultimodalWorkload()
	w.Duration, w.WarmupRequests, w.Ladder = time.Second, 200, []float64{100, 300}
	st := &MultimodalStudy{Workload: &w, Policies: MultimodalPolicies(yaml), Seeds: []uint64{1}, Workers: 2}
	mm, err := st.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if mm.Reference != PolicyOursDefault || mm.Config != PolicyMultimodal || len(mm.Workload.Policies) != 3 ||
		mm.Workload.Policies[1].Policy != PolicyRoundRobin || mm.Workload.Seeds != 1 {
		t.Fatalf("report: %+v", mm)
	}
	for _, l := range mm.Workload.Policies {
		if len(l.Stages) != 2 || l.Stages[1].Encoder == nil || l.Stages[1].Completed == 0 || l.Stages[1].FirstError != "" {
			t.Fatalf("%s: implausible stages %+v", l.Policy, l.Stages)
		}
	}
	rep := &Report{Version: ReportVersion, Multimodal: mm}
	rep.Checks = Checks(rep)
	var b strings.Builder
	if err := Markdown(&b, rep, ""); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"### Multimodal encoder-cache affinity", "| `multimodal-affinity` | 300 |",
		"| `round-robin` | 100 |", "Over the 2 stages `multimodal-affinity` against `ours-default`: throughput ",
		"Encoder hit over the ladder: `ours-default` ", "| multimodal: the multimodal-affinity config beats ours-default on TTFT p90"} {
		if !strings.Contains(md, want) {
			t.Errorf("fleet.md lacks %q", want)
		}
	}
	// The study survives the JSON round trip (--from) with its check.
	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if c, ok := checkMultimodal(&back); !ok || c.Status == Skip {
		t.Errorf("check after the round trip: %+v", c)
	}
	t.Logf("\n%s", md[strings.Index(md, "### Multimodal"):])
}

// TestCheckMultimodal judges the study's check from made-up ladders.
func TestCheckMultimodal(t *testing.T) {
	ladder := func(name string, tok, ttft float64) PolicyLadder {
		l := PolicyLadder{Policy: name}
		for _, q := range []float64{100, 200} {
			l.Stages = append(l.Stages, StageResult{QPS: q, OutputTokensPerS: tok * q, TTFT: Percentiles{P90: ttft}})
		}
		return l
	}
	report := func(tok, ttft float64) *Report {
		return &Report{Multimodal: &MultimodalReport{Reference: PolicyOursDefault, Config: PolicyMultimodal,
			Workload: WorkloadReport{Name: "multimodal", Policies: []PolicyLadder{
				ladder(PolicyOursDefault, 10, 100), ladder(PolicyMultimodal, tok, ttft)}}}}
	}
	if _, ok := checkMultimodal(&Report{}); ok {
		t.Error("a check without the study")
	}
	for _, c := range []struct {
		tok, ttft float64
		want      string
	}{{10, 50, Pass}, {9.8, 50, Pass}, {9, 50, Fail}, {12, 100, Fail}, {12, 150, Fail}} {
		got, _ := checkMultimodal(report(c.tok, c.ttft))
		if got.Status != c.want {
			t.Errorf("throughput %g, TTFT p90 %g against 10 and 100: %s, want %s (%s)", c.tok, c.ttft, got.Status, c.want, got.Detail)
		}
	}
	r := report(10, 50)
	r.Multimodal.Config = "missing"
	if got, _ := checkMultimodal(r); got.Status != Skip {
		t.Errorf("config not run: %s", got.Status)
	}
}
