package engine

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// transferConfig is testConfig with a KV pull of 500µs + 1µs/token.
func transferConfig() Config {
	cfg := testConfig()
	cfg.KVTransferOverhead, cfg.KVTransferPerToken = 500*us, us
	return cfg
}

func TestRemotePrefillTimeline(t *testing.T) {
	t.Parallel()
	e := newEngine(t, transferConfig())
	events := simulate(t, e, together(Request{ID: 1, Tokens: tokens(1, 100), MaxTokens: 3, RemotePrefill: true}))
	want := []Event{
		// pull 500µs + 100·1µs, then one iteration computing the last
		// prompt token: 1ms + 10µs (no prefill overhead, no prefill).
		{ID: 1, Time: 1610 * us, Token: 1, Cached: 99},
		{ID: 1, Time: 2710 * us, Token: 2, Cached: 99},
		{ID: 1, Time: 3810 * us, Token: 3, Cached: 99, Done: true},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	m := e.Metrics()
	if m.KVTransfers != 1 || m.KVTransferTokens != 100 || m.UsedBlocks != 0 || m.Waiting != 0 {
		t.Fatalf("metrics after a remote prefill: %+v", m)
	}
}

func TestRemotePrefillBeatsLocalPrefillOnLongPrompt(t *testing.T) {
	t.Parallel()
	cfg, err := Profile("blis-l8b-h100")
	if err != nil {
		t.Fatal(err)
	}
	prompt := tokens(7, 4000)
	ttft := func(remote bool) time.Duration {
		e := newEngine(t, cfg)
		s := summarize(t, simulate(t, e, together(Request{ID: 1, Tokens: prompt, MaxTokens: 2, RemotePrefill: remote})))
		return s[1].First
	}
	local, remote := ttft(false), ttft(true)
	// Local: β0 + 4000·β1 ≈ 74.8ms. Remote: 4000·1µs pull + β0 + β1 ≈ 9.8ms.
	wantRemote := 4000*cfg.KVTransferPerToken + cfg.StepOverhead + cfg.PrefillPerToken
	if remote != wantRemote || remote >= local/5 {
		t.Fatalf("TTFT remote %v (want %v), local %v", remote, wantRemote, local)
	}
}

func TestRemotePrefillPullsOnlyUncachedTokens(t *testing.T) {
	t.Parallel()
	e := newEngine(t, transferConfig())
	prefix := tokens(1, 64)
	events := simulate(t, e, []arrival{
		{at: 0, req: Request{ID: 1, Tokens: prefix, MaxTokens: 1}},
		{at: 50 * ms, req: Request{ID: 2, Tokens: withPrefix(prefix, 2, 36), MaxTokens: 1, RemotePrefill: true}},
	})
	s := summarize(t, events)
	// 64 of 100 tokens hit locally (4 blocks), 36 are pulled.
	if m := e.Metrics(); m.KVTransferTokens != 36 || s[2].Cached != 99 {
		t.Fatalf("pulled %d tokens, cached %d; want 36, 99", m.KVTransferTokens, s[2].Cached)
	}
	if got, want := s[2].First, 50*ms+536*us+ms+10*us; got != want {
		t.Fatalf("TTFT end %v, want %v", got, want)
	}
}

func TestTransferRunsBesideTheBatch(t *testing.T) {
	t.Parallel()
	cfg := transferConfig()
	cfg.KVTransferPerToken = 10 * us // 1000 tokens: a 10.5ms pull
	decode := Request{ID: 1, Tokens: tokens(1, 16), MaxTokens: 20}
	alone := simulate(t, newEngine(t, cfg), together(decode))
	both := simulate(t, newEngine(t, cfg), together(decode, Request{ID: 2, Tokens: tokens(2, 1000), MaxTokens: 2, RemotePrefill: true}))
	pullEnd := 10500 * us
	var before []time.Duration
	for _, at := range tokenTimes(alone, 1) {
		if at <= pullEnd {
			before = append(before, at)
		}
	}
	if diff := cmp.Diff(before, tokenTimes(both, 1)[:len(before)]); diff != "" || len(before) < 5 {
		t.Fatalf("the pull slowed the running decode (-alone +with pull):\n%s", diff)
	}
	if got := summarize(t, both)[2].First; got <= pullEnd {
		t.Fatalf("remote request's first token at %v, before its KV landed at %v", got, pullEnd)
	}
}

// TestTransfersHoldingTheCacheDoNotStall fills the cache with a pulling
// request: the request behind it must wait for the landing, not spin.
func TestTransfersHoldingTheCacheDoNotStall(t *testing.T) {
	t.Parallel()
	cfg := transferConfig()
	cfg.NumBlocks = 10
	e := newEngine(t, cfg)
	remote := Request{ID: 1, Tokens: tokens(1, 100), MaxTokens: 2, RemotePrefill: true} // 7 blocks
	local := Request{ID: 2, Tokens: tokens(2, 70), MaxTokens: 2}                        // 5 blocks
	if err := e.Submit(remote, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Submit(local, 0); err != nil {
		t.Fatal(err)
	}
	e.Step(0)
	next, ok := e.NextEventTime()
	if !ok || next != 600*us {
		t.Fatalf("NextEventTime = %v, %v; want the landing at 600µs", next, ok)
	}
	if m := e.Metrics(); m.Waiting != 2 || m.Running != 0 || m.UsedBlocks != 7 {
		t.Fatalf("while pulling: %+v", m)
	}
	s := summarize(t, simulate(t, e, nil))
	if s[1].Tokens != 2 || s[2].Tokens != 2 || s[2].First <= s[1].Last {
		t.Fatalf("summaries %+v; want both done, the local one after the remote one", s)
	}
}

func TestCancelDuringTransfer(t *testing.T) {
	t.Parallel()
	cfg := transferConfig()
	cfg.MaxLoRAs = 1
	e := newEngine(t, cfg)
	if err := e.Submit(Request{ID: 1, Tokens: tokens(1, 100), MaxTokens: 2, RemotePrefill: true, LoRA: "a"}, 0); err != nil {
		t.Fatal(err)
	}
	e.Step(0)
	if m := e.Metrics(); m.UsedBlocks != 7 || len(m.RunningLoRAs) != 1 {
		t.Fatalf("while pulling: %+v", m)
	}
	if !e.Cancel(1) {
		t.Fatal("Cancel(1) = false")
	}
	if m := e.Metrics(); m.UsedBlocks != 0 || m.Waiting != 0 || len(m.RunningLoRAs) != 0 {
		t.Fatalf("after cancel: %+v", m)
	}
	if _, ok := e.NextEventTime(); ok {
		t.Fatal("engine still has work after the only request was cancelled")
	}
	// The slot is reusable and a new adapter can take the seat.
	s := summarize(t, simulate(t, e, together(Request{ID: 1, Tokens: tokens(3, 20), MaxTokens: 1, LoRA: "b"})))
	if s[1].Tokens != 1 {
		t.Fatalf("request after cancel: %+v", s)
	}
}

func TestCancelAfterLandingBeforeSeat(t *testing.T) {
	t.Parallel()
	cfg := transferConfig()
	cfg.MaxNumSeqs = 1
	e := newEngine(t, cfg)
	// Request 2 starts pulling (which takes no seat), request 1 takes the
	// only seat, and request 2's KV lands meanwhile.
	for _, r := range []Request{
		{ID: 2, Tokens: tokens(2, 100), MaxTokens: 2, RemotePrefill: true},
		{ID: 1, Tokens: tokens(1, 16), MaxTokens: 50},
	} {
		if err := e.Submit(r, 0); err != nil {
			t.Fatal(err)
		}
	}
	for e.Metrics().Iterations < 5 {
		next, _ := e.NextEventTime()
		e.Step(next)
	}
	if m := e.Metrics(); m.Waiting != 1 || m.Running != 1 || m.KVTransfers != 1 || m.UsedBlocks != 2+7 {
		t.Fatalf("landed request should wait holding its blocks: %+v", m)
	}
	e.Cancel(2)
	if m := e.Metrics(); m.Waiting != 0 || m.UsedBlocks != 2 {
		t.Fatalf("after cancel: %+v", m)
	}
	if got := tokenTimes(simulate(t, e, nil), 2); len(got) != 0 {
		t.Fatalf("cancelled request produced tokens at %v", got)
	}
	if m := e.Metrics(); m.Finished != 1 || m.UsedBlocks != 0 {
		t.Fatalf("not drained: %+v", m)
	}
}

func TestRemotePrefillDeterministic(t *testing.T) {
	t.Parallel()
	run := func() ([]Event, Metrics) {
		cfg, _ := Profile("blis-l8b-h100")
		cfg.Jitter, cfg.Seed, cfg.NumBlocks, cfg.MaxLoRAs = 0.2, 1, 400, 2
		cfg.KVTransferOverhead = 300 * us
		arrivals := workload(shape{seed: 5, n: 300, rate: 200, prefix: 512, suffix: 256, out: 256})
		for i := range arrivals {
			arrivals[i].req.RemotePrefill = i%2 == 0
		}
		e := newEngine(t, cfg)
		return simulate(t, e, arrivals), e.Metrics()
	}
	a, m := run()
	b, _ := run()
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same inputs, different timelines:\n%s", diff)
	}
	if got := len(summarize(t, a)); got != 300 {
		t.Fatalf("%d of 300 requests produced tokens", got)
	}
	// The cache is small enough that pulled requests get preempted and
	// recompute; everything must still drain.
	if m.KVTransfers != 150 || m.Preemptions == 0 || m.UsedBlocks != 0 || m.Finished != 300 {
		t.Fatalf("metrics: %+v", m)
	}
}
