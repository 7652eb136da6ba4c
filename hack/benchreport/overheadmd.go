package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
	"github.com/openepp/openepp/pkg/metrics"
)

// The overhead targets of the issue, at 100 endpoints, concurrency 16 and
// 1 KiB prompts.
const (
	targetEndpoints   = 100
	targetConcurrency = 16
	targetPrompt      = 1 << 10
	targetAddedP99us  = 1000
	targetPerCore     = 10000
	// busyCores is the CPU use above which a process counts as saturated.
	busyCores = 0.85
)

// targetRow returns the row the targets are judged on.
func targetRow(rep *overhead.Report) (overhead.Row, bool) {
	for _, r := range rep.Rows {
		if r.Endpoints == targetEndpoints && r.Concurrency == targetConcurrency && r.PromptBytes == targetPrompt {
			return r, true
		}
	}
	return overhead.Row{}, false
}

// renderTargets states whether the targets were met, with the numbers.
func renderTargets(w io.Writer, rep *overhead.Report) {
	row, ok := targetRow(rep)
	if !ok {
		fmt.Fprintf(w, "- Overhead targets (100 endpoints, concurrency 16, 1 KiB): **not measured in this run** (it did not include that cell).\n")
		return
	}
	added, svc, perCore := row.AddedP99(), row.AddedServiceP99(), row.EPP.Capacity(overhead.Run.PerCore)
	if added.N == 0 {
		added.Median = math.Inf(1) // no reference run: the target cannot have been met
	}
	fmt.Fprintf(w, "- Overhead at 100 endpoints, concurrency 16, 1 KiB prompts (medians of %d alternating repeats; in brackets "+
		"the median's confidence interval, from the sign test, and the range of the repeats): "+
		"p99 added latency **%s µs** (%s) at %s req/s (target < 1,000 µs: %s; measured from the intended send time, "+
		"so it includes waiting for one of the C slots; the service-time p99 gap, from the actual send, is %s µs (%s)); "+
		"**%s req/s per EPP core** (%s; target ≥ 10,000: **%s**); "+
		"sustained %s req/s on one pinned core. Upstream v1.5.0 was measured at about 4,750 req/s on 2 cores with p99 ≈ 11 ms at 50 endpoints "+
		"(different machine and harness: a ratio, not a race).",
		len(row.EPP.Capacities), signed(added.Median), spread(added, signed), thousands(row.ReferenceRate),
		p99Verdict(row, added), signed(svc.Median), spread(svc, signed),
		thousands(perCore.Median), spread(perCore, thousands),
		verdict(perCore.Median >= targetPerCore), thousands(row.EPP.Sustained))
	var at []string
	for _, lp := range row.Loads {
		at = append(at, fmt.Sprintf("%s µs at %s req/s", signed(lp.Added(p99us).Median), thousands(lp.Rate)))
	}
	if len(at) > 0 {
		fmt.Fprintf(w, " At fixed offered loads, the added p99 was %s (section 2).", strings.Join(at, ", "))
	}
	fmt.Fprintln(w)
}

// p99Verdict judges the added p99 at the reference rate against the
// target, in bold, saying when the median's confidence interval straddles
// it. The gap grows with load, so a pass there that a lower fixed load
// contradicts is the machine's noise, not a result.
func p99Verdict(row overhead.Row, added overhead.Stat) string {
	bold := func(s string) string { return "**" + s + "**" }
	if added.Median >= targetAddedP99us {
		if added.Conf > 0 && added.Lo < targetAddedP99us {
			return bold(verdict(false)) + ", though its interval reaches below the target"
		}
		return bold(verdict(false))
	}
	for _, lp := range row.Loads {
		if a := lp.Added(p99us); lp.Rate <= row.ReferenceRate && a.N > 0 && a.Median >= targetAddedP99us {
			return bold(fmt.Sprintf("not shown: under it at this rate but %s µs at %s req/s, a lower load, so this run's tail is noise", signed(a.Median), thousands(lp.Rate)))
		}
	}
	if added.Conf > 0 && added.Hi >= targetAddedP99us {
		return bold(verdict(true)) + ", though its interval reaches above the target"
	}
	return bold(verdict(true))
}

// targetRepeats is how many times the target cell was measured.
func targetRepeats(rep *overhead.Report) int {
	if row, ok := targetRow(rep); ok {
		return len(row.EPP.Capacities)
	}
	return rep.Settings.Repeats
}

