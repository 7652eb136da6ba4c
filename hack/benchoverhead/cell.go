package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// cellKey names one cell of the matrix.
type cellKey struct{ endpoints, concurrency, prompt int }

func (k cellKey) String() string {
	return fmt.Sprintf("endpoints=%d c=%d prompt=%dKiB", k.endpoints, k.concurrency, k.prompt>>10)
}

// seed gives every run of a cell its own arrival seed, the same in both
// arms.
func (k cellKey) seed(step int) uint64 {
	return uint64(k.endpoints)<<40 ^ uint64(k.concurrency)<<32 ^ uint64(k.prompt)<<8 ^ uint64(step)
}

// pair measures the arms of one cell (see plan): the probes and the
// reference runs repeated with the arms alternating, the ladders once.
func (r *runner) pair(ctx context.Context, arms cellArms, k cellKey) (overhead.Row, error) {
	row := overhead.Row{Endpoints: k.endpoints, Concurrency: k.concurrency, PromptBytes: k.prompt}
	if arms.compare != nil {
		row.Compare = &overhead.Arm{}
	}
	repeats := r.p.repeats(k)
	if repeats != r.p.repeat {
		row.Repeats = repeats
	}
	for _, a := range arms.all() {
		resetPeakRSS(a.server.pid())
	}
	for i := range repeats {
		err := r.alternate(ctx, arms, &row, i, func(a *arm, out *overhead.Arm) error {
			run, err := r.warmed(ctx, a, r.closed(k, r.p.probe))
			out.Capacities = append(out.Capacities, run)
			return err
		})
		if err != nil {
			return row, err
		}
	}
	if row.EPP.Completed() {
		row.ReferenceRate = r.p.refFraction * row.EPP.Capacity(throughput).Median
		if r.p.refRate > 0 {
			row.ReferenceRate = r.p.refRate
		}
	} else {
		r.logf("epp   %s: no request completed in the capacity runs: %v", k, row.EPP.Capacities[0].Errors)
	}
	for i := range repeats {
		err := r.alternate(ctx, arms, &row, i, func(a *arm, out *overhead.Arm) error {
			if i == 0 {
				if err := r.ladder(ctx, a, k, out); err != nil {
					return err
				}
			}
			if row.ReferenceRate <= 0 {
				return nil
			}
			j := r.closed(k, r.p.ref)
			j.Rate, j.Seed = row.ReferenceRate, k.seed(100+i)
			run, err := r.warmed(ctx, a, j)
			out.References = append(out.References, run)
			return err
		})
		if err != nil {
			return row, err
		}
	}
	if k == r.p.profileCell() && row.ReferenceRate > 0 {
		if err := r.loads(ctx, arms, k, &row, repeats); err != nil {
			return row, err
		}
	}
	if err := r.finishPair(ctx, arms, k, &row); err != nil {
		return row, err
	}
	return row, nil
}

// loads measures both arms at each of the plan's fixed offered rates,
// repeats times, alternating like the reference runs (a new arrival seed
// per repeat and rate, the same in both arms).
func (r *runner) loads(ctx context.Context, arms cellArms, k cellKey, row *overhead.Row, repeats int) error {
	row.Loads = make([]overhead.LoadPoint, len(r.p.loads))
	for li, rate := range r.p.loads {
		row.Loads[li].Rate = rate
	}
	for i := range repeats {
		for li := range row.Loads {
			lp := &row.Loads[li]
			err := r.alternate(ctx, arms, row, i, func(a *arm, _ *overhead.Arm) error {
				out := &lp.Floor
				switch a {
				case arms.epp:
					out = &lp.EPP
				case arms.compare:
					out = &lp.Compare
				}
				j := r.closed(k, r.p.ref)
				j.Rate, j.Seed = lp.Rate, k.seed(1000+100*li+i)
				run, err := r.warmed(ctx, a, j)
				*out = append(*out, run)
				return err
			})
			if err != nil {
				return err
			}
		}
	}
	for _, lp := range row.Loads {
		r.logf("added %s at %.0f req/s: p50 %+.0fµs p99 %+.0fµs (medians of %d repeats)", k, lp.Rate,
			lp.Added(p50).Median, lp.Added(p99).Median, repeats)
		if arms.compare != nil {
			r.logf("compare − epp %s at %.0f req/s: p50 %s p99 %s", k, lp.Rate, diffText(lp.CompareDiff(p50)), diffText(lp.CompareDiff(p99)))
		}
	}
	return nil
}

