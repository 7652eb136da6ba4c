package plugins

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// schedulerFor builds the scheduler of an upstream-style config file; with
// upstreamOnly, OpenEPP's documented extensions of the queue and prefix
// scorers are switched off as --upstream-compatible-scoring does.
func schedulerFor(t *testing.T, path string, upstreamOnly bool, eps []*endpoint.Endpoint) *scheduler.Scheduler {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := InTree()
	cfg, err := config.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	built, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg, Seed: 7, Handle: &scheduler.Handle{
		Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: func() []*endpoint.Endpoint { return eps },
		UpstreamScoring: upstreamOnly, // what --upstream-compatible-scoring sets
	}})
	if err != nil {
		t.Fatal(err)
	}
	return built.Scheduler
}

// upstreamLoadScores is GIE v1.5.0's documented default scoring without a
// prefix hit: 2·(maxQ−q)/(maxQ−minQ) (1 when all equal) + 2·(1−kv).
func upstreamLoadScores(eps []*endpoint.Endpoint) []float64 {
	lo, hi := 1<<30, -1
	for _, e := range eps {
		q := e.Metrics().WaitingQueueSize
		lo, hi = min(lo, q), max(hi, q)
	}
	out := make([]float64, len(eps))
	for i, e := range eps {
		m := e.Metrics()
		qs := 1.0
		if hi > lo {
			qs = float64(hi-m.WaitingQueueSize) / float64(hi-lo)
		}
		out[i] = 2*qs + 2*(1-m.KVCacheUsagePercent)
	}
	return out
}

// openEPPColdScores adds to upstream's load scores the term OpenEPP's
// prefix-cache-scorer documents for cold prompts (weight 3, default
// coldRequestSpread 1): 3·(maxO − o)/(maxO − minO) over the index's
// occupancy o, nothing when all are equal.
func openEPPColdScores(s *scheduler.Scheduler, eps []*endpoint.Endpoint) []float64 {
	out := upstreamLoadScores(eps)
	occ := make([]float64, len(eps))
	for _, p := range s.Plugins() {
		if pr, ok := p.(*prefix.Producer); ok {
			pr.Occupancy(eps, occ)
		}
	}
	lo, hi := slices.Min(occ), slices.Max(occ)
	if hi > lo {
		for i, o := range occ {
			out[i] += 3 * (hi - o) / (hi - lo)
		}
	}
	return out
}

// TestUpstreamConfigsDecideLikeUpstream points the EPP at upstream-style
// config files and checks each decision against the documented formulas:
// a cold prompt goes to the best upstream load score (plus, with OpenEPP's
// extensions on as shipped, the documented cold-request spread, and exactly
// upstream's choice with them switched off); a repeated prompt goes back to
// the endpoint that served it when loads are equal.
func TestUpstreamConfigsDecideLikeUpstream(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"../../config/default.yaml", "../../config/optimized-baseline.yaml"} {
		for _, upstreamOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/upstreamOnly=%v", file, upstreamOnly), func(t *testing.T) {
				checkDecisions(t, file, upstreamOnly)
			})
		}
	}
}

func checkDecisions(t *testing.T, file string, upstreamOnly bool) {
	rnd := rand.New(rand.NewPCG(3, 4))
	eps := plugintest.Endpoints(20, 9)
	s := schedulerFor(t, file, upstreamOnly, eps)
	for i := range 200 {
		for _, e := range eps { // fresh random load for every decision
			e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: rnd.IntN(10), KVCacheUsagePercent: float64(rnd.IntN(5)) / 4,
				UpdateTime: time.Now()})
		}
		ps := prompts(1, 2048)
		ps[0] = withPrompt(ps[0], fmt.Sprintf("cold prompt %d %s", i, ps[0].Prompt))
		want := upstreamLoadScores(eps)
		if !upstreamOnly {
			want = openEPPColdScores(s, eps)
		}
		res, err := decide(s, ps[0], eps)
		if err != nil {
			t.Fatal(err)
		}
		best := slices.Max(want)
		if got := want[slices.Index(eps, res.Targets()[0])]; got != best {
			t.Fatalf("decision %d: picked score %.3f, documented best %.3f", i, got, best)
		}
		for _, e := range eps { // equal load: the prefix hit decides
			e.SetMetrics(&endpoint.Metrics{UpdateTime: time.Now()})
		}
		again, err := decide(s, ps[0], eps)
		if err != nil {
			t.Fatal(err)
		}
		if again.Targets()[0] != res.Targets()[0] {
			t.Fatalf("decision %d: repeated prompt went to %s, not back to %s", i, again.Targets()[0], res.Targets()[0])
		}
	}
}

// withPrompt returns a chat body whose user message is text.
func withPrompt(b *request.Body, text string) *request.Body {
	raw := []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}]}`, b.Model, text))
	out, err := request.Parse(request.ChatCompletions, raw)
	if err != nil {
		panic(err)
	}
	return out
}
