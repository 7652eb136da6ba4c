package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// microPackages and microPattern select the micro-benchmarks of the
// report: scheduling, each built-in plugin's cost, request parsing, metrics
// scraping, prefix matching and the ext_proc round trip.
var microPackages = []string{"./pkg/plugins", "./pkg/request", "./pkg/metrics", "./pkg/prefix", "./pkg/server", "./pkg/extproc"}

const microPattern = "^Benchmark(Schedule|PluginCost|Parse|Scrape|Match|RoundTrip)$"

// microArgs is the go test command line of the micro-benchmarks.
func microArgs(benchtime string) []string {
	args := []string{"test", "-run", "^$", "-bench", microPattern, "-benchmem", "-count", "1", "-benchtime", benchtime}
	return append(args, microPackages...)
}

// microCommand is microArgs as one would type it.
func microCommand(benchtime string) string {
	args := microArgs(benchtime)
	for i, a := range args {
		if strings.ContainsAny(a, "^$|()") {
			args[i] = "'" + a + "'"
		}
	}
	return "go " + strings.Join(args, " ")
}

// runMicro runs the micro-benchmarks from the module root dir and saves
// their raw output to path.
func runMicro(ctx context.Context, benchtime, dir, path string, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", microArgs(benchtime)...)
	cmd.Dir = dir
	var out bytes.Buffer
	// One writer for both streams, so exec never writes to log from two
	// goroutines at once.
	w := io.MultiWriter(&out, log)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		tail := out.Bytes()[max(0, out.Len()-2000):]
		return fmt.Errorf("micro-benchmarks: %w\n%s", err, tail)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("micro-benchmarks: %w", err)
	}
	return nil
}

// benchmark is one result line of go test -bench.
type benchmark struct {
	Pkg   string
	Name  string // without the Benchmark prefix and the -procs suffix
	Procs int
	N     int
	// Metrics are value-unit pairs in output order (ns/op, B/op, custom).
	Metrics []metric
}

type metric struct {
	Value float64
	Unit  string
}

// value returns the metric with the unit, if reported.
func (b benchmark) value(unit string) (float64, bool) {
	for _, m := range b.Metrics {
		if m.Unit == unit {
			return m.Value, true
		}
	}
	return 0, false
}

// parseBench reads go test -bench output: "pkg:" lines name the package of
// the result lines that follow; other lines are ignored. A malformed result
// line is an error, so a format change cannot silently empty the report.
func parseBench(r io.Reader) ([]benchmark, error) {
	var out []benchmark
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		if p, ok := strings.CutPrefix(l, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(l, "Benchmark") || !strings.Contains(l, "\t") {
			continue
		}
		b, err := parseBenchLine(l)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		b.Pkg = pkg
		out = append(out, b)
	}
	return out, sc.Err()
}

func parseBenchLine(l string) (benchmark, error) {
	f := strings.Fields(l)
	if len(f) < 4 || len(f)%2 != 0 {
		return benchmark{}, fmt.Errorf("malformed benchmark line %q", l)
	}
	b := benchmark{Name: strings.TrimPrefix(f[0], "Benchmark"), Procs: 1}
	if i := strings.LastIndexByte(b.Name, '-'); i > 0 {
		if p, err := strconv.Atoi(b.Name[i+1:]); err == nil {
			b.Name, b.Procs = b.Name[:i], p
		}
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return benchmark{}, fmt.Errorf("iterations in %q: %w", l, err)
	}
	b.N = n
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return benchmark{}, fmt.Errorf("value %q in %q: %w", f[i], l, err)
		}
		b.Metrics = append(b.Metrics, metric{Value: v, Unit: f[i+1]})
	}
	return b, nil
}

// pluginCostPrefix names BenchmarkPluginCost's results, which get a table
// of their own (renderPluginCosts).
const pluginCostPrefix = "PluginCost/"

