package sim

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim/engine"
)

func TestLatencyMapping(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	fast, _ := engine.Profile("fast")
	tests := []struct {
		name    string
		profile string
		latency Latency
		want    func(c *engine.Config)
	}{
		{name: "profile as is", want: func(*engine.Config) {}},
		{name: "itl is the base step", latency: Latency{InterTokenLatency: Ptr(7 * ms)},
			want: func(c *engine.Config) { c.StepOverhead = 7 * ms }},
		{name: "constant ttft", latency: Latency{TimeToFirstToken: Ptr(100 * ms), InterTokenLatency: Ptr(10 * ms)},
			want: func(c *engine.Config) { c.StepOverhead, c.PrefillOverhead, c.PrefillPerToken = 10*ms, 90*ms, 0 }},
		{name: "per-token mode", latency: Latency{PrefillOverhead: Ptr(30 * ms), PrefillTimePerToken: Ptr(250 * time.Microsecond), InterTokenLatency: Ptr(12 * ms)},
			want: func(c *engine.Config) {
				c.StepOverhead, c.PrefillOverhead, c.PrefillPerToken = 12*ms, 18*ms, 250*time.Microsecond
			}},
		{name: "overhead below itl clamps", latency: Latency{PrefillOverhead: Ptr(ms), InterTokenLatency: Ptr(5 * ms)},
			want: func(c *engine.Config) { c.StepOverhead, c.PrefillOverhead = 5*ms, 0 }},
		{name: "load factor, lora delay, jitter", latency: Latency{TimeFactorUnderLoad: Ptr(2.5), LoRALoadDelay: Ptr(200 * ms), Jitter: Ptr(0.1)},
			want: func(c *engine.Config) { c.LoadFactor, c.LoRALoadDelay, c.Jitter = 2.5, 200*ms, 0.1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Config{Profile: tc.profile, Latency: tc.latency}.engineConfig()
			if err != nil {
				t.Fatal(err)
			}
			want := fast
			tc.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("engine config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCapacityAndProfile(t *testing.T) {
	t.Parallel()
	got, err := Config{Profile: "blis-l8b-h100", Model: "m", Seed: 9, SchedulingPolicy: "priority", Capacity: Capacity{
		MaxNumSeqs: 512, KVCacheBlocks: 100, BlockSize: 32, MaxLoRAs: 4, MaxModelLen: 2048, MaxWaiting: 10,
	}}.engineConfig()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := engine.Profile("blis-l8b-h100")
	want.Model, want.Seed, want.Policy = "m", 9, engine.Priority
	want.MaxNumSeqs, want.MaxNumBatchedTokens = 512, 8192
	want.NumBlocks, want.BlockSize, want.MaxLoRAs, want.MaxModelLen, want.MaxWaiting = 100, 32, 4, 2048, 10
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("engine config (-want +got):\n%s", diff)
	}
	// Raising max-num-seqs above the token budget raises the budget.
	got, err = Config{Capacity: Capacity{MaxNumSeqs: 10000}}.engineConfig()
	if err != nil || got.MaxNumBatchedTokens != 10000 {
		t.Fatalf("budget = %d, err %v; want 10000", got.MaxNumBatchedTokens, err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{name: "everything wrong", cfg: Config{
			Address: "localhost", Port: 70000, MetricsEngine: "tgi", DefaultMaxTokens: -1, Profile: "nope",
			Model: "bad\xff", ServedModelNames: []string{"a", ""}, LoRAs: []string{"a"},
			Latency: Latency{InterTokenLatency: Ptr(-time.Second)}, Faults: Faults{MetricsStatus: 1},
		}, want: []string{"address:", "port:", "metricsEngine:", "defaultMaxTokens:", "profile:", "model:",
			"servedModelNames[1]", `loras[0]: "a" already used in servedModelNames`, "latency:", "faults:"}},
		{name: "adapters without slots", cfg: Config{LoRAs: []string{"x"}, Tune: func(c *engine.Config) { c.MaxLoRAs = 0 }},
			want: []string{"max-loras is 0"}},
		{name: "lora tiers", cfg: Config{LoRAs: []string{"x"}, PinnedLoRAs: []string{"y"},
			Capacity: Capacity{MaxLoRAs: 2, MaxCPULoRAs: 1}, Latency: Latency{LoRAActivateDelay: Ptr(-time.Second)}},
			want: []string{`pinnedLoras[0]: "y" is not among the served adapters`, "maxCpuLoras: must be 0 (same as maxLoras) or ≥ maxLoras (2), got 1",
				"loraActivateDelay: must be ≥ 0"}},
		{name: "engine validation", cfg: Config{Capacity: Capacity{BlockSize: -3}}, want: []string{"blockSize:"}},
		{name: "scheduling policy", cfg: Config{SchedulingPolicy: "lifo", Capacity: Capacity{BlockSize: -3}},
			want: []string{`schedulingPolicy: unknown scheduling policy "lifo" (known: fcfs, priority)`, "blockSize:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			if err == nil {
				t.Fatal("New accepted an invalid config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoopbackAddressesAndLifecycle(t *testing.T) {
	t.Parallel()
	a := start(t, Config{Address: "127.0.0.2"})
	b, err := New(Config{Address: "127.0.0.3", Port: a.Port()})
	if err != nil {
		t.Fatalf("same port on another loopback address: %v", err)
	}
	if _, err := New(Config{Address: "127.0.0.2", Port: a.Port()}); err == nil {
		t.Fatal("binding a taken address succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, func() bool {
		resp, err := http.Get(b.URL() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	if !strings.HasPrefix(b.HostPort(), "127.0.0.3:") {
		t.Fatalf("HostPort = %q", b.HostPort())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
	if err := b.SetFaults(Faults{}); err == nil {
		t.Fatal("SetFaults on a stopped instance succeeded")
	}
}
