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
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// schedulerFor builds the scheduler of an upstream-style config file.
func schedulerFor(t *testing.T, path string, eps []*endpoint.Endpoint) *scheduler.Scheduler {
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

// TestUpstreamConfigsDecideLikeUpstream points the EPP at upstream-style
// config files and checks each decision against the documented upstream
// formulas: cold prompts go to the best load score; a repeated prompt goes
// back to the endpoint that served it when loads are equal.
func TestUpstreamConfigsDecideLikeUpstream(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"../../config/default.yaml", "../../config/optimized-baseline.yaml"} {
		t.Run(file, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(3, 4))
			eps := plugintest.Endpoints(20, 9)
			s := schedulerFor(t, file, eps)
			for i := range 200 {
				for _, e := range eps { // fresh random load for every decision
					e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: rnd.IntN(10), KVCacheUsagePercent: float64(rnd.IntN(5)) / 4,
						UpdateTime: time.Now()})
				}
				ps := prompts(1, 2048)
				ps[0] = withPrompt(ps[0], fmt.Sprintf("cold prompt %d %s", i, ps[0].Prompt))
				res, err := decide(s, ps[0], eps)
				if err != nil {
					t.Fatal(err)
				}
				want := upstreamLoadScores(eps)
				best := slices.Max(want)
				if got := want[slices.Index(eps, res.Targets()[0])]; got != best {
					t.Fatalf("decision %d: picked score %.3f, upstream best %.3f", i, got, best)
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
		})
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
