package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// fleetFixture is a fleet report as make bench-fleet writes it: relative
// plot links and a top-level heading.
const fleetFixture = "# Fleet simulation\n\nSome text.\n\n| check | result | detail |\n|---|---|---|\n" +
	"| a | **PASS** | x |\n| b | **PASS** | y |\n| c | **SKIP** | z |\n\n## W1\n\n![ttft](fleet-w1-ttft.png)\n\n" +
	"### What metric freshness is worth\n\n" +
	"```\n# not a heading\n```\n\nSee [the docs](https://example.com/x.png).\n"

// setup copies the fixtures into a fresh folder (plus the fleet report and
// plots when fleet is set) and returns the input folder and the report path.
func setup(t *testing.T, fleet bool) (string, string) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "docs", "benchmarks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"micro.txt", "overhead.json", "overhead-epp-cpu.pprof"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, f), b)
	}
	if fleet {
		write(t, filepath.Join(dir, "fleet.md"), []byte(fleetFixture))
		write(t, filepath.Join(dir, "fleet-w1-ttft.png"), tinyPNG(t))
		write(t, filepath.Join(dir, "fleet-w1-extra.png"), tinyPNG(t))
	}
	return dir, filepath.Join(root, "docs", "benchmarks.md")
}

// assertContains reports every wanted piece the report lacks.
func assertContains(t *testing.T, md string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func tinyPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(0, 0, color.Black)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReportFromFixtures is the smoke test of the report generator: from
// fixture inputs it must write a report with every section, the tables,
// the plots (valid PNGs) and the fleet report nested and relinked.
func TestReportFromFixtures(t *testing.T) {
	t.Parallel()
	dir, out := setup(t, true)
	md := report(t, dir, out)
	assertContains(t, md, "# OpenEPP benchmarks", "## Summary", "## Machine and versions", "## How to reproduce",
		"benchoverhead --epp bin/epp --quick", "## 1. Micro-benchmarks", "| Schedule/endpoints=100/prompt=1KiB | 14.9 µs | 7024 | 27 |",
		"| pkg/server RoundTrip/ratio=epp-random/noop | p50 latency ÷ floor p50, interleaved | 1.18× |",
		"| plugin | role | × reference |", "| queue-scorer | scorer | 3.05 | 0 |",
		"## 2. Overhead", "| endpoints | C | prompt | EPP capacity req/s", "| 10 | 16 | 1 KiB |", "repeated **2** times", "generator lag p99",
		"This is a --quick run", "![overhead plot](benchmarks/overhead-p99-1KiB.png)", "Where the EPP's CPU goes",
		"## 3. Fleet simulation", "### Fleet simulation", "#### W1", "# not a heading", "![ttft](benchmarks/fleet-w1-ttft.png)",
		"(https://example.com/x.png)", "![fleet-w1-extra.png](benchmarks/fleet-w1-extra.png)", "## Caveats",
		"- Fleet simulation: 2 checks PASS, 0 FAIL, 1 SKIP", "[what metric freshness is worth](#what-metric-freshness-is-worth) to routing")
	for _, p := range []string{"overhead-p99-1KiB.png", "overhead-per-core.png"} {
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width < 100 {
			t.Errorf("%s: not a usable PNG (%v, %dx%d)", p, err, cfg.Width, cfg.Height)
		}
	}
}

// TestReportMissingInputs checks absent results are said, not hidden.
func TestReportMissingInputs(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	out := filepath.Join(root, "benchmarks.md")
	if err := run(context.Background(), []string{"--dir", filepath.Join(root, "b"), "--out", out}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	assertContains(t, string(b), "Overhead benchmark: **missing**", "Fleet simulation: **missing**", "**Missing**: no `b/micro.txt`", "**Missing**: no `b/overhead.json`", "**Missing.** `")
}

// TestReportBadInputs checks corrupt inputs fail with a clear error.
func TestReportBadInputs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, content, want string
	}{
		{name: "overhead json", file: "overhead.json", content: "{", want: "parse overhead report"},
		{name: "overhead shape", file: "overhead.json", content: `{"schema":1}`, want: "no rows"},
		{name: "micro line", file: "micro.txt", content: "BenchmarkX-2\t10\tfast ns/op\n", want: `value "fast"`},
		{name: "profile", file: "overhead-epp-cpu.pprof", content: "not a profile", want: "go tool pprof"},
		{name: "args", want: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, out := setup(t, false)
			args := []string{"--dir", dir, "--out", out}
			if tc.file == "" {
				args = append(args, "stray")
			} else {
				write(t, filepath.Join(dir, tc.file), []byte(tc.content))
			}
			err := run(context.Background(), args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseBench(t *testing.T) {
	t.Parallel()
	in := "pkg: example.com/m/pkg/a\nBenchmarkA/x=1-8 \t 100\t 12.5 ns/op\t 3 B/op\t 1 allocs/op\t 0.9 p50-ratio\n" +
		"BenchmarkNoProcs \t 7\t 1000 ns/op\nPASS\nok  \texample.com/m/pkg/a\t1s\n"
	got, err := parseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []benchmark{
		{Pkg: "example.com/m/pkg/a", Name: "A/x=1", Procs: 8, N: 100, Metrics: []metric{{12.5, "ns/op"}, {3, "B/op"}, {1, "allocs/op"}, {0.9, "p50-ratio"}}},
		{Pkg: "example.com/m/pkg/a", Name: "NoProcs", Procs: 1, N: 7, Metrics: []metric{{1000, "ns/op"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseBench (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"BenchmarkA-2\tmany\t1 ns/op\n", "BenchmarkA-2\t1\t1 ns/op\t2\n"} {
		if _, err := parseBench(strings.NewReader(bad)); err == nil {
			t.Errorf("parseBench(%q): no error", bad)
		}
	}
}

func TestNestHeadings(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "shift", in: "# A\n## B\n", want: "### A\n#### B\n"},
		{name: "already deep", in: "### A\n#### B\n", want: "### A\n#### B\n"},
		{name: "fences and hashtags", in: "## A\n```\n# code\n```\n#tag\n", want: "### A\n```\n# code\n```\n#tag\n"},
		{name: "none", in: "text\n", want: "text\n"},
	}
	for _, tc := range tests {
		if got := nestHeadings(tc.in, 3); got != tc.want {
			t.Errorf("%s: nestHeadings = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	got := []string{thousands(0), thousands(999.6), thousands(1234567), thousands(-4321), signed(12), signed(-12), signed(0), fmtNs(950), fmtNs(14933), fmtNs(2.5e6)}
	want := []string{"0", "1,000", "1,234,567", "−4,321", "+12", "−12", "0", "950 ns", "14.9 µs", "2.50 ms"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("formatting (-want +got):\n%s", diff)
	}
}

// TestMicroCommand checks the micro-benchmark command still runs and its
// output parses into results from every package, at one iteration each.
func TestMicroCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and runs six packages' benchmarks")
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "micro.txt")
	if err := runMicro(context.Background(), "1x", filepath.Join("..", ".."), path, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bs, err := parseBench(f)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]bool{}
	for _, b := range bs {
		pkgs[shortPkg(b.Pkg)] = true
	}
	for _, p := range microPackages {
		if !pkgs[strings.TrimPrefix(p, "./")] {
			t.Errorf("no benchmark result from %s", p)
		}
	}
}

// mutateOverhead rewrites the fixture overhead report in dir through fn.
func mutateOverhead(t *testing.T, dir string, fn func(*overhead.Report)) {
	t.Helper()
	path := filepath.Join(dir, "overhead.json")
	rep, err := overhead.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fn(rep)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, b)
}

// report runs the generator on dir and returns the markdown.
func report(t *testing.T, dir, out string) string {
	t.Helper()
	var log bytes.Buffer
	if err := run(context.Background(), []string{"--dir", dir, "--out", out}, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(md)
}

// TestReportStatesFixedReferenceRate checks that a what-if run at a fixed
// reference load (benchoverhead --reference-rate) says so.
func TestReportStatesFixedReferenceRate(t *testing.T) {
	t.Parallel()
	dir, out := setup(t, false)
	mutateOverhead(t, dir, func(r *overhead.Report) { r.Settings.RefRate = 4000 })
	if md := report(t, dir, out); !strings.Contains(md, "a fixed 4000 req/s in every cell") {
		t.Error("report does not state the fixed reference rate")
	}
}

// TestReportFixedLoads checks the added latency against the offered load:
// a table row per fixed load plus the reference, sorted by rate, the
// verdict against the target, and the summary's clause in the target cell.
func TestReportFixedLoads(t *testing.T) {
	t.Parallel()
	dir, out := setup(t, false)
	mutateOverhead(t, dir, func(r *overhead.Report) {
		row := &r.Rows[0]
		row.Endpoints = targetEndpoints // make it the target cell
		slow := slices.Clone(row.EPP.References)
		for i := range slow {
			slow[i].P99us = row.Floor.References[i].P99us + 2500
		}
		fast := slices.Clone(row.EPP.References)
		for i := range fast {
			fast[i].P99us = row.Floor.References[i].P99us + 400
		}
		row.ReferenceRate = 1500
		row.Loads = []overhead.LoadPoint{{Rate: 3000, EPP: slow, Floor: row.Floor.References}, {Rate: 1000, EPP: fast, Floor: row.Floor.References}}
	})
	md := report(t, dir, out)
	table := md[strings.Index(md, "Added latency against the offered load"):]
	i1, iRef, i3 := strings.Index(table, "| 1,000 |"), strings.Index(table, "| 1,500 (reference) |"), strings.Index(table, "| 3,000 |")
	if i1 < 0 || iRef < i1 || i3 < iRef {
		t.Errorf("fixed-load rows missing or not sorted by rate:\n%s", table)
	}
	assertContains(t, md, " / +400**", " / +2,500**", "is under 1,000 µs at 1,000", "target < 1,000 µs: **met**",
		"At fixed offered loads, the added p99 was +2,500 µs at 3,000 req/s, +400 µs at 1,000 req/s")
}

// TestReportDoubtsAnIncoherentPass checks that a pass of the p99 target at
// the reference rate is not claimed when a lower fixed load missed it.
func TestReportDoubtsAnIncoherentPass(t *testing.T) {
	t.Parallel()
	dir, out := setup(t, false)
	mutateOverhead(t, dir, func(r *overhead.Report) {
		row := &r.Rows[0]
		row.Endpoints = targetEndpoints
		row.ReferenceRate = 3000
		row.EPP.References = slices.Clone(row.Floor.References) // added p99 0 at the reference rate
		slow := slices.Clone(row.Floor.References)
		for i := range slow {
			slow[i].P99us += 1800
		}
		row.Loads = []overhead.LoadPoint{{Rate: 1000, EPP: slow, Floor: row.Floor.References}}
	})
	md := report(t, dir, out)
	assertContains(t, md, "target < 1,000 µs: **not shown: under it at this rate but +1,800 µs at 1,000 req/s")
}

// TestReportConfidenceInterval checks that with enough repeats the target
// cell reports the median's confidence interval, and that a miss whose
// interval reaches below the target says so.
func TestReportConfidenceInterval(t *testing.T) {
	t.Parallel()
	dir, out := setup(t, false)
	mutateOverhead(t, dir, func(r *overhead.Report) {
		row := &r.Rows[0]
		row.Endpoints = targetEndpoints
		base, capE, capF := row.Floor.References[0], row.EPP.Capacities[0], row.Floor.Capacities[0]
		row.EPP.References, row.Floor.References, row.EPP.Capacities, row.Floor.Capacities = nil, nil, nil, nil
		for _, d := range []float64{-1690, 810, 933, 1073, 1128, 1372, 1756, 2124, 2682, 2865, 7730} {
			e := base
			e.P99us += d
			row.EPP.References = append(row.EPP.References, e)
			row.Floor.References = append(row.Floor.References, base)
			row.EPP.Capacities = append(row.EPP.Capacities, capE)
			row.Floor.Capacities = append(row.Floor.Capacities, capF)
		}
		row.Repeats, row.Loads = 11, nil
	})
	md := report(t, dir, out)
	assertContains(t, md, "p99 added latency **+1,372 µs** (+810 … +2,865 at 98.8 %; range −1,690 … +7,730)",
		"target < 1,000 µs: **missed**, though its interval reaches below the target;")
}

// TestReportCPUDecomposition checks the fixed-load table's CPU columns and
// the line fitted through the extra CPU: 20 µs per request and 0.08 cores
// of background work; and how busy each core was at the reference rate.
func TestReportCPUDecomposition(t *testing.T) {
	t.Parallel()
	dir, out := setup(t, false)
	mutateOverhead(t, dir, func(r *overhead.Report) {
		r.Idle = []overhead.Idle{{Endpoints: targetEndpoints, EPPCores: 0.1}}
		row := &r.Rows[0]
		row.Endpoints, row.ReferenceRate = targetEndpoints, 2000
		withCPU := func(runs []overhead.Run, cpu float64) []overhead.Run {
			out := slices.Clone(runs)
			for i := range out {
				out[i].Completed, out[i].CPUSeconds, out[i].WallSeconds = 1000, cpu, 0.5
			}
			return out
		}
		// Extra CPU per second = 20 µs × rate + 0.08 cores, over 1,000 requests a run.
		floor := withCPU(row.Floor.References, 0.12)
		row.Floor.References, row.EPP.References = floor, withCPU(floor, 0.12+0.020+0.08/2)
		row.Loads = []overhead.LoadPoint{{Rate: 1000, EPP: withCPU(floor, 0.12+0.020+0.08), Floor: floor},
			{Rate: 4000, EPP: withCPU(floor, 0.12+0.020+0.08/4), Floor: floor}}
	})
	md := report(t, dir, out)
	assertContains(t, md, "| 220 / 120 | 0.10 |", "| 180 / 120 | 0.12 |", "| 160 / 120 | 0.16 |",
		"handling, +20 µs of CPU per request relative to the floor's", "rate, 0.08 cores (the intercept): scraping 100 endpoints (0.10 cores measured idle)",
		"At the reference rate the EPP kept its core 36 % busy and the floor 24 %")
}

func TestLineFit(t *testing.T) {
	t.Parallel()
	if a, b, ok := lineFit([]float64{1, 2, 3}, []float64{5, 7, 9}); !ok || math.Abs(a-2) > 1e-12 || math.Abs(b-3) > 1e-12 {
		t.Errorf("lineFit = %v, %v, %v; want 2, 3", a, b, ok)
	}
	if _, _, ok := lineFit([]float64{2, 2}, []float64{1, 3}); ok {
		t.Error("lineFit fitted a vertical line")
	}
	if _, _, ok := lineFit([]float64{1}, []float64{1}); ok {
		t.Error("lineFit fitted one point")
	}
}

// TestReportCompare checks the comparison section of a --compare run: the
// second build's settings and, per cell and fixed load, the paired
// differences and the per-core ratio.
func TestReportCompare(t *testing.T) {
	t.Parallel()
	dir, out := setup(t, false)
	mutateOverhead(t, dir, func(r *overhead.Report) {
		r.Settings.Compare, r.Settings.CompareFlags = "bin/epp-b", []string{"--metrics-scrape-slots=-1"}
		r.Settings.ComparePickerConfig = r.Settings.PickerConfig
		for i := range r.Idle {
			r.Idle[i].CompareCores = 0.25
		}
		for i := range r.Rows {
			row := &r.Rows[i]
			b := overhead.Arm{Capacities: slices.Clone(row.EPP.Capacities), References: slices.Clone(row.EPP.References)}
			for j := range b.References {
				b.References[j].P99us += 120
				b.Capacities[j].CPUSeconds *= 2 // half the requests per core
			}
			b.Sustained = 1234
			row.Compare = &b
			for j := range row.Loads {
				row.Loads[j].Compare = slices.Clone(row.Loads[j].EPP)
			}
		}
	})
	md := report(t, dir, out)
	assertContains(t, md, "### Comparison: `bin/epp-b` against the EPP arm", "Its extra flags: `--metrics-scrape-slots=-1`",
		"It ran the EPP arm's EndpointPickerConfig", "| **0** | **+120** (", "| 0.500 (0.500 … 0.500) |", " / 1,234 |", " / 0.25 |")
}
