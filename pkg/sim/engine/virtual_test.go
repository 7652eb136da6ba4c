package engine

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// shape describes a synthetic workload: n requests at rate per second
// (Poisson), prompts of a shared prefix (one of 16) plus a unique suffix,
// up to 2·out output tokens.
type shape struct {
	seed                uint64
	n                   int
	rate                float64
	prefix, suffix, out int
}

// workload builds the requests of sh; about 3/7 of them use adapters.
func workload(sh shape) []arrival {
	seed, n, rate, prefix, suffix, out := sh.seed, sh.n, sh.rate, sh.prefix, sh.suffix, sh.out
	rng := rand.New(rand.NewPCG(seed, 1))
	const groups = 16
	prefixes := make([][]uint32, groups)
	for g := range prefixes {
		prefixes[g] = tokens(uint32(1000+g), prefix)
	}
	loras := []string{"", "", "", "", "x", "y", "z"}
	var at time.Duration
	reqs := make([]arrival, n)
	for i := range reqs {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		reqs[i] = arrival{at: at, req: Request{
			ID:        uint64(i),
			Tokens:    withPrefix(prefixes[rng.IntN(groups)], uint32(i), suffix),
			MaxTokens: 1 + rng.IntN(2*out),
			LoRA:      loras[rng.IntN(len(loras))],
		}}
	}
	return reqs
}

func TestDeterministicForSeed(t *testing.T) {
	t.Parallel()
	run := func(seed uint64) []Event {
		cfg, err := Profile("blis-l8b-h100")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Jitter, cfg.Seed, cfg.NumBlocks, cfg.MaxLoRAs = 0.2, seed, 2000, 2
		return simulate(t, newEngine(t, cfg), workload(shape{seed: 3, n: 300, rate: 40, prefix: 512, suffix: 128, out: 64}))
	}
	a, b := run(1), run(1)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same seed, different timelines:\n%s", diff)
	}
	if cmp.Equal(a, run(2)) {
		t.Fatal("different jitter seeds gave identical timelines")
	}
	if got := len(summarize(t, a)); got != 300 {
		t.Fatalf("%d of 300 requests produced tokens", got)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, name := range ProfileNames() {
		cfg, err := Profile(name)
		if err != nil {
			t.Fatalf("Profile(%q): %v", name, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("profile %q invalid: %v", name, err)
		}
	}
	if _, err := Profile("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Profile(nope) error = %v", err)
	}
	bad := Config{MaxNumSeqs: 0, MaxNumBatchedTokens: -1, NumBlocks: 0, BlockSize: 0, StepOverhead: -1, LoadFactor: 0.5, MaxLoRAs: -1, Jitter: 1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, field := range []string{"maxNumSeqs", "maxNumBatchedTokens", "numBlocks", "blockSize", "stepOverhead", "loadFactor", "maxLoras", "jitter"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not mention %s: %v", field, err)
		}
	}
	if _, err := New(bad); err == nil {
		t.Error("New accepted an invalid config")
	}
}

func TestSteadyStateAllocations(t *testing.T) {
	cfg, _ := Profile("blis-l8b-h100")
	e := newEngine(t, cfg)
	reqs := workload(shape{seed: 5, n: 100, rate: 50, prefix: 256, suffix: 64, out: 32})
	shifted := make([]arrival, len(reqs))
	var base time.Duration
	runBatch := func() {
		for i, a := range reqs {
			a.at += base
			shifted[i] = a
		}
		simulateNoCheck(e, shifted)
		base = shifted[len(shifted)-1].at + time.Minute
	}
	runBatch() // warm up slots, maps and slices
	allocs := testing.AllocsPerRun(5, runBatch)
	if perReq := allocs / float64(len(reqs)); perReq > 1 {
		t.Fatalf("%.2f allocations per request in steady state, want ≤ 1", perReq)
	}
}

// simulateNoCheck is simulate without testing.TB, for allocation counts.
func simulateNoCheck(e *Engine, arrivals []arrival) {
	for {
		next, busy := e.NextEventTime()
		if len(arrivals) > 0 && (!busy || arrivals[0].at <= next) {
			_ = e.Submit(arrivals[0].req, arrivals[0].at)
			arrivals = arrivals[1:]
			continue
		}
		if !busy {
			return
		}
		e.Step(next)
	}
}

// BenchmarkVirtualTime reports how many requests per wall-clock second one
// engine simulates: Llama-8B/H100 parameters, 1,000 requests at 20 QPS
// (about 50 virtual seconds), 1k-token shared prefixes, ~100 output tokens.
func BenchmarkVirtualTime(b *testing.B) { benchVirtualTime(b, nil) }

// benchVirtualTime runs BenchmarkVirtualTime's workload with listener
// (nil: none) attached to every engine.
func benchVirtualTime(b *testing.B, listener KVEventListener) {
	cfg, _ := Profile("blis-l8b-h100")
	cfg.MaxLoRAs = 3
	reqs := workload(shape{seed: 7, n: 1000, rate: 20, prefix: 1024, suffix: 256, out: 100})
	b.ReportAllocs()
	for b.Loop() {
		e, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if listener != nil {
			e.SetKVEventListener(listener)
		}
		simulateNoCheck(e, reqs)
		if m := e.Metrics(); m.Finished != uint64(len(reqs)) {
			b.Fatalf("finished %d of %d", m.Finished, len(reqs))
		}
	}
	elapsed := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N*len(reqs))/elapsed, "req/s")
	b.ReportMetric(float64(reqs[len(reqs)-1].at.Seconds())*float64(b.N)/elapsed, "virtual-s/s")
}
