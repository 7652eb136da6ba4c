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
// (CostSizes when none are given), a sub-benchmark "<role>/endpoints=<n>" calls that role on n endpoints from
// Endpoints and req, reporting time and allocations per call and, as
// RefMetric, that time over the reference scorer's (queue depth, min-max
// normalised: upstream's queue-scorer, about the cheapest useful scorer)
// timed for as long (10 ms to 1 s) right after. A ratio survives a change of
// machine where nanoseconds do not; a whole default decision (three
// scorers and the prefix index) is in the tens of references.
//
// One state serves every call of a sub-benchmark, so a producer's output
// stays there for the next call; a scorer that reads a producer's output
// sees none unless p is that producer too. A scheduler.Batcher's Produce
// waits for its window, and that is what it measures. Run it from a
// benchmark:
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
				call := r.bind(State(1), req, eps)
				b.ReportAllocs()
				for b.Loop() {
					call()
				}
				per := float64(b.Elapsed()) / float64(b.N)
				if ref := referenceTime(eps, min(max(b.Elapsed(), 10*time.Millisecond), time.Second)); ref > 0 {
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
	bind func(st *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) func()
}

func costRoles(p scheduler.Plugin) []costRole {
	ctx := context.Background()
	var roles []costRole
	if pr, ok := p.(scheduler.Producer); ok {
		roles = append(roles, costRole{"producer", func(st *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) func() {
			return func() { pr.Produce(ctx, st, req, eps) }
		}})
	}
	if f, ok := p.(scheduler.Filter); ok {
		roles = append(roles, costRole{"filter", func(st *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) func() {
			return func() { _ = f.Filter(ctx, st, req, eps) }
		}})
	}
	if s, ok := p.(scheduler.Scorer); ok {
		roles = append(roles, costRole{"scorer", func(st *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) func() {
			if w, ok := s.(scheduler.ScoreWriter); ok { // as a profile calls it: into a slice it owns
				out := make([]float64, len(eps))
				return func() {
					clear(out)
					w.ScoreInto(ctx, st, req, eps, out)
				}
			}
			return func() { _ = s.Score(ctx, st, req, eps) }
		}})
	}
	if pk, ok := p.(scheduler.Picker); ok {
		roles = append(roles, costRole{"picker", func(st *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) func() {
			scored := scoredOf(eps)
			return func() { _, _ = pk.Pick(ctx, st, req, scored) }
		}})
	}
	return roles
}

// referenceTime is the reference scorer's mean time per call on eps, in
// nanoseconds, over batches of calls for at least budget.
func referenceTime(eps []*endpoint.Endpoint, budget time.Duration) float64 {
	out := make([]float64, len(eps))
	calls := 0
	start := time.Now()
	var elapsed time.Duration
	for elapsed < budget {
		for range 100 {
			referenceScore(eps, out)
		}
		calls += 100
		elapsed = time.Since(start)
	}
	if len(out) > 0 {
		referenceSink += out[0]
	}
	return float64(elapsed) / float64(calls)
}

// referenceSink keeps the reference's results alive.
var referenceSink float64

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
