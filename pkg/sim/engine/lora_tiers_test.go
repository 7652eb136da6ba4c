package engine

import (
	"errors"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// tieredConfig has one GPU slot behind a host cache of two, a 50ms load and
// a 5ms activation.
func tieredConfig() Config {
	cfg := testConfig()
	cfg.MaxLoRAs, cfg.MaxCPULoRAs, cfg.LoRAActivateDelay = 1, 2, 5*ms
	return cfg
}

// ttftAt runs one 16-token request for adapter lora at time at and returns
// its time to first token.
func ttftAt(t *testing.T, e *Engine, id uint64, at time.Duration, lora string) time.Duration {
	t.Helper()
	s := summarize(t, simulate(t, e, []arrival{{at: at, req: Request{ID: id, Tokens: tokens(uint32(id), 16), MaxTokens: 1, LoRA: lora}}}))
	return s[id].First - at
}

// prefill16 is an unloaded 16-token prefill under testConfig.
const prefill16 = 3*ms + 160*us

// approx compares float seconds summed from durations.
var approx = cmpopts.EquateApprox(0, 1e-12)

func TestLoRATiersCostAndResidency(t *testing.T) {
	t.Parallel()
	e := newEngine(t, tieredConfig())
	steps := []struct {
		lora string
		want time.Duration
	}{
		{"a", prefill16 + 55*ms}, // resident nowhere: load + activate
		{"b", prefill16 + 55*ms}, // a leaves its slot, stays on the host
		{"a", prefill16 + 5*ms},  // host hit: activation only
		{"a", prefill16},         // on the GPU: free
	}
	for k, st := range steps {
		if got := ttftAt(t, e, uint64(k), time.Duration(k)*time.Second, st.lora); got != st.want {
			t.Errorf("request %d for %q: TTFT %v, want %v", k, st.lora, got, st.want)
		}
	}
	m := e.Metrics()
	want := Metrics{
		LoadedLoRAs:   []string{"a"},
		LoRAResidency: []LoRAState{{Name: "a", OnGPU: true}, {Name: "b"}},
		LoRALoads:     3,
		LoRALoad:      TransitionStats{Count: 2, Seconds: 0.1},
		LoRAActivate:  TransitionStats{Count: 3, Seconds: 0.015},
	}
	got := Metrics{LoadedLoRAs: m.LoadedLoRAs, LoRAResidency: m.LoRAResidency, LoRALoads: m.LoRALoads, LoRALoad: m.LoRALoad, LoRAActivate: m.LoRAActivate}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Fatalf("adapter metrics (-want +got):\n%s", diff)
	}
}

func TestLoRAHostCacheEvictsOnlyIdleTier(t *testing.T) {
	t.Parallel()
	cfg := tieredConfig()
	cfg.MaxLoRAs, cfg.MaxCPULoRAs = 2, 3
	e := newEngine(t, cfg)
	// a runs throughout, so it keeps its slot and the oldest use; b, c and
	// d take turns in the other slot. When d needs the host cache (a, b, c),
	// the least recently used adapter off the GPU is b, not a.
	arrivals := []arrival{{req: Request{ID: 0, Tokens: tokens(0, 16), MaxTokens: 2000, LoRA: "a"}}}
	for k, name := range []string{"b", "c", "d"} {
		at := time.Duration(k+1) * 100 * ms
		arrivals = append(arrivals, arrival{at: at, req: Request{ID: uint64(k + 1), Tokens: tokens(uint32(k+1), 16), MaxTokens: 1, LoRA: name}})
	}
	simulate(t, e, arrivals)
	want := []LoRAState{{Name: "a", OnGPU: true}, {Name: "c"}, {Name: "d", OnGPU: true}}
	if diff := cmp.Diff(want, e.Metrics().LoRAResidency); diff != "" {
		t.Fatalf("residency (-want +got):\n%s", diff)
	}
}

func TestLoRAPinnedNeverEvicted(t *testing.T) {
	t.Parallel()
	cfg := testConfig() // two slots, host cache of two
	cfg.PinnedLoRAs = []string{"p"}
	e := newEngine(t, cfg)
	if diff := cmp.Diff([]LoRAState{{Name: "p", OnGPU: true, Pinned: true}}, e.Metrics().LoRAResidency); diff != "" {
		t.Fatalf("residency at start (-want +got):\n%s", diff)
	}
	if got := ttftAt(t, e, 0, 0, "p"); got != prefill16 {
		t.Errorf("pinned adapter TTFT %v, want %v (resident from the start)", got, prefill16)
	}
	for k, name := range []string{"a", "b", "c", "a"} {
		if got := ttftAt(t, e, uint64(k+1), time.Duration(k+1)*time.Second, name); got != prefill16+50*ms {
			t.Errorf("request for %q: TTFT %v, want a load in the one unpinned slot", name, got)
		}
	}
	want := []LoRAState{{Name: "a", OnGPU: true}, {Name: "p", OnGPU: true, Pinned: true}}
	if diff := cmp.Diff(want, e.Metrics().LoRAResidency); diff != "" {
		t.Fatalf("residency (-want +got):\n%s", diff)
	}
	if got := ttftAt(t, e, 9, 9*time.Second, "p"); got != prefill16 {
		t.Errorf("pinned adapter TTFT %v after the churn, want %v", got, prefill16)
	}
}

