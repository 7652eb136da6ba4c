package engine

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoRASlotLimitAndLoadDelay(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxLoRAs = 1
	e := newEngine(t, cfg)
	mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 16), MaxTokens: 3, LoRA: "a"}, 0)
	mustSubmit(t, e, Request{ID: 2, Tokens: tokens(2, 16), MaxTokens: 3, LoRA: "b"}, 0)
	mustSubmit(t, e, Request{ID: 3, Tokens: tokens(3, 16), MaxTokens: 3}, 0)
	var events []Event
	events = append(events, e.Step(0)...)
	m := e.Metrics()
	got := [][]string{m.RunningLoRAs, m.WaitingLoRAs, m.LoadedLoRAs}
	if diff := cmp.Diff([][]string{{"a"}, {"b"}, {"a"}}, got); diff != "" {
		t.Fatalf("running, waiting, loaded adapters mismatch (-want +got):\n%s", diff)
	}
	if m.Running != 2 || m.Waiting != 1 {
		t.Fatalf("running=%d waiting=%d; the base request must not queue behind adapter b", m.Running, m.Waiting)
	}
	for {
		next, ok := e.NextEventTime()
		if !ok {
			break
		}
		events = append(events, e.Step(next)...)
	}
	s := summarize(t, events)
	// One step over 32 prompt tokens plus loading a.
	if want := 3*ms + 320*us + 50*ms; s[1].First != want || s[3].First != want {
		t.Fatalf("TTFT of a and base = %v, %v; want %v (load delay in the shared step)", s[1].First, s[3].First, want)
	}
	if gap := s[2].First - s[1].Last; gap < 50*ms {
		t.Fatalf("b's first token %v after a finished; want ≥ the 50ms load", gap)
	}
	// Reusing a resident adapter costs nothing.
	loads := e.Metrics().LoRALoads
	again := summarize(t, simulate(t, e, []arrival{{at: time.Second, req: Request{ID: 4, Tokens: tokens(4, 16), MaxTokens: 1, LoRA: "b"}}}))
	if e.Metrics().LoRALoads != loads || again[4].First-time.Second != 3*ms+160*us {
		t.Fatalf("resident adapter reloaded: loads %d → %d, TTFT %v", loads, e.Metrics().LoRALoads, again[4].First-time.Second)
	}
}

func TestLoRASlotsEvictLRUIdleAdapter(t *testing.T) {
	t.Parallel()
	cfg := testConfig() // two slots
	e := newEngine(t, cfg)
	for i, name := range []string{"a", "b", "a", "c"} {
		simulate(t, e, []arrival{{at: time.Duration(i) * time.Second, req: Request{ID: uint64(i), Tokens: tokens(uint32(i), 8), MaxTokens: 1, LoRA: name}}})
	}
	if diff := cmp.Diff([]string{"a", "c"}, e.Metrics().LoadedLoRAs); diff != "" {
		t.Fatalf("loaded adapters (-want +got):\n%s", diff)
	}
	if got := e.Metrics().LoRALoads; got != 3 {
		t.Fatalf("adapter loads = %d, want 3", got)
	}
}
