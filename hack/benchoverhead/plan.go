package main

import (
	"slices"
	"time"
)

// plan is the benchmark matrix and the length of each kind of run.
//
// Per cell (endpoints × concurrency × prompt), each measurement preceded
// by a discarded closed-loop warm run (connections, caches, GC pacing):
//
//  1. probe, repeat times, the arms alternating (EPP, floor, EPP, ...):
//     closed loop at the concurrency, the capacity, the most the arm
//     completes with that many requests in flight; X is an arm's median;
//  2. ladder, once per arm: open-loop Poisson at ladder[i]·X, highest
//     first, until a step passes (p99 ≤ p99Bound, throughput ≥
//     minDelivered × the realised arrival rate, no failures): that offered
//     rate is the sustained rate;
//  3. reference, repeat times, alternating: open-loop Poisson at
//     refFraction·X of the EPP arm, the same rate and arrival seed in both
//     arms of a repeat, so their latencies compare at the same load;
//  4. loads, in the profiled cell only, repeat times, alternating: open-loop
//     Poisson at each fixed rate of loads, like the reference runs, so the
//     added latency is seen against the offered load too.
//
// Alternating the arms makes slow drifts of the shared machine hit both;
// the report takes medians over the repeats.
type plan struct {
	endpoints   []int
	concurrency []int
	prompts     []int // bytes
	warm        time.Duration
	probe       time.Duration
	step        time.Duration
	ref         time.Duration
	idle        time.Duration // with no traffic; CPU time comes in 10 ms ticks, so longer is finer
	settle      time.Duration // after the EPP is ready, so every endpoint was scraped
	profile     time.Duration // CPU profile of the EPP in the profiled cell (whole seconds)
	ladder      []float64
	refFraction float64
	refRate     float64 // when > 0, replaces refFraction × capacity
	loads       []float64
	p99Bound    time.Duration
	// minDelivered is the throughput a passing step must keep, as a
	// fraction of its realised arrival rate.
	minDelivered float64
	// maxRequests caps every run (0: only the duration bounds it).
	maxRequests int
	// repeat is how many times each cell's probe and reference run;
	// targetRepeat replaces it in the cell the targets are judged on, whose
	// tail needs more samples than the others: at 15 the median's 95 %
	// sign-test interval runs from the 4th to the 12th sorted difference
	// (at 11, from the 2nd to the 10th).
	repeat, targetRepeat int
	pageBytes            int // filled in from the metrics servers
}

func newPlan(o runOptions) plan {
	p := plan{
		endpoints: []int{10, 100, 1000}, concurrency: []int{1, 16, 64}, prompts: []int{1 << 10, 100 << 10},
		warm: 300 * time.Millisecond, probe: 1500 * time.Millisecond, step: 1500 * time.Millisecond,
		ref: 2 * time.Second, idle: 3 * time.Second, settle: time.Second, profile: 5 * time.Second,
		ladder: []float64{1.0, 0.85, 0.7, 0.5, 0.3}, refFraction: 0.5,
		p99Bound: 10 * time.Millisecond, minDelivered: 0.95, repeat: 3, targetRepeat: 15,
		loads: []float64{1000, 2000, 3000},
	}
	if o.quick {
		p.endpoints, p.concurrency, p.prompts = []int{10}, []int{16}, []int{1 << 10}
		p.warm, p.probe, p.step, p.ref = 100*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
		p.idle, p.settle, p.profile = 300*time.Millisecond, 300*time.Millisecond, time.Second
		p.ladder, p.maxRequests, p.repeat, p.targetRepeat = []float64{0.85, 0.5}, 300, 1, 1
		p.loads = []float64{200}
	}
	if o.loads != nil {
		p.loads = o.loads
	}
	if o.repeat > 0 {
		p.repeat, p.targetRepeat = o.repeat, o.repeat
	}
	if o.refFraction > 0 {
		p.refFraction = o.refFraction
	}
	p.refRate = o.refRate
	if len(o.endpoints) > 0 {
		p.endpoints = o.endpoints
	}
	if len(o.concurrency) > 0 {
		p.concurrency = o.concurrency
	}
	if len(o.promptKiB) > 0 {
		p.prompts = nil
		for _, k := range o.promptKiB {
			p.prompts = append(p.prompts, k<<10)
		}
	}
	return p
}

// targetCell is the cell the targets are set on.
var targetCell = cellKey{100, 16, 1 << 10}

// repeats is how many times cell k is measured.
func (p plan) repeats(k cellKey) int {
	if k == targetCell {
		return p.targetRepeat
	}
	return p.repeat
}

// profileCell is the cell whose EPP capacity run is profiled: the one the
// targets are set on (100 endpoints, concurrency 16, 1 KiB) when planned,
// else the first.
func (p plan) profileCell() cellKey {
	want := targetCell
	if slices.Contains(p.endpoints, want.endpoints) && slices.Contains(p.concurrency, want.concurrency) && slices.Contains(p.prompts, want.prompt) {
		return want
	}
	return cellKey{p.endpoints[0], p.concurrency[0], p.prompts[0]}
}
