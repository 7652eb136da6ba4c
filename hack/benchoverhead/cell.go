package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// cell measures one arm in one cell (see plan). refRate 0 means this arm
// sets the reference rate: refFraction of its capacity; a negative refRate
// skips the reference run (the EPP arm completed nothing to set it).
func (r *runner) cell(ctx context.Context, a *arm, k cellKey, refRate float64) (overhead.Arm, error) {
	var out overhead.Arm
	pid := a.server.pid()
	resetPeakRSS(pid)
	closed := func(d time.Duration) job {
		return job{Concurrency: k.concurrency, Duration: d, MaxRequests: r.p.maxRequests, PromptBytes: k.prompt}
	}
	if _, err := r.measure(ctx, a, closed(r.p.warm)); err != nil {
		return out, err
	}
	var err error
	if out.Capacity, err = r.measure(ctx, a, closed(r.p.probe)); err != nil {
		return out, err
	}
	if out.Capacity.Completed == 0 {
		// A server that completes nothing is a result, not a harness error.
		r.logf("%-5s %s: no request completed in the capacity run: %v", a.name, k, out.Capacity.Errors)
		return out, nil
	}
	for i, f := range r.p.ladder {
		j := closed(r.p.step)
		j.Rate, j.Seed = f*out.Capacity.Throughput, k.seed(i)
		run, err := r.measure(ctx, a, j)
		if err != nil {
			return out, err
		}
		run.Passed = r.passes(run, j)
		out.Ladder = append(out.Ladder, run)
		if run.Passed {
			out.Sustained = j.Rate
			break
		}
	}
	if refRate == 0 {
		refRate = r.p.refFraction * out.Capacity.Throughput
	}
	if refRate > 0 {
		j := closed(r.p.ref)
		j.Rate, j.Seed = refRate, k.seed(100)
		if out.Reference, err = r.measure(ctx, a, j); err != nil {
			return out, err
		}
	}
	if out.PeakRSSMiB, err = peakRSSMiB(pid); err != nil {
		return out, err
	}
	if err := r.profile(ctx, a, k); err != nil {
		return out, err
	}
	r.logf("%-5s %s: capacity %.0f/s, sustained %.0f/s, at %.0f/s p50 %.0fµs p99 %.0fµs, %.3f CPU s/1k, %.0f MiB",
		a.name, k, out.Capacity.Throughput, out.Sustained, refRate, out.Reference.P50us, out.Reference.P99us,
		out.Reference.CPUPer1k(), out.PeakRSSMiB)
	return out, nil
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
		P50us: g.Latency.P50, P90us: g.Latency.P90, P99us: g.Latency.P99, P999us: g.Latency.P999, MaxUs: g.Latency.Max,
		SvcP50us: g.Service.P50, SvcP99us: g.Service.P99,
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

// measureIdle measures the EPP and the metrics servers with no traffic.
func (r *runner) measureIdle(a *arm, ms *proc, e int) (overhead.Idle, error) {
	idle := overhead.Idle{Endpoints: e, TargetScrapesPerSecond: float64(e) / r.o.scrapeInterval.Seconds()}
	s0, err := a.scrapeCount()
	if err != nil {
		return idle, err
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
		return idle, err
	}
	idle.EPPCores, idle.MetricsServerCores = (c1-c0)/wall, (m1-m0)/wall
	idle.ScrapesPerSecond = (s1 - s0) / time.Since(t0).Seconds()
	r.logf("idle  endpoints=%d: EPP %.2f cores, %.0f scrapes/s (target %.0f), metrics servers %.2f cores",
		e, idle.EPPCores, idle.ScrapesPerSecond, idle.TargetScrapesPerSecond, idle.MetricsServerCores)
	return idle, nil
}