// diffText is a paired difference's median and interval for the log.
func diffText(s overhead.Stat) string {
	if s.Conf == 0 {
		return fmt.Sprintf("%+.0fµs (range %+.0f…%+.0f)", s.Median, s.Min, s.Max)
	}
	return fmt.Sprintf("%+.0fµs (%+.0f…%+.0f at %.0f%%)", s.Median, s.Lo, s.Hi, 100*s.Conf)
}

// alternate runs fn once on every arm of repeat i: the EPP, then (in a
// comparison) the compared EPP, the order of the two swapped every other
// repeat so neither always runs first, then the floor. Only the EPP being
// measured runs: the others are paused (SIGSTOP), so their background
// scraping cannot disturb it, and a resumed EPP settles before it is
// measured. Between calls the first EPP runs and the compared one is
// paused.
func (r *runner) alternate(ctx context.Context, arms cellArms, row *overhead.Row, i int, fn func(*arm, *overhead.Arm) error) error {
	if arms.compare != nil && i%2 == 1 {
		if err := r.swap(arms.epp, arms.compare); err != nil {
			return err
		}
		if err := fn(arms.compare, row.Compare); err != nil {
			return err
		}
		if err := r.swap(arms.compare, arms.epp); err != nil {
			return err
		}
	}
	if err := fn(arms.epp, &row.EPP); err != nil {
		return err
	}
	last := arms.epp
	if arms.compare != nil && i%2 == 0 {
		if err := r.swap(arms.epp, arms.compare); err != nil {
			return err
		}
		if err := fn(arms.compare, row.Compare); err != nil {
			return err
		}
		last = arms.compare
	}
	if err := last.server.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	err := fn(arms.floor, &row.Floor)
	if cerr := arms.epp.server.signal(syscall.SIGCONT); err == nil {
		err = cerr
	}
	time.Sleep(r.p.settle)
	return err
}

// runsOf is where arm a's measurements of row go.
func (arms cellArms) runsOf(row *overhead.Row, a *arm) *overhead.Arm {
	switch a {
	case arms.epp:
		return &row.EPP
	case arms.compare:
		return row.Compare
	}
	return &row.Floor
}

// all lists the arms that are running processes.
func (a cellArms) all() []*arm {
	if a.compare == nil {
		return []*arm{a.epp, a.floor}
	}
	return []*arm{a.epp, a.floor, a.compare}
}

// finishPair reads the peak RSS, profiles the EPP in the profiled cell and
// logs the cell's medians.
func (r *runner) finishPair(ctx context.Context, arms cellArms, k cellKey, row *overhead.Row) error {
	for _, a := range arms.all() {
		var err error
		if arms.runsOf(row, a).PeakRSSMiB, err = peakRSSMiB(a.server.pid()); err != nil {
			return err
		}
	}
	if err := r.profile(ctx, arms.epp, k); err != nil {
		return err
	}
	for _, a := range arms.all() {
		out := arms.runsOf(row, a)
		c := out.Capacity(throughput)
		r.logf("%-7s %s: capacity %.0f/s (%.0f–%.0f), sustained %.0f/s, at %.0f/s p50 %.0fµs p99 %.0fµs, %.0f req/s per core",
			a.name, k, c.Median, c.Min, c.Max, out.Sustained, row.ReferenceRate,
			out.Reference(p50).Median, out.Reference(p99).Median, out.Capacity(overhead.Run.PerCore).Median)
	}
	r.logf("added %s: p50 %+.0fµs p99 %+.0fµs (medians of %d repeats)", k, row.AddedP50().Median, row.AddedP99().Median, len(row.EPP.Capacities))
	if arms.compare != nil {
		q := row.CompareRatio(overhead.Run.PerCore)
		r.logf("compare − epp %s: p50 %s p99 %s service p99 %s; per core ×%.3f (×%.3f…×%.3f)", k,
			diffText(row.CompareDiff(p50)), diffText(row.CompareDiff(p99)), diffText(row.CompareDiff(svcP99)),
			q.Median, q.Min, q.Max)
	}
	return nil
}