// renderMicro writes one table per package, then the ratios measured
// against a baseline in the same run, then the built-in plugins' costs.
func renderMicro(w io.Writer, bs []benchmark) {
	var pkgs []string
	byPkg := map[string][]benchmark{}
	var costs []benchmark
	for _, b := range bs {
		if strings.HasPrefix(b.Name, pluginCostPrefix) {
			costs = append(costs, b)
			continue
		}
		if _, ok := byPkg[b.Pkg]; !ok {
			pkgs = append(pkgs, b.Pkg)
		}
		byPkg[b.Pkg] = append(byPkg[b.Pkg], b)
	}
	for _, p := range pkgs {
		fmt.Fprintf(w, "**%s**\n\n| benchmark | time/op | B/op | allocs/op | other |\n|---|--:|--:|--:|---|\n", shortPkg(p))
		for _, b := range byPkg[p] {
			ns, _ := b.value("ns/op")
			bop, _ := b.value("B/op")
			allocs, _ := b.value("allocs/op")
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", b.Name, fmtNs(ns), fmtNum(bop), fmtNum(allocs), otherMetrics(b))
		}
		fmt.Fprintln(w)
	}
	renderRatios(w, bs)
	renderPluginCosts(w, costs)
}

// renderPluginCosts lists what each built-in plugin costs per call as a
// multiple of plugintest's reference scorer, the ratio BenchmarkPluginCost
// and plugintest.Cost report (unit x-ref).
func renderPluginCosts(w io.Writer, bs []benchmark) {
	if len(bs) == 0 {
		return
	}
	fmt.Fprintf(w, "What each built-in plugin costs per call at 100 endpoints (`BenchmarkPluginCost`), as a multiple of "+
		"the reference scorer (queue depth, min-max normalised) timed right after it: the yardstick for a plugin of one's "+
		"own measured with `plugintest.Cost` (see ARCHITECTURE.md). Each runs alone: a scorer or filter that reads a "+
		"producer's output shows its path without it, the prefix producers match an empty index; `Schedule` above is the "+
		"warm whole decision. Making the request's state is subtracted from the ratio, so 0.00 is a plugin with nothing to do; "+
		"allocs/op count the state's one. The ratio, not the time, is what carries across machines and runs, so only it is shown."+
		"\n\n| plugin | role | × reference | allocs/op |\n|---|---|--:|--:|\n")
	for _, b := range bs {
		parts := strings.Split(strings.TrimPrefix(b.Name, pluginCostPrefix), "/")
		role := ""
		if len(parts) > 1 {
			role = parts[1]
		}
		ref, _ := b.value("x-ref")
		allocs, _ := b.value("allocs/op")
		fmt.Fprintf(w, "| %s | %s | %.2f | %s |\n", parts[0], role, ref, fmtNum(allocs))
	}
	fmt.Fprintln(w)
}

// renderRatios lists the ratios against a baseline measured in the same
// run: the benchmarks' own p50-ratio metrics (interleaved with the
// baseline) and each server's ns/op against the no-op floor's.
func renderRatios(w io.Writer, bs []benchmark) {
	var lines []string
	floor := map[string]float64{}
	for _, b := range bs {
		if v, ok := b.value("p50-ratio"); ok {
			lines = append(lines, fmt.Sprintf("| %s %s | p50 latency ÷ %s p50, interleaved | %.2f× |", shortPkg(b.Pkg), b.Name, ratioBase(b.Name), v))
		}
		if strings.HasSuffix(b.Name, "server=noop") {
			floor[b.Pkg], _ = b.value("ns/op")
		}
	}
	for _, b := range bs {
		base := floor[b.Pkg]
		ns, ok := b.value("ns/op")
		if !ok || base == 0 || !strings.Contains(b.Name, "server=") || strings.HasSuffix(b.Name, "server=noop") {
			continue
		}
		lines = append(lines, fmt.Sprintf("| %s %s | time/op ÷ server=noop time/op | %.2f× |", shortPkg(b.Pkg), b.Name, ns/base))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "Ratios against a baseline measured in the same run:\n\n| benchmark | ratio | value |\n|---|---|--:|\n%s\n\n", strings.Join(lines, "\n"))
}

// ratioBase names the baseline of a ratio=ours/base benchmark: "floor"
// for the no-op server, else the other arm's name.
func ratioBase(name string) string {
	i := strings.LastIndexByte(name, '/')
	if i < 0 || !strings.Contains(name, "ratio=") || name[i+1:] == "noop" {
		return "floor"
	}
	return name[i+1:]
}

func otherMetrics(b benchmark) string {
	var parts []string
	for _, m := range b.Metrics {
		switch m.Unit {
		case "ns/op", "B/op", "allocs/op":
			continue
		}
		parts = append(parts, fmtNum(m.Value)+" "+m.Unit)
	}
	return strings.Join(parts, ", ")
}

func shortPkg(p string) string {
	if i := strings.Index(p, "/pkg/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

// fmtNs prints a duration in ns with a readable unit.
func fmtNs(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func fmtNum(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
