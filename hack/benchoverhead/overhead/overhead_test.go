package overhead

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func goodReport() Report {
	run := Run{Completed: 100, CPUSeconds: 0.01, P50us: 300, P99us: 900, WallSeconds: 1}
	arm := Arm{Capacities: []Run{run, run}, References: []Run{run, run}}
	floor := Arm{Capacities: []Run{run, run}, References: []Run{run, run}}
	return Report{Schema: SchemaVersion, Settings: Settings{Repeats: 2},
		Rows: []Row{{Endpoints: 10, Concurrency: 1, PromptBytes: 1024, ReferenceRate: 50, EPP: arm, Floor: floor}}}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Report)
		want   string // "" for valid
	}{
		{name: "valid", mutate: func(*Report) {}},
		{name: "schema", mutate: func(r *Report) { r.Schema = 99 }, want: "schema 99"},
		{name: "no rows", mutate: func(r *Report) { r.Rows = nil }, want: "no rows"},
		{name: "zero cell", mutate: func(r *Report) { r.Rows[0].Concurrency = 0 }, want: "must be >= 1"},
		{name: "no rate", mutate: func(r *Report) { r.Rows[0].ReferenceRate = 0 }, want: "reference rate"},
		{name: "negative rate", mutate: func(r *Report) { r.Rows[0].ReferenceRate = -1 }, want: "reference rate"},
		{name: "collapsed epp", mutate: func(r *Report) {
			row := &r.Rows[0]
			row.ReferenceRate, row.EPP.References, row.Floor.References = 0, nil, nil
			for i := range row.EPP.Capacities {
				row.EPP.Capacities[i].Completed = 0
			}
		}},
		{name: "unmeasured", mutate: func(r *Report) { r.Rows[0].Floor.Capacities[1] = Run{} }, want: "rows[0]: an arm was not measured 2 times"},
		{name: "repeat missing", mutate: func(r *Report) { r.Rows[0].Floor.Capacities = r.Rows[0].Floor.Capacities[:1] }, want: "not measured 2 times"},
		{name: "reference missing", mutate: func(r *Report) { r.Rows[0].EPP.References = nil }, want: "0 reference runs, want 2"},
		{name: "no repeats", mutate: func(r *Report) { r.Settings.Repeats = 0 }, want: "repeats 0"},
		{name: "fixed load", mutate: func(r *Report) {
			r.Rows[0].Loads = []LoadPoint{{Rate: 1000, EPP: r.Rows[0].EPP.References, Floor: r.Rows[0].Floor.References}}
		}},
		{name: "fixed load short", mutate: func(r *Report) {
			r.Rows[0].Loads = []LoadPoint{{Rate: 1000, EPP: r.Rows[0].EPP.References[:1], Floor: r.Rows[0].Floor.References}}
		}, want: "load 1000 req/s: 1 and 2 runs, want 2"},
		{name: "fixed load no rate", mutate: func(r *Report) {
			r.Rows[0].Loads = []LoadPoint{{EPP: r.Rows[0].EPP.References, Floor: r.Rows[0].Floor.References}}
		}, want: "at a rate > 0"},
		{name: "comparison", mutate: func(r *Report) { compared(r) }},
		{name: "comparison without its arm", mutate: func(r *Report) { compared(r); r.Rows[0].Compare = nil },
			want: "compared arm must be present exactly when"},
		{name: "compared arm without settings", mutate: func(r *Report) { compared(r); r.Settings.Compare = "" },
			want: "compared arm must be present exactly when"},
		{name: "compared arm short", mutate: func(r *Report) { compared(r); r.Rows[0].Compare.References = nil },
			want: "0 reference runs, want 2"},
		{name: "compared load missing", mutate: func(r *Report) { compared(r); r.Rows[0].Loads[0].Compare = nil },
			want: "0 runs of the compared build, want 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := goodReport()
			tc.mutate(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// compared makes r a comparison run whose second build is 100 µs slower at
// p99 and does 10 % more requests per core.
func compared(r *Report) {
	r.Settings.Compare = "bin/epp-b"
	row := &r.Rows[0]
	b := Arm{Capacities: slices.Clone(row.EPP.Capacities), References: slices.Clone(row.EPP.References)}
	for i := range b.References {
		b.References[i].P99us += 100
		b.Capacities[i].CPUSeconds /= 1.1
	}
	row.Compare = &b
	row.Loads = []LoadPoint{{Rate: 1000, EPP: row.EPP.References, Floor: row.Floor.References, Compare: b.References}}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	r := goodReport()
	if d := r.Rows[0].CompareDiff(func(x Run) float64 { return x.P99us }); d.N != 0 {
		t.Errorf("difference without a comparison: %+v", d)
	}
	compared(&r)
	row := r.Rows[0]
	if d := row.CompareDiff(func(x Run) float64 { return x.P99us }); d.N != 2 || d.Median != 100 {
		t.Errorf("p99 difference %+v, want +100 over 2 repeats", d)
	}
	if d := row.Loads[0].CompareDiff(func(x Run) float64 { return x.P99us }); d.N != 2 || d.Median != 100 {
		t.Errorf("fixed-load p99 difference %+v, want +100", d)
	}
	if q := row.CompareRatio(Run.PerCore); q.N != 2 || math.Abs(q.Median-1.1) > 1e-9 {
		t.Errorf("per-core ratio %+v, want 1.1", q)
	}
}

func TestDerived(t *testing.T) {
	t.Parallel()
	r := goodReport().Rows[0]
	r.EPP.References[0].P99us, r.EPP.References[1].P99us = 1400, 2900
	r.Floor.References[1].P99us = 400
	if diff := cmp.Diff(Stat{N: 2, Median: 1500, Min: 500, Max: 2500}, r.AddedP99()); diff != "" {
		t.Errorf("AddedP99 (-want +got):\n%s", diff)
	}
	r.Floor.References[0].Completed = 0 // an unmeasured repeat drops out of the pairs
	if diff := cmp.Diff(Stat{N: 1, Median: 2500, Min: 2500, Max: 2500}, r.AddedP99()); diff != "" {
		t.Errorf("AddedP99 with one pair (-want +got):\n%s", diff)
	}
	lp := LoadPoint{Rate: 500, EPP: r.EPP.References, Floor: r.Floor.References}
	if diff := cmp.Diff(Stat{N: 1, Median: 2500, Min: 2500, Max: 2500}, lp.Added(func(x Run) float64 { return x.P99us })); diff != "" {
		t.Errorf("LoadPoint.Added (-want +got):\n%s", diff)
	}
	run := r.EPP.Capacities[0]
	if got := run.CPUPer1k(); got != 0.1 {
		t.Errorf("CPUPer1k = %v, want 0.1", got)
	}
	if got := run.PerCore(); got != 10000 {
		t.Errorf("PerCore = %v, want 10000", got)
	}
	if got := (Run{}).PerCore() + (Run{}).CPUPer1k(); got != 0 {
		t.Errorf("empty run derived values = %v, want 0 (no division by zero)", got)
	}
	if _, ok := r.EPP.AtSustained(); ok {
		t.Error("AtSustained found a step in an arm without a ladder")
	}
}

func TestSummarise(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []float64
		want Stat
	}{
		{name: "one", in: []float64{7}, want: Stat{N: 1, Median: 7, Min: 7, Max: 7}},
		{name: "odd", in: []float64{9, -1, 3}, want: Stat{N: 3, Median: 3, Min: -1, Max: 9}},
		{name: "even", in: []float64{4, 1, 2, 10}, want: Stat{N: 4, Median: 3, Min: 1, Max: 10}},
		// Six samples: only [min, max] reaches 95 % (1 - 2/64).
		{name: "six", in: []float64{6, 5, 4, 3, 2, 1}, want: Stat{N: 6, Median: 3.5, Min: 1, Max: 6, Lo: 1, Hi: 6, Conf: 1 - 2.0/64}},
		// Eleven: [x(2), x(10)] covers 1 - 2·12/2048; [x(3), x(9)] only 93.5 %.
		{name: "eleven", in: []float64{-1690, 810, 933, 1073, 1128, 1372, 1756, 2124, 2682, 2865, 7730},
			want: Stat{N: 11, Median: 1372, Min: -1690, Max: 7730, Lo: 810, Hi: 2865, Conf: 1 - 2*12.0/2048}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, Summarise(tc.in), cmpopts.EquateApprox(0, 1e-12)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if s := Summarise(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Errorf("Summarise(nil) = %+v, want N 0 and NaN", s)
	}
}

// TestMedianCICoverage checks medianCI's coverage against a simulation:
// intervals from samples of a skewed distribution hold its true median at
// least as often as claimed.
func TestMedianCICoverage(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{6, 11, 15, 30} {
		const trials = 4000
		hits := 0
		var conf float64
		for range trials {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = rng.ExpFloat64() // median ln 2
			}
			s := Summarise(xs)
			conf = s.Conf
			if s.Lo <= math.Ln2 && math.Ln2 <= s.Hi {
				hits++
			}
		}
		if conf < ciLevel {
			t.Errorf("n=%d: coverage %v below %v", n, conf, ciLevel)
		}
		if got := float64(hits) / trials; got < conf-0.015 {
			t.Errorf("n=%d: interval held the median in %.3f of trials, claimed %.3f", n, got, conf)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{"schema":2,"settings":{"repeats":1}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.json"): "read overhead report",
		bad:                                "parse overhead report",
		empty:                              "no rows",
	} {
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) = %v, want it to contain %q", filepath.Base(path), err, want)
		}
	}
}