func throughput(r overhead.Run) float64 { return r.Throughput }
func p50(r overhead.Run) float64        { return r.P50us }
func p99(r overhead.Run) float64        { return r.P99us }
func svcP99(r overhead.Run) float64     { return r.SvcP99us }

// closed is a closed-loop job of duration d in cell k.
func (r *runner) closed(k cellKey, d time.Duration) job {
	return job{Concurrency: k.concurrency, Duration: d, MaxRequests: r.p.maxRequests, PromptBytes: k.prompt}
}

// warmed runs a discarded warm-up run, then j.
func (r *runner) warmed(ctx context.Context, a *arm, j job) (overhead.Run, error) {
	if _, err := r.measure(ctx, a, job{Concurrency: j.Concurrency, Duration: r.p.warm, MaxRequests: r.p.maxRequests, PromptBytes: j.PromptBytes}); err != nil {
		return overhead.Run{}, err
	}
	return r.measure(ctx, a, j)
}

// ladder searches an arm's sustained rate from its median capacity.
func (r *runner) ladder(ctx context.Context, a *arm, k cellKey, out *overhead.Arm) error {
	capacity := out.Capacity(throughput).Median
	if !out.Completed() {
		return nil
	}
	if _, err := r.measure(ctx, a, r.closed(k, r.p.warm)); err != nil {
		return err
	}
	for i, f := range r.p.ladder {
		j := r.closed(k, r.p.step)
		j.Rate, j.Seed = f*capacity, k.seed(i)
		run, err := r.measure(ctx, a, j)
		if err != nil {
			return err
		}
		run.Passed = r.passes(run, j)
		out.Ladder = append(out.Ladder, run)
		if run.Passed {
			out.Sustained = j.Rate
			return nil
		}
	}
	return nil
}

// profile takes a CPU profile of the EPP in the profiled cell, during an
// extra closed-loop run (not part of the measurements) long enough for a
// few hundred samples.
func (r *runner) profile(ctx context.Context, a *arm, k cellKey) error {
	if a.metrics == "" || k != r.profileCell || r.profilePath == "" {
		return nil
	}
	secs := int(r.p.profile.Seconds())
	url := strings.TrimSuffix(a.metrics, "/metrics") + "/debug/pprof/profile?seconds=" + strconv.Itoa(secs)
	done := make(chan error, 1)
	go func() { done <- fetchProfile(url, r.profilePath) }()
	// The load outlasts the profile by half a second on each side.
	j := job{Concurrency: k.concurrency, Duration: r.p.profile + time.Second, MaxRequests: r.p.maxRequests, PromptBytes: k.prompt}
	_, err := r.measure(ctx, a, j)
	return errors.Join(err, <-done)
}

// passes says whether a ladder step was sustained: p99 within the bound,
// the throughput kept up with the arrivals that were drawn, no failure.
func (r *runner) passes(run overhead.Run, j job) bool {
	arrivals := float64(run.Completed+run.Failed) / j.Duration.Seconds()
	return run.Failed == 0 && run.P99us <= float64(r.p.p99Bound)/float64(time.Microsecond) &&
		run.Throughput >= r.p.minDelivered*arrivals
}