// rangeText is a statistic's "min–max" in format f.
func rangeText(s overhead.Stat, f func(float64) string) string {
	if s.N == 0 {
		return "n/a"
	}
	return f(s.Min) + " … " + f(s.Max)
}

// spread is a statistic's "lo … hi at C %; range min … max", or only the
// range when there are too few samples for a confidence interval.
func spread(s overhead.Stat, f func(float64) string) string {
	if s.Conf == 0 {
		return "range " + rangeText(s, f)
	}
	return fmt.Sprintf("%s at %s; range %s", ciText(s, f), percent(s.Conf), rangeText(s, f))
}

// ciText is a statistic's confidence interval "lo … hi", or its range when
// it has none.
func ciText(s overhead.Stat, f func(float64) string) string {
	if s.Conf == 0 {
		return rangeText(s, f)
	}
	return f(s.Lo) + " … " + f(s.Hi)
}

// percent is a coverage such as 0.98828 as "98.8 %", rounded down so the
// claim is never larger than the truth.
func percent(p float64) string {
	return fmt.Sprintf("%.1f %%", math.Floor(p*1000)/10)
}

// withRange is "median (min … max)", or the bare median of one sample.
func withRange(s overhead.Stat, f func(float64) string) string {
	if s.N <= 1 {
		return f(s.Median)
	}
	return f(s.Median) + " (" + rangeText(s, f) + ")"
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// renderOverhead writes the method, the idle cost and the table.
func renderOverhead(w io.Writer, rep *overhead.Report, plots []string) {
	s := rep.Settings
	deflt := "the EPP's default"
	if s.ScrapeInterval != "50ms" {
		deflt = "**not** the EPP's default of 50ms"
	}
	fmt.Fprintf(w, overheadMethod, s.Response, s.ChunkBytes>>10, s.Connections, tlsWord(s.TLS), s.ScrapeInterval, deflt,
		s.MetricsPage, s.Repeats, targetRepeats(rep), s.ProbeSeconds, ladderText(s.Ladder), s.StepSeconds, s.P99BoundMs, s.MinDelivered*100,
		s.RefFraction*100, s.RefSeconds)
	if s.RefRate > 0 {
		fmt.Fprintf(w, "**What-if run:** the reference load was a fixed %.0f req/s in every cell, not %.0f %% of each cell's capacity.\n\n",
			s.RefRate, s.RefFraction*100)
	}
	if s.CustomConfig {
		fmt.Fprintf(w, "**What-if run:** the EPP arm ran this EndpointPickerConfig (`benchoverhead --config`) instead of the "+
			"random picker alone, so its numbers include those plugins' cost:\n\n```yaml\n%s\n```\n\n", strings.TrimRight(s.PickerConfig, "\n"))
	}
	if len(s.EPPFlags) > 0 {
		fmt.Fprintf(w, "The EPP ran with extra flags: `%s`.\n\n", strings.Join(s.EPPFlags, " "))
	}
	if c := rep.Machine.Commit; c != "" {
		fmt.Fprintf(w, "Measured %s at commit %s.\n\n", rep.Started.UTC().Format("2006-01-02 15:04 MST"), c)
	}
	if rep.Machine.Pinning != "" {
		fmt.Fprintf(w, "Pinning: %s. Load average before / after the run: %s / %s; %s. The run took %.0f s.\n\n",
			rep.Machine.Pinning, rep.Machine.LoadAvgStart, rep.Machine.LoadAvgEnd, pressureText(rep.Machine.CPUPressurePct), rep.WallSeconds)
	} else {
		fmt.Fprintf(w, "Pinning: **none** (taskset missing or fewer than 2 CPUs): every process competed for every CPU.\n\n")
	}
	if rep.Quick {
		fmt.Fprintf(w, "**This is a --quick run (smoke-test size): the numbers below are not measurements.**\n\n")
	}
	renderIdle(w, rep.Idle)
	renderTable(w, rep.Rows)
	renderLoads(w, rep.Rows, rep.Idle)
	renderCompare(w, rep)
	renderFindings(w, rep)
	for _, p := range plots {
		fmt.Fprintf(w, "![overhead plot](%s)\n\n", p)
	}
	renderNotes(w, rep.Rows)
}

const overheadMethod = `**Method.** Every party is a separate OS process on 127.0.0.1. The load generator is our Envoy-faithful
ext_proc client (` + "`pkg/extproc`" + `, FULL_DUPLEX_STREAMED both ways): per request it opens a stream, sends the request
headers and the body in Envoy-sized chunks, waits for the routing decision, then plays the response phase
(response phase: %s; %d KiB chunks; gRPC connections: %d; %s in both arms). Arms: **floor** = the no-op
ext_proc server (` + "`extproc.NoopServer`" + `, same gRPC stack and message pattern as the EPP, no parsing, no
scheduling); **EPP** = ` + "`cmd/epp`" + ` as shipped (its default ` + "`GOGC=400`" + ` and request tracing: a tenth of requests sampled, no collector listening) with the random picker only, scraping every
simulated endpoint's metrics page every %s (%s; pages of %d bytes with real vLLM metric names whose load gauges
change on every scrape, served by a minimal HTTP/1.1 responder at nice 10 on the generator's core, so that their
bursts of answers, which in production come from other machines, barely delay the generator's sends in the EPP arm). The generator's own garbage collector is off during a run and runs between runs. Both servers
stay up. Each cell's capacity and reference runs are repeated **%d** times (the target cell, 100 endpoints × C=16 ×
1 KiB: **%d** times, its tail needing more samples) with the arms
alternating (EPP, floor, EPP, floor, …; the EPP paused by SIGSTOP while the floor runs, so its scraping cannot
disturb it), so a slow drift of the shared machine's load hits both arms; every figure below is the **median** over
the repeats, with the min … max range where shown. Every run is preceded by a discarded closed-loop warm-up.

- *Concurrency C*: at most C requests in flight; arrivals beyond that wait for a slot, and the wait counts.
- *Latency*: from the request's **intended** send time (open-loop Poisson arrivals, no coordinated omission) to the
  routing decision.
- *Capacity*: closed loop at concurrency C for %.1f s (every slot sends its next request when the last ends).
- *Sustained req/s*: measured once per arm, from its median capacity: the highest open-loop Poisson rate of the
  ladder %s × capacity (%.1f s per step, highest first) whose p99 latency is ≤ %.0f ms, whose throughput is
  ≥ %.0f%% of the arrivals drawn, with no failures; 0 if none passed.
- *Added latency*: EPP latency − floor latency at the same percentile, both measured at the same **reference
  rate** (%.0f%% of the EPP arm's median capacity in that cell) for %.1f s, the two arms of a repeat back to back
  with the same arrival seed (a new seed per repeat); the table gives the **median of the per-repeat
  differences** and their range.
- *Generator lag*: the load generator's own wake-up delay (how late a free slot sent a request after its intended
  time), p99 at the reference rate. It is inside both arms' latencies; when it is large the tail measures the
  generator's CPU, not the servers.
- *req/s per core*: requests completed in a capacity run ÷ the server process's utime + stime (/proc/<pid>/stat)
  during it; it includes the EPP's background scraping. *Peak RSS*: VmHWM of the server process over the cell,
  reset (/proc/<pid>/clear_refs) at its start.

`

// pressureText describes the machine's CPU contention during the run.
func pressureText(pct float64) string {
	if pct < 0 {
		return "CPU pressure unknown (no PSI)"
	}
	return fmt.Sprintf("some runnable task (the benchmark's own included) was waiting for a CPU during **%.0f %%** of the run "+
		"(Linux PSI; near 0 %% on an otherwise idle machine)", pct)
}

func tlsWord(tls bool) string {
	if tls {
		return "TLS (self-signed certificate, not verified, as Envoy with an empty validation context)"
	}
	return "plaintext gRPC (--secure-serving=false)"
}

func ladderText(l []float64) string {
	parts := make([]string, len(l))
	for i, f := range l {
		parts[i] = fmt.Sprintf("%g", f)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func renderIdle(w io.Writer, idle []overhead.Idle) {
	fmt.Fprintf(w, "Idle cost (no requests, scraping only):\n\n| endpoints | EPP CPU (cores) | scrapes/s achieved / target | metrics servers CPU (cores) |\n|--:|--:|--:|--:|\n")
	for _, i := range idle {
		fmt.Fprintf(w, "| %d | %.2f | %s / %s | %.2f |\n", i.Endpoints, i.EPPCores, thousands(i.ScrapesPerSecond),
			thousands(i.TargetScrapesPerSecond), i.MetricsServerCores)
	}
	fmt.Fprintln(w)
}

func renderTable(w io.Writer, rows []overhead.Row) {
	fmt.Fprintf(w, "| endpoints | C | prompt | EPP capacity req/s | floor capacity req/s | EPP / floor sustained req/s | reference req/s | "+
		"EPP p50 / p99 µs | floor p50 / p99 µs | **added p50 / p99 µs** | added p99 range µs | generator lag p99 µs EPP / floor | "+
		"EPP req/s per core | EPP peak RSS MiB | CPU pressure %% EPP / floor |\n"+
		"|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		e, f := r.EPP, r.Floor
		fmt.Fprintf(w, "| %d | %d | %d KiB | %s%s | %s%s | %s / %s | %s | %s | %s | **%s** | %s | %s / %s | %s | %.0f | %s / %s |\n",
			r.Endpoints, r.Concurrency, r.PromptBytes>>10, withRange(e.Capacity(throughput), thousands), genMark(e),
			withRange(f.Capacity(throughput), thousands), genMark(f), thousands(e.Sustained), thousands(f.Sustained),
			thousands(r.ReferenceRate), latencies(e), latencies(f), added(r), rangeText(r.AddedP99(), signed),
			median(e.Reference(lagP99)), median(f.Reference(lagP99)), withRange(e.Capacity(overhead.Run.PerCore), thousands),
			e.PeakRSSMiB, median(e.Reference(pressure)), median(f.Reference(pressure)))
	}
	fmt.Fprintf(w, "\n‡ the load generator, not the server, was saturated in the median capacity run (generator ≥ %.0f%% of its CPU, "+
		"server below): that arm's rates are lower bounds. § fewer than %d requests completed in a reference run, so its "+
		"percentiles rest on too few samples to mean much; n/a: the EPP completed no request in its capacity runs. *CPU pressure*: share of each reference run during which some "+
		"runnable task on the machine (the benchmark's own included) waited for a CPU (Linux PSI), median over the repeats; high values mean the arms' "+
		"tails measure CPU contention more than the servers.\n\n", busyCores*100, minSamples)
}

func throughput(r overhead.Run) float64 { return r.Throughput }
func p99us(r overhead.Run) float64      { return r.P99us }
func p50us(r overhead.Run) float64      { return r.P50us }
func svcP99us(r overhead.Run) float64   { return r.SvcP99us }
func lagP99(r overhead.Run) float64     { return r.LagP99us }
func pressure(r overhead.Run) float64   { return r.CPUPressurePct }

// signedMedian is a statistic's median with its sign, or n/a.
func signedMedian(s overhead.Stat) string {
	if s.N == 0 {
		return "n/a"
	}
	return signed(s.Median)
}

// median is a statistic's median, rounded, or n/a.
func median(s overhead.Stat) string {
	if s.N == 0 {
		return "n/a"
	}
	return thousands(s.Median)
}

// minSamples is the fewest completed requests whose p99 the table trusts.
const minSamples = 100

// latencies is an arm's median "p50 / p99" at the reference rate, in µs.
func latencies(a overhead.Arm) string {
	p50 := a.Reference(func(r overhead.Run) float64 { return r.P50us })
	if p50.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f / %.0f", p50.Median, a.Reference(func(r overhead.Run) float64 { return r.P99us }).Median)
}

// added is a row's median "added p50 / p99", marked when a sample is small.
func added(r overhead.Row) string {
	p50, p99 := r.AddedP50(), r.AddedP99()
	if p50.N == 0 {
		return "n/a"
	}
	mark := ""
	for _, run := range append(slices.Clone(r.EPP.References), r.Floor.References...) {
		if run.Completed < minSamples {
			mark = " §"
		}
	}
	return signed(p50.Median) + " / " + signed(p99.Median) + mark
}

// genMark flags an arm whose median capacity run was limited by the
// generator.
func genMark(a overhead.Arm) string {
	gen := a.Capacity(func(c overhead.Run) float64 { return c.GenCPUSeconds / max(c.WallSeconds, 1e-9) })
	srv := a.Capacity(func(c overhead.Run) float64 { return c.CPUSeconds / max(c.WallSeconds, 1e-9) })
	if gen.N > 0 && gen.Median >= busyCores && srv.Median < busyCores {
		return " ‡"
	}
	return ""
}

// renderNotes lists failed requests, which the table cannot show.
func renderNotes(w io.Writer, rows []overhead.Row) {
	var notes []string
	for _, r := range rows {
		for _, arm := range []struct {
			name string
			a    overhead.Arm
		}{{"EPP", r.EPP}, {"floor", r.Floor}} {
			if failed, errs := failures(arm.a); failed > 0 {
				notes = append(notes, fmt.Sprintf("- %d endpoints, C=%d, %d KiB, %s: %d failed requests (%s)",
					r.Endpoints, r.Concurrency, r.PromptBytes>>10, arm.name, failed, strings.Join(errs, "; ")))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "Failures:\n\n%s\n\n", strings.Join(notes, "\n"))
	}
}

// failures counts an arm's failed requests and their distinct errors.
func failures(a overhead.Arm) (int, []string) {
	failed, seen := 0, map[string]bool{}
	var errs []string
	for _, run := range slices.Concat(a.Capacities, a.References, a.Ladder) {
		failed += run.Failed
		for _, e := range run.Errors {
			if !seen[e] {
				seen[e] = true
				errs = append(errs, e)
			}
		}
	}
	return failed, errs
}

// renderFindings states what the numbers say about scraping and about the
// EPP's cost above the floor, computed from this run.
func renderFindings(w io.Writer, rep *overhead.Report) {
	var fs []string
	for _, i := range rep.Idle {
		capped := i.TargetScrapesPerSecond > metrics.DefaultMaxScrapesPerSecond &&
			i.ScrapesPerSecond >= 0.9*metrics.DefaultMaxScrapesPerSecond && len(rep.Settings.EPPFlags) == 0
		if capped {
			fs = append(fs, fmt.Sprintf("At %d endpoints the %s interval would ask for %s scrapes/s; the EPP's default cap "+
				"(`--max-scrapes-per-second`, %s) stretched it to %.0f ms per endpoint, and the idle EPP made %s scrapes/s on "+
				"%.2f cores. The tail latencies above include those scrapes sharing the EPP's one core with the requests.",
				i.Endpoints, rep.Settings.ScrapeInterval, thousands(i.TargetScrapesPerSecond), thousands(metrics.DefaultMaxScrapesPerSecond),
				float64(i.Endpoints)/metrics.DefaultMaxScrapesPerSecond*1000, thousands(i.ScrapesPerSecond), i.EPPCores))
			continue
		}
		if i.TargetScrapesPerSecond > 0 && i.ScrapesPerSecond < 0.9*i.TargetScrapesPerSecond {
			fs = append(fs, fmt.Sprintf("At %d endpoints the idle EPP used %.2f cores and still managed only %s of the %s scrapes/s "+
				"its %s interval asks for: scraping alone needs more than the core it has (or can get on this machine), and "+
				"requests then queue behind the scrape goroutines (see the latencies above).",
				i.Endpoints, i.EPPCores, thousands(i.ScrapesPerSecond), thousands(i.TargetScrapesPerSecond), rep.Settings.ScrapeInterval))
		}
	}
	for _, r := range rep.Rows {
		if r.Endpoints != targetEndpoints || r.Concurrency != targetConcurrency || r.PromptBytes != targetPrompt {
			continue
		}
		e, f := r.EPP.Capacity(overhead.Run.CPUPer1k).Median, r.Floor.Capacity(overhead.Run.CPUPer1k).Median
		fs = append(fs, fmt.Sprintf("At %d endpoints, C=%d, %d KiB, at capacity (medians): the EPP spent %.0f µs of CPU per request against the floor's %.0f µs "+
			"(+%.0f µs); %s of the EPP's per-request CPU is its background scraping (idle cost × run time ÷ CPU time).",
			r.Endpoints, r.Concurrency, r.PromptBytes>>10, 1000*e, 1000*f, 1000*(e-f), scrapeShare(rep, r)))
	}
	if len(fs) > 0 {
		fmt.Fprintf(w, "Findings of this run:\n\n- %s\n\n", strings.Join(fs, "\n- "))
	}
}

// scrapeShare estimates the share of the EPP's CPU in a row's capacity runs
// that went to scraping, from the idle measurement at the same endpoints.
func scrapeShare(rep *overhead.Report, r overhead.Row) string {
	for _, i := range rep.Idle {
		if i.Endpoints != r.Endpoints {
			continue
		}
		share := r.EPP.Capacity(func(c overhead.Run) float64 {
			if c.CPUSeconds <= 0 {
				return math.NaN()
			}
			return min(100, 100*i.EPPCores*c.WallSeconds/c.CPUSeconds)
		})
		if share.N > 0 && !math.IsNaN(share.Median) {
			return fmt.Sprintf("about %.0f %%", share.Median)
		}
	}
	return "an unknown share"
}