func TestLoRAPinnedAllSlots(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.PinnedLoRAs = []string{"p", "q"}
	e := newEngine(t, cfg)
	err := e.Submit(Request{ID: 1, Tokens: tokens(1, 16), MaxTokens: 1, LoRA: "x"}, 0)
	if !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("Submit for an unpinned adapter with every slot pinned: %v, want ErrInvalidRequest", err)
	}
	if err := e.Submit(Request{ID: 2, Tokens: tokens(2, 16), MaxTokens: 1, LoRA: "q"}, 0); err != nil {
		t.Fatalf("Submit for a pinned adapter: %v", err)
	}
}

func TestLoRAPreload(t *testing.T) {
	t.Parallel()
	e := newEngine(t, tieredConfig())
	if n := e.PreloadLoRAs([]string{"a", "b", "c"}); n != 2 {
		t.Fatalf("PreloadLoRAs loaded %d, want 2 (the host cache holds two)", n)
	}
	if diff := cmp.Diff([]LoRAState{{Name: "a"}, {Name: "b"}}, e.Metrics().LoRAResidency); diff != "" {
		t.Fatalf("residency after preload (-want +got):\n%s", diff)
	}
	if got := ttftAt(t, e, 1, 0, "b"); got != prefill16+5*ms {
		t.Errorf("preloaded adapter TTFT %v, want activation only (%v)", got, prefill16+5*ms)
	}
	if m := e.Metrics(); m.LoRALoad.Count != 0 || m.LoRAActivate.Count != 1 {
		t.Errorf("transitions load %+v activate %+v, want 0 loads and 1 activation", m.LoRALoad, m.LoRAActivate)
	}
	off := testConfig()
	off.MaxLoRAs, off.MaxCPULoRAs = 0, 4
	if n := newEngine(t, off).PreloadLoRAs([]string{"a"}); n != 0 {
		t.Errorf("PreloadLoRAs without LoRA loaded %d", n)
	}
}

func TestLoRAConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{name: "cpu below gpu", edit: func(c *Config) { c.MaxCPULoRAs = 1 }, want: "maxCpuLoras"},
		{name: "negative cpu", edit: func(c *Config) { c.MaxCPULoRAs = -1 }, want: "maxCpuLoras"},
		{name: "negative activate", edit: func(c *Config) { c.LoRAActivateDelay = -ms }, want: "loraActivateDelay"},
		{name: "too many pinned", edit: func(c *Config) { c.PinnedLoRAs = []string{"a", "b", "c"} }, want: "pinnedLoras: 3 adapters"},
		{name: "pinned twice", edit: func(c *Config) { c.PinnedLoRAs = []string{"a", "a"} }, want: `pinnedLoras[1]: "a" pinned twice`},
		{name: "pinned empty", edit: func(c *Config) { c.PinnedLoRAs = []string{""} }, want: "pinnedLoras[0]: empty"},
	} {
		cfg := testConfig()
		tc.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// loraWorkload is a seeded mix of 12 adapters and the base model over three
// slots, busy enough that adapters wait for slots and evict one another.
func loraWorkload() []arrival {
	rng := rand.New(rand.NewPCG(7, 11))
	var out []arrival
	at := time.Duration(0)
	for i := range 400 {
		at += time.Duration(rng.IntN(4000)) * us
		lora := ""
		if k := rng.IntN(13); k < 12 {
			lora = string(rune('a' + k))
		}
		out = append(out, arrival{at: at, req: Request{
			ID: uint64(i), Tokens: tokens(uint32(i%50), 16+rng.IntN(200)), MaxTokens: 1 + rng.IntN(40), LoRA: lora,
		}})
	}
	return out
}

// digest hashes a run's token events and adapter counters.
func digest(events []Event, m Metrics) uint64 {
	h := fnv.New64a()
	var b [8]byte
	put := func(v uint64) {
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		h.Write(b[:])
	}
	for _, ev := range events {
		put(ev.ID)
		put(uint64(ev.Time))
		put(uint64(ev.Token))
	}
	put(m.LoRALoads)
	h.Write([]byte(strings.Join(m.LoadedLoRAs, ",")))
	return h.Sum64()
}

// TestLoRADefaultTiersUnchanged pins the single-tier timeline: without
// MaxCPULoRAs and LoRAActivateDelay (or with a host cache no larger than
// the slots) the engine must run exactly as before the host cache existed.
// The digest was recorded with the single-tier engine.
func TestLoRADefaultTiersUnchanged(t *testing.T) {
	t.Parallel()
	const want = 0xc54cbf30d72b566b
	for _, cpu := range []int{0, 3} {
		cfg := testConfig()
		cfg.MaxLoRAs, cfg.MaxCPULoRAs = 3, cpu
		e := newEngine(t, cfg)
		events := simulate(t, e, loraWorkload())
		m := e.Metrics()
		if got := digest(events, m); got != want {
			t.Errorf("maxCPULoRAs=%d: timeline digest %#x, want %#x", cpu, got, uint64(want))
		}
		if m.LoRALoad.Count != m.LoRALoads || m.LoRAActivate.Count != m.LoRALoads ||
			math.Abs(m.LoRALoad.Seconds-float64(m.LoRALoads)*0.05) > 1e-9 || m.LoRAActivate.Seconds != 0 {
			t.Errorf("maxCPULoRAs=%d: loads %d, transitions load %+v activate %+v", cpu, m.LoRALoads, m.LoRALoad, m.LoRAActivate)
		}
		if len(m.LoRAResidency) != len(m.LoadedLoRAs) {
			t.Errorf("maxCPULoRAs=%d: host cache %v holds more than the GPU slots %v", cpu, m.LoRAResidency, m.LoadedLoRAs)
		}
	}
}

func TestLoRALoadAndUnloadByAPI(t *testing.T) {
	t.Parallel()
	e := newEngine(t, tieredConfig()) // one slot, host cache of two, load 50ms, activation 5ms
	if !e.LoadLoRA("a", time.Second) {
		t.Fatal("LoadLoRA(a) into an empty cache: false")
	}
	if e.LoadLoRA("a", time.Second) {
		t.Error("LoadLoRA(a) again: true, want false (already resident)")
	}
	// The load holds the loop for 50ms: a request arriving with it waits for
	// it, then pays the activation only.
	if got, want := ttftAt(t, e, 1, time.Second, "a"), 50*ms+5*ms+prefill16; got != want {
		t.Errorf("TTFT right after the load: %v, want %v", got, want)
	}
	if !e.LoadLoRA("b", 2*time.Second) {
		t.Fatal("LoadLoRA(b) into the cache's free place: false")
	}
	// The cache (a on the GPU, b) is full: c evicts b, the least recently
	// used adapter off the GPU; d then finds only a (on the GPU) and c.
	if !e.LoadLoRA("c", 3*time.Second) {
		t.Fatal("LoadLoRA(c) into a full cache: false, want b evicted")
	}
	want := []LoRAState{{Name: "a", OnGPU: true}, {Name: "c"}}
	if diff := cmp.Diff(want, e.Metrics().LoRAResidency); diff != "" {
		t.Fatalf("residency after loading c (-want +got):\n%s", diff)
	}
	if !e.UnloadLoRA("a") || e.UnloadLoRA("a") || e.UnloadLoRA("never") {
		t.Error("UnloadLoRA reports resident adapters only once")
	}
	if diff := cmp.Diff([]LoRAState{{Name: "c"}}, e.Metrics().LoRAResidency); diff != "" {
		t.Fatalf("residency after unloading a (-want +got):\n%s", diff)
	}
	if got, want := ttftAt(t, e, 2, 4*time.Second, "a"), 55*ms+prefill16; got != want {
		t.Errorf("TTFT after unloading: %v, want a load and an activation (%v)", got, want)
	}
	m := e.Metrics()
	if m.LoRALoad.Count != 4 || m.LoRAActivate.Count != 2 {
		t.Errorf("transitions: %d loads, %d activations; want 4 (three by the API, one by a request) and 2", m.LoRALoad.Count, m.LoRAActivate.Count)
	}
}

func TestLoRALoadWithEveryCachedAdapterBusy(t *testing.T) {
	t.Parallel()
	cfg := testConfig() // two slots, host cache of two
	cfg.PinnedLoRAs = []string{"p", "q"}
	e := newEngine(t, cfg)
	if e.LoadLoRA("x", 0) {
		t.Fatal("LoadLoRA with a cache of pinned adapters: true, want false")
	}
	if !e.UnloadLoRA("q") || !e.LoadLoRA("x", 0) {
		t.Fatal("unloading a pinned adapter frees its place for a load")
	}
	want := []LoRAState{{Name: "p", OnGPU: true, Pinned: true}, {Name: "x"}}
	if diff := cmp.Diff(want, e.Metrics().LoRAResidency); diff != "" {
		t.Fatalf("residency (-want +got):\n%s", diff)
	}
	cfg = testConfig()
	cfg.MaxLoRAs = 0
	off := newEngine(t, cfg)
	if off.LoadLoRA("x", 0) {
		t.Error("LoadLoRA on an engine without LoRA: true")
	}
}