// measure runs one job and the CPU accounting around it.
func (r *runner) measure(ctx context.Context, a *arm, j job) (overhead.Run, error) {
	var run overhead.Run
	scr0, err := a.scrapeCount()
	if err != nil {
		return run, err
	}
	t0, p0 := time.Now(), newPressure()
	c0, err1 := cpuSeconds(a.server.pid())
	g0, err2 := cpuSeconds(a.gen.pid())
	var res jobResult
	err3 := a.gen.call(ctx, j, &res, j.Duration+jobSlack)
	c1, err4 := cpuSeconds(a.server.pid())
	g1, err5 := cpuSeconds(a.gen.pid())
	wall := time.Since(t0).Seconds()
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return run, fmt.Errorf("%s: %w", a.name, err)
	}
	if res.Err != "" {
		return run, fmt.Errorf("%s: generator: %s", a.name, res.Err)
	}
	scr1, err := a.scrapeCount()
	if err != nil {
		return run, err
	}
	g := res.Result
	run = overhead.Run{
		Offered: g.Offered, Throughput: g.Throughput, Completed: g.Completed, Failed: g.Failed, Errors: g.Errors,
		P50us: g.Latency.P50, P90us: g.Latency.P90, P99us: g.Latency.P99, P999us: g.Latency.P999, MaxUs: g.Latency.Max, WorstAtSeconds: g.WorstAtSeconds,
		SvcP50us: g.Service.P50, SvcP99us: g.Service.P99, LagP50us: g.Lag.P50, LagP99us: g.Lag.P99,
		CPUSeconds: c1 - c0, GenCPUSeconds: g1 - g0, WallSeconds: wall,
		ScrapesPerSecond: (scr1 - scr0) / time.Since(t0).Seconds(), CPUPressurePct: p0.pct(),
	}
	return run, a.server.exitedEarly(ctx)
}

// scrapeCount is the EPP's scrape counter, 0 for the floor.
func (a *arm) scrapeCount() (float64, error) {
	if a.metrics == "" {
		return 0, nil
	}
	return scrapes(a.metrics)
}

// measureIdle measures the EPP and the metrics servers with no traffic,
// and in a comparison the compared EPP alone.
func (r *runner) measureIdle(arms cellArms, ms *proc, e int) (overhead.Idle, error) {
	idle := overhead.Idle{Endpoints: e, TargetScrapesPerSecond: float64(e) / r.o.scrapeInterval.Seconds()}
	var err error
	idle.EPPCores, idle.MetricsServerCores, idle.ScrapesPerSecond, err = r.idleCPU(arms.epp, ms)
	if err != nil {
		return idle, err
	}
	r.logf("idle  endpoints=%d: EPP %.2f cores, %.0f scrapes/s (target %.0f), metrics servers %.2f cores",
		e, idle.EPPCores, idle.ScrapesPerSecond, idle.TargetScrapesPerSecond, idle.MetricsServerCores)
	if arms.compare == nil {
		return idle, nil
	}
	if err := r.swap(arms.epp, arms.compare); err != nil {
		return idle, err
	}
	idle.CompareCores, _, _, err = r.idleCPU(arms.compare, ms)
	if serr := r.swap(arms.compare, arms.epp); err == nil {
		err = serr
	}
	r.logf("idle  endpoints=%d: compared EPP %.2f cores", e, idle.CompareCores)
	return idle, err
}

// idleCPU is a's and the metrics servers' CPU, in cores, and a's scrape
// rate, over the plan's idle period.
func (r *runner) idleCPU(a *arm, ms *proc) (cores, metricsCores, scrapesPerSecond float64, _ error) {
	s0, err := a.scrapeCount()
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	c0, err1 := cpuSeconds(a.server.pid())
	m0, err2 := cpuSeconds(ms.pid())
	time.Sleep(r.p.idle)
	c1, err3 := cpuSeconds(a.server.pid())
	m1, err4 := cpuSeconds(ms.pid())
	wall := time.Since(t0).Seconds()
	s1, err5 := a.scrapeCount()
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return 0, 0, 0, err
	}
	return (c1 - c0) / wall, (m1 - m0) / wall, (s1 - s0) / time.Since(t0).Seconds(), nil
}
