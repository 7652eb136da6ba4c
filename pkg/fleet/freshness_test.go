package fleet

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

// TestCompareFreshnessPairsSeeds checks the arithmetic on made-up results:
// two stages of three seeds each.
func TestCompareFreshnessPairsSeeds(t *testing.T) {
	t.Parallel()
	stage := func(tok, ttft float64) *StageResult {
		return &StageResult{OutputTokensPerS: tok, TTFT: Percentiles{P90: ttft}}
	}
	w := Workload{Name: "w", Ladder: []float64{10, 20}}
	base := []*StageResult{stage(100, 10), stage(100, 10), stage(100, 10), stage(200, 100), stage(200, 100), stage(0, 0)}
	other := []*StageResult{stage(100, 10), stage(110, 12), stage(90, 9), stage(100, 100), stage(200, 300), stage(50, 0)}
	row := compareFreshness(w, 200, base, other, 3)
	if len(row.Stages) != 2 || row.Workload != "w" || row.IntervalMs != 200 {
		t.Fatalf("row = %+v", row)
	}
	s0, s1 := row.Stages[0], row.Stages[1]
	if s0.ThroughputPct != 0 || s0.TTFTP90Pct != 0 || s0.SeedsLessThroughput != 1 || s0.SeedsSlowerTTFTP90 != 1 {
		t.Errorf("stage 10: %+v (want mean 0 %%, median 0 %%, 1 seed worse each)", s0)
	}
	// The third seed's base throughput is zero: its change is undefined and
	// left out; its TTFT stayed at zero, no change. TTFT changes 0, +200, 0.
	if s1.ThroughputPct != -25 || s1.TTFTP90Pct != 0 || s1.SeedsLessThroughput != 1 || s1.SeedsSlowerTTFTP90 != 1 {
		t.Errorf("stage 20: %+v (want mean -25 %%, median 0 %%)", s1)
	}
	// Seed-averaged ratios: stage 10 100/100 and 10.33/10; stage 20
	// 116.7/133.3 and 133.3/66.7.
	wantT := math.Sqrt(1 * (350.0 / 3) / (400.0 / 3))
	wantL := math.Sqrt((31.0 / 30) * 2)
	if math.Abs(row.ThroughputRatio-wantT) > 1e-3 || math.Abs(row.TTFTP90Ratio-wantL) > 1e-3 {
		t.Errorf("ratios %v / %v, want %v / %v", row.ThroughputRatio, row.TTFTP90Ratio, wantT, wantL)
	}
}

func TestFreshnessRejectsBadStudies(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("shared-prefix")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Builtin(PolicyRoundRobin)
	for name, f := range map[string]*Freshness{
		"no workloads": {Policy: p, Intervals: []time.Duration{time.Second}},
		"no intervals": {Policy: p, Workloads: []Workload{w}},
		"base again":   {Policy: p, Workloads: []Workload{w}, Intervals: []time.Duration{DefaultScrapeInterval}},
		"twice":        {Policy: p, Workloads: []Workload{w}, Intervals: []time.Duration{time.Second, time.Second}},
		"no policy":    {Workloads: []Workload{w}, Intervals: []time.Duration{time.Second}},
	} {
		if _, err := f.Run(context.Background()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestFreshnessStudyRuns runs a tiny study end to end and renders it.
func TestFreshnessStudyRuns(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Builtin(PolicyLeastQueue)
	f := &Freshness{Workloads: []Workload{Quick(w)}, Policy: p, Intervals: []time.Duration{200 * time.Millisecond},
		Seeds: []uint64{1, 2}, Workers: 2}
	rep, err := f.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 || len(rep.Rows[0].Stages) != len(Quick(w).Ladder) || rep.BaseMs != 50 || rep.Policy != PolicyLeastQueue {
		t.Fatalf("report = %+v", rep)
	}
	var b strings.Builder
	writeFreshness(&b, rep)
	if !strings.Contains(b.String(), "| no-sharing | 200 ms |") {
		t.Errorf("markdown:\n%s", b.String())
	}
}

func TestParseIntervals(t *testing.T) {
	t.Parallel()
	got, err := ParseIntervals(" 25ms, 100ms,,200ms ", 50*time.Millisecond)
	if err != nil || len(got) != 3 || got[0] != 25*time.Millisecond || got[2] != 200*time.Millisecond {
		t.Errorf("ParseIntervals = %v, %v", got, err)
	}
	for _, bad := range []string{"", "50ms", "soon", "500us", "2m", "100ms,-1s"} {
		if _, err := ParseIntervals(bad, 50*time.Millisecond); err == nil {
			t.Errorf("ParseIntervals(%q) accepted", bad)
		}
	}
}
