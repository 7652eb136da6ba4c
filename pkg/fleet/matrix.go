package fleet

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Matrix is a benchmark: every policy on every workload at every QPS of
// the workload's ladder, for every seed. Runs are independent, so they are
// spread over Workers goroutines; results do not depend on Workers.
type Matrix struct {
	Workloads []Workload
	Policies  []Policy
	// Seeds are the seeds each run is repeated with (default {1}); stage
	// results are averaged over them.
	Seeds []uint64
	// Workers bounds parallel runs (default GOMAXPROCS).
	Workers int
	// ScrapeInterval, ScrapeJitter, Timeout, Classes and PrefillServers
	// are passed to every RunSpec.
	ScrapeInterval, ScrapeJitter, Timeout time.Duration
	Classes                               []Class
	PrefillServers                        int
	// Replication runs every policy as EPP replicas (replicas.go), also
	// passed to every RunSpec.
	Replication
	// Topology places the servers on nodes (topology.go), passed to every
	// RunSpec.
	Topology
	// Progress, when set, is called after each run (from the worker that
	// ran it, serialised).
	Progress func(done, total int, spec RunSpec, res *StageResult)
	// Retry is how every policy's clients answer an eviction (the zero
	// value: they do not retry).
	Retry Retry
	// retry, by policy name, is the clients of a class study's arm
	// (ClassArm), overriding Retry.
	retry map[string]Retry
}

// Run executes the matrix and assembles the report, checks included. The
// first failing run cancels the rest and is returned.
func (m *Matrix) Run(ctx context.Context) (*Report, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	specs := m.specs()
	results := make([]*StageResult, len(specs))
	if err := m.execute(ctx, specs, results); err != nil {
		return nil, err
	}
	rep := m.assemble(results)
	rep.WallSeconds = round3(time.Since(start).Seconds())
	rep.Workers = m.workers()
	rep.Checks = Checks(rep)
	return rep, nil
}

func (m *Matrix) validate() error {
	var errs []error
	if len(m.Workloads) == 0 {
		errs = append(errs, errors.New("matrix: no workloads"))
	}
	if len(m.Policies) == 0 {
		errs = append(errs, errors.New("matrix: no policies"))
	}
	seen := map[string]bool{}
	for _, p := range m.Policies {
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("matrix: policy %q listed twice", p.Name))
		}
		seen[p.Name] = true
		if err := p.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range m.Workloads {
		if err := m.Workloads[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("workload %q: %w", m.Workloads[i].Name, err))
		}
		if n := m.Workloads[i].Servers; m.PrefillServers < 0 || (n > 0 && m.PrefillServers >= n) {
			errs = append(errs, fmt.Errorf("workload %q: prefill servers must be in [0, %d), got %d", m.Workloads[i].Name, n, m.PrefillServers))
		}
	}
	for i := range m.Workloads {
		if err := m.Topology.validate(m.Workloads[i].Servers); err != nil {
			errs = append(errs, fmt.Errorf("workload %q: %w", m.Workloads[i].Name, err))
		}
	}
	if err := m.Replication.validate(); err != nil {
		errs = append(errs, fmt.Errorf("matrix: %w", err))
	}
	if m.Workers < 0 {
		errs = append(errs, fmt.Errorf("matrix: workers must be >= 0, got %d", m.Workers))
	}
	return errors.Join(errs...)
}

func (m *Matrix) seeds() []uint64 {
	if len(m.Seeds) == 0 {
		return []uint64{1}
	}
	return m.Seeds
}

// seedsFor is the matrix's seeds, extended with the following integers up
// to w.MinSeeds.
func (m *Matrix) seedsFor(w Workload) []uint64 {
	out := slices.Clone(m.seeds())
	for next := slices.Max(out) + 1; len(out) < w.MinSeeds; next++ {
		out = append(out, next)
	}
	return out
}

func (m *Matrix) workers() int {
	if m.Workers > 0 {
		return m.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// specs lists the runs in report order: workload, policy, stage, seed.
func (m *Matrix) specs() []RunSpec {
	var out []RunSpec
	for _, w := range m.Workloads {
		for _, p := range m.Policies {
			out = m.ladderSpecs(out, w, p)
		}
	}
	return out
}

// ladderSpecs appends the runs of p's ladder on w: stage, then seed.
func (m *Matrix) ladderSpecs(out []RunSpec, w Workload, p Policy) []RunSpec {
	for _, q := range w.Ladder {
		for _, seed := range m.seedsFor(w) {
			out = append(out, RunSpec{
				Workload: w, Policy: p, QPS: q, Seed: seed, Timeout: m.Timeout,
				ScrapeInterval: m.ScrapeInterval, ScrapeJitter: m.ScrapeJitter, Classes: m.Classes,
				PrefillServers: m.PrefillServers, Replication: m.Replication, Topology: m.Topology, Retry: m.retryOf(p.Name),
			})
		}
	}
	return out
}

// execute runs specs on a pool of workers, filling results by index.
func (m *Matrix) execute(ctx context.Context, specs []RunSpec, results []*StageResult) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		done     int
		firstErr error
	)
	for range min(m.workers(), len(specs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				res, err := Run(ctx, specs[i])
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				results[i] = res
				done++
				if err == nil && m.Progress != nil {
					m.Progress(done, len(specs), specs[i], res)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range specs {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// retryOf is the clients of policy name: its class-study arm's, else Retry.
func (m *Matrix) retryOf(name string) Retry {
	if r, ok := m.retry[name]; ok {
		return r
	}
	return m.Retry
}
