package plugintest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// CostSizes are the candidate-set sizes Cost measures at: the overhead
// benchmark's 10, 100 and 1,000 endpoints.
var CostSizes = []int{10, 100, 1000}

// RefMetric is the unit of the ratio Cost reports: the plugin's time per
// call over the reference scorer's, both measured in the same sub-benchmark.
const RefMetric = "x-ref"

// Cost measures what p costs per decision, for plugin authors: for each
// role p plays (Producer, Filter, Scorer, Picker) and each of sizes
// (CostSizes when none are given), a sub-benchmark "<role>/endpoints=<n>"
// calls that role on n endpoints from Endpoints and req, reporting time and
// allocations per call and, as RefMetric, that time over the reference
// scorer's (queue depth, min-max normalised: upstream's queue-scorer, about
// the cheapest useful scorer) timed for as long (10 ms to 1 s) right after.
// A ratio survives a change of machine where nanoseconds do not; a whole
// default decision (three scorers and the prefix index) is in the tens of
// references.
//
// Each call gets a fresh state, as each request does: time/op includes
// making it, the ratio does not (the state's own time, measured like the
// reference, is subtracted). So a scorer that reads a producer's output
// sees none. A scheduler.Batcher's Produce waits for its window, and that
// is what it measures. Run it from a benchmark:
//
//	func BenchmarkMyScorer(b *testing.B) { plugintest.Cost(b, myScorer, plugintest.Request("m", 1024)) }
//
// and read it with `go test -bench MyScorer -benchmem`.
func Cost(b *testing.B, p scheduler.Plugin, req *scheduler.Request, sizes ...int) {
	roles := costRoles(p)
	if len(roles) == 0 {
		b.Fatalf("%s is none of Producer, Filter, Scorer, Picker: nothing to measure", p.TypedName())
	}
	if len(sizes) == 0 {
		sizes = CostSizes
	}
	for _, r := range roles {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/endpoints=%d", r.name, n), func(b *testing.B) {
				eps := Endpoints(n, 1)
				call := r.bind(req, eps)
				b.ReportAllocs()
				for b.Loop() {
					call(State(1))
				}
				budget := min(max(b.Elapsed(), 10*time.Millisecond), time.Second)
				state := meanTime(budget, func() { stateSink = State(1) })
				out := make([]float64, len(eps))
				ref := meanTime(budget, func() { referenceScore(eps, out) })
				per := max(float64(b.Elapsed())/float64(b.N)-state, 0)
				if ref > 0 {
					b.ReportMetric(per/ref, RefMetric)
				}
			})
		}
	}
}

// Measurable reports whether Cost has something to measure in p.
func Measurable(p scheduler.Plugin) bool { return len(costRoles(p)) > 0 }

// costRole is one interface of the plugin, bound to its inputs by bind.
type costRole struct {
	name string
	bind func(req *scheduler.Request, eps []*endpoint.Endpoint) func(*scheduler.State)
}

func costRoles(p scheduler.Plugin) []costRole {
	ctx := context.Background()
	var roles []costRole
	if pr, ok := p.(scheduler.Producer); ok {
		roles = append(roles, costRole{"producer", func(req *scheduler.Request, eps []*endpoint.Endpoint) func(*scheduler.State) {
			return func(st *scheduler.State) { pr.Produce(ctx, st, req, eps) }
		}})
	}
	if f, ok := p.(scheduler.Filter); ok {
		roles = append(roles, costRole{"filter", func(req *scheduler.Request, eps []*endpoint.Endpoint) func(*scheduler.State) {
			return func(st *scheduler.State) { _ = f.Filter(ctx, st, req, eps) }
		}})
	}
	if s, ok := p.(scheduler.Scorer); ok {
		roles = append(roles, costRole{"scorer", func(req *scheduler.Request, eps []*endpoint.Endpoint) func(*scheduler.State) {
			if w, ok := s.(scheduler.ScoreWriter); ok { // as a profile calls it: into a slice it owns
				out := make([]float64, len(eps))
				return func(st *scheduler.State) {
					clear(out)
					w.ScoreInto(ctx, st, req, eps, out)
				}
			}
			return func(st *scheduler.State) { _ = s.Score(ctx, st, req, eps) }
		}})
	}
	if pk, ok := p.(scheduler.Picker); ok {
		roles = append(roles, costRole{"picker", func(req *scheduler.Request, eps []*endpoint.Endpoint) func(*scheduler.State) {
			scored := scoredOf(eps)
			return func(st *scheduler.State) { _, _ = pk.Pick(ctx, st, req, scored) }
		}})
	}
	return roles
}

// meanTime is fn's mean time per call in nanoseconds, over batches of 100
// calls for at least budget.
func meanTime(budget time.Duration, fn func()) float64 {
	calls := 0
	start := time.Now()
	var elapsed time.Duration
	for elapsed < budget {
		for range 100 {
			fn()
		}
		calls += 100
		elapsed = time.Since(start)
	}
	return float64(elapsed) / float64(calls)
}

// stateSink keeps the states meanTime makes alive.
var stateSink *scheduler.State

// referenceScore is upstream's queue-scorer: 1 for the shortest waiting
// queue, 0 for the longest, linear between, all 1 when they are equal.
func referenceScore(eps []*endpoint.Endpoint, out []float64) {
	lo, hi := int(^uint(0)>>1), -1
	for _, e := range eps {
		q := e.Metrics().WaitingQueueSize
		lo, hi = min(lo, q), max(hi, q)
	}
	for i, e := range eps {
		if hi == lo {
			out[i] = 1
			continue
		}
		out[i] = float64(hi-e.Metrics().WaitingQueueSize) / float64(hi-lo)
	}
}
