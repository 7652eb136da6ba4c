package engine

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// firstTokenOrder returns the request IDs in the order of their first
// tokens.
func firstTokenOrder(events []Event) []uint64 {
	var ids []uint64
	for _, ev := range events {
		if ev.Token == 1 {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// doneOrder returns the request IDs in the order they finished.
func doneOrder(events []Event) []uint64 {
	var ids []uint64
	for _, ev := range events {
		if ev.Done {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

func TestPriorityOrdersTheQueue(t *testing.T) {
	t.Parallel()
	// Request 1 runs alone (max-num-seqs 1) while 2..5 queue behind it;
	// though the least urgent, it keeps its seat.
	arrivals := []arrival{
		{at: 0, req: Request{ID: 1, Tokens: tokens(1, 32), MaxTokens: 10, Priority: 9}},
		{at: ms, req: Request{ID: 2, Tokens: tokens(2, 32), MaxTokens: 2, Priority: 5}},
		{at: 2 * ms, req: Request{ID: 3, Tokens: tokens(3, 32), MaxTokens: 2, Priority: 5}},
		{at: 3 * ms, req: Request{ID: 4, Tokens: tokens(4, 32), MaxTokens: 2, Priority: 0}},
		{at: 4 * ms, req: Request{ID: 5, Tokens: tokens(5, 32), MaxTokens: 2, Priority: -3}},
	}
	tests := []struct {
		name   string
		policy Policy
		want   []uint64
	}{
		{name: "fcfs ignores priority", policy: FCFS, want: []uint64{1, 2, 3, 4, 5}},
		{name: "priority: lower first, then arrival", policy: Priority, want: []uint64{1, 5, 4, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.MaxNumSeqs, cfg.Policy = 1, tc.policy
			events := simulate(t, newEngine(t, cfg), arrivals)
			if diff := cmp.Diff(tc.want, firstTokenOrder(events)); diff != "" {
				t.Fatalf("start order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, doneOrder(events)); diff != "" {
				t.Fatalf("finish order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFCFSIgnoresPriority(t *testing.T) {
	t.Parallel()
	reqs := workload(shape{seed: 3, n: 200, rate: 400, prefix: 64, suffix: 64, out: 24})
	cfg := testConfig()
	cfg.MaxNumSeqs, cfg.NumBlocks = 4, 60 // queueing and preemptions
	plain := simulate(t, newEngine(t, cfg), reqs)
	prioritized := slices.Clone(reqs)
	for i := range prioritized {
		prioritized[i].req.Priority = int(i*7919) % 11
	}
	if diff := cmp.Diff(plain, simulate(t, newEngine(t, cfg), prioritized)); diff != "" {
		t.Fatalf("FCFS timeline changed with priorities (-without +with):\n%s", diff)
	}
}

func TestPriorityPreemptsLeastUrgentNewest(t *testing.T) {
	t.Parallel()
	// Three 8-token prompts (2 blocks of 4) all start; each grows to 5
	// blocks, but the cache has 9, so decodes preempt.
	reqs := []Request{
		{ID: 1, Tokens: tokens(1, 8), MaxTokens: 12, Priority: 0},
		{ID: 2, Tokens: tokens(2, 8), MaxTokens: 12, Priority: 9},
		{ID: 3, Tokens: tokens(3, 8), MaxTokens: 12, Priority: 0},
	}
	tests := []struct {
		name       string
		policy     Policy
		wantVictim uint64
		wantDone   []uint64
	}{
		// FCFS preempts the last started (3); Priority the least urgent (2).
		{name: "fcfs", policy: FCFS, wantVictim: 3, wantDone: []uint64{1, 2, 3}},
		{name: "priority", policy: Priority, wantVictim: 2, wantDone: []uint64{1, 3, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.NumBlocks, cfg.BlockSize, cfg.Policy = 9, 4, tc.policy
			e := newEngine(t, cfg)
			for _, r := range reqs {
				mustSubmit(t, e, r, 0)
			}
			var events []Event
			for e.Metrics().Preemptions == 0 {
				next, ok := e.NextEventTime()
				if !ok {
					t.Fatal("drained without a preemption")
				}
				events = append(events, e.Step(next)...)
			}
			if got := waitingIDs(e); !slices.Equal(got, []uint64{tc.wantVictim}) {
				t.Fatalf("waiting after the first preemption = %v, want [%d]", got, tc.wantVictim)
			}
			checkCounts(t, e)
			events = append(events, drain(t, e)...)
			if diff := cmp.Diff(tc.wantDone, doneOrder(events)); diff != "" {
				t.Fatalf("finish order (-want +got):\n%s", diff)
			}
			if got := summarize(t, events); got[1].Tokens+got[2].Tokens+got[3].Tokens != 36 {
				t.Fatalf("tokens = %+v, want 12 each", got)
			}
		})
	}
}

func TestPriorityAdmissionNeverPreempts(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.NumBlocks, cfg.BlockSize, cfg.Policy = 10, 4, Priority
	e := newEngine(t, cfg)
	mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 28), MaxTokens: 8, Priority: 9}, 0) // 7 blocks, grows to 9
	e.Step(0)
	mustSubmit(t, e, Request{ID: 2, Tokens: tokens(2, 16), MaxTokens: 1, Priority: -9}, us) // needs 4
	mustSubmit(t, e, Request{ID: 3, Tokens: tokens(3, 4), MaxTokens: 1, Priority: 0}, us)   // needs 1, behind 2
	events := drain(t, e)
	if diff := cmp.Diff([]uint64{1, 2, 3}, doneOrder(events)); diff != "" {
		t.Fatalf("finish order (-want +got):\n%s", diff)
	}
	if m := e.Metrics(); m.Preemptions != 0 {
		t.Fatalf("%d preemptions; admission must wait for blocks instead", m.Preemptions)
	}
}

func TestPriorityCancelQueued(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxNumSeqs, cfg.Policy = 1, Priority
	e := newEngine(t, cfg)
	mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 32), MaxTokens: 5}, 0)
	e.Step(0) // 1 runs
	mustSubmit(t, e, Request{ID: 2, Tokens: tokens(2, 32), MaxTokens: 2, Priority: 3}, us)
	mustSubmit(t, e, Request{ID: 3, Tokens: tokens(3, 32), MaxTokens: 2, Priority: -1}, us)
	mustSubmit(t, e, Request{ID: 4, Tokens: tokens(4, 32), MaxTokens: 2, Priority: 1}, us)
	if !e.Cancel(3) {
		t.Fatal("Cancel of a queued request returned false")
	}
	checkCounts(t, e)
	if got := [2]int{e.Running(), e.Waiting()}; got != [2]int{1, 2} {
		t.Fatalf("running, waiting = %v, want [1 2]", got)
	}
	events := drain(t, e)
	if diff := cmp.Diff([]uint64{1, 4, 2}, firstTokenOrder(events)); diff != "" {
		t.Fatalf("start order after cancelling the most urgent (-want +got):\n%s", diff)
	}
	m := e.Metrics()
	if m.Cancelled != 1 || m.Finished != 3 || m.Waiting != 0 || m.Running != 0 || m.UsedBlocks != 0 {
		t.Fatalf("after drain: %+v", m)
	}
	mustSubmit(t, e, Request{ID: 3, Tokens: tokens(3, 32), MaxTokens: 1, Priority: -1}, time.Second)
}

// TestPriorityInvariants drives a prioritized engine through queueing,
// preemptions, LoRA skips, KV transfers and cancellations, checking after
// every call that the counts agree with the requests held and the running
// sequences stay in rank order.
func TestPriorityInvariants(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxNumSeqs, cfg.NumBlocks, cfg.BlockSize, cfg.MaxLoRAs = 4, 40, 8, 1
	cfg.Policy = Priority
	e := newEngine(t, cfg)
	rng := rand.New(rand.NewPCG(7, 7))
	now := time.Duration(0)
	for id := uint64(1); id <= 300; id++ {
		r := Request{ID: id, Tokens: tokens(uint32(id), 8+rng.IntN(40)), MaxTokens: 1 + rng.IntN(60),
			Priority: rng.IntN(5) - 2, RemotePrefill: rng.IntN(8) == 0}
		if rng.IntN(4) == 0 {
			r.LoRA = []string{"a", "b"}[rng.IntN(2)]
		}
		mustSubmit(t, e, r, now)
		checkCounts(t, e)
		if rng.IntN(6) == 0 {
			e.Cancel(id - uint64(rng.IntN(int(id))))
			checkCounts(t, e)
		}
		now += time.Duration(rng.IntN(1500)) * us
		for next, ok := e.NextEventTime(); ok && next <= now; next, ok = e.NextEventTime() {
			e.Step(next)
			checkCounts(t, e)
		}
	}
	drain(t, e)
	m := e.Metrics()
	if m.Preemptions == 0 || m.Cancelled == 0 || m.KVTransfers == 0 {
		t.Fatalf("workload did not exercise preemption, cancellation and transfers: %+v", m)
	}
	if m.Finished+m.Cancelled != 300 || m.UsedBlocks != 0 || m.Waiting != 0 || m.Running != 0 {
		t.Fatalf("after drain: %+v", m)
	}
}

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{FCFS, Priority} {
		got, err := ParsePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	if _, err := ParsePolicy("lifo"); err == nil || !strings.Contains(err.Error(), `"lifo"`) {
		t.Errorf("ParsePolicy(lifo) error = %v", err)
	}
	cfg := testConfig()
	cfg.Policy = 7
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "policy:") {
		t.Errorf("Validate with policy 7: %v", err)
	}
}

// drain steps e until it holds nothing and returns the events.
func drain(t *testing.T, e *Engine) []Event {
	t.Helper()
	var events []Event
	for steps := 0; ; steps++ {
		if steps > 1_000_000 {
			t.Fatal("engine did not drain")
		}
		next, ok := e.NextEventTime()
		if !ok {
			return events
		}
		events = append(events, e.Step(next)...)
		checkCounts(t, e)
	}
}

// checkCounts verifies the engine's bookkeeping: every request held is
// counted once as running or waiting, at most MaxNumSeqs run, and under
// Priority the running sequences are in rank order.
func checkCounts(t *testing.T, e *Engine) {
	t.Helper()
	if held := len(e.byID); e.Running()+e.Waiting() != held {
		t.Fatalf("running %d + waiting %d != %d requests held", e.Running(), e.Waiting(), held)
	}
	if e.Running() > e.cfg.MaxNumSeqs {
		t.Fatalf("%d running > max-num-seqs %d", e.Running(), e.cfg.MaxNumSeqs)
	}
	if e.cfg.Policy == Priority && !slices.IsSortedFunc(e.running, func(a, b int32) int {
		return e.seqs[a].rank.compare(e.seqs[b].rank)
	}) {
		t.Fatal("running sequences out of rank order")
	}
}

// waitingIDs lists the IDs of the waiting requests, sorted.
func waitingIDs(e *Engine) []uint64 {
	var ids []uint64
	for id, slot := range e.byID {
		if s := e.seqs[slot].state; s == stateWaiting || s == stateTransferring {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}
