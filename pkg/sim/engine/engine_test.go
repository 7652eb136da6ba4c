package engine

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSingleRequestTimeline(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testConfig())
	events := simulate(t, e, together(Request{ID: 7, Tokens: tokens(1, 100), MaxTokens: 3}))
	want := []Event{
		{ID: 7, Time: 4 * ms, Token: 1},                // 1ms + 2ms + 100·10µs
		{ID: 7, Time: 5100 * us, Token: 2},             // + 1ms + 100µs
		{ID: 7, Time: 6200 * us, Token: 3, Done: true}, // + 1ms + 100µs
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Fatalf("events mismatch (-want +got):\n%s", diff)
	}
	m := e.Metrics()
	if m.Running != 0 || m.Waiting != 0 || m.UsedBlocks != 0 || m.Finished != 1 {
		t.Fatalf("engine not drained: %+v", m)
	}
	if m.PromptTokens != 100 || m.GenerationTokens != 3 {
		t.Fatalf("token counters = %d prompt, %d generated; want 100, 3", m.PromptTokens, m.GenerationTokens)
	}
}

func TestBatchingLimitAndFCFS(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxNumSeqs = 2
	e := newEngine(t, cfg)
	var arrivals []arrival
	for i := range 5 {
		arrivals = append(arrivals, arrival{at: time.Duration(i) * us, req: Request{ID: uint64(i), Tokens: tokens(uint32(i), 32), MaxTokens: 4}})
	}
	for _, a := range arrivals {
		if err := e.Submit(a.req, a.at); err != nil {
			t.Fatal(err)
		}
	}
	next, _ := e.NextEventTime()
	e.Step(next)
	if got := [2]int{e.Running(), e.Waiting()}; got != [2]int{2, 3} {
		t.Fatalf("running, waiting = %v, want [2 3]", got)
	}
	for steps := 0; ; steps++ {
		next, ok := e.NextEventTime()
		if !ok {
			break
		}
		e.Step(next)
		if e.Running() > 2 {
			t.Fatalf("%d running > max-num-seqs 2", e.Running())
		}
	}
	// FCFS: requests finish in arrival order, pairwise.
	e2 := newEngine(t, cfg)
	got := summarize(t, simulate(t, e2, arrivals))
	for i := 1; i < 5; i++ {
		if got[uint64(i)].First < got[uint64(i-1)].First {
			t.Errorf("request %d got its first token before request %d", i, i-1)
		}
	}
	if got[2].First <= got[0].Last {
		t.Errorf("request 2 got a token (%v) before request 0 finished (%v) with max-num-seqs 2", got[2].First, got[0].Last)
	}
}

func TestTTFTGrowsWithUncachedTokensAndBatch(t *testing.T) {
	t.Parallel()
	ttft := func(reqs ...Request) time.Duration {
		e := newEngine(t, testConfig())
		s := summarize(t, simulate(t, e, together(reqs...)))
		return s[reqs[len(reqs)-1].ID].First
	}
	short := ttft(Request{ID: 1, Tokens: tokens(1, 100), MaxTokens: 1})
	long := ttft(Request{ID: 1, Tokens: tokens(1, 1100), MaxTokens: 1})
	if diff := long - short; diff != 1000*10*us {
		t.Errorf("1000 more prompt tokens added %v to TTFT, want 10ms", diff)
	}
	var batch []Request
	for i := range 8 {
		batch = append(batch, Request{ID: uint64(i), Tokens: tokens(uint32(i), 100), MaxTokens: 1})
	}
	batched := ttft(batch...)
	if want := 3*ms + 800*10*us; batched != want {
		t.Errorf("TTFT in a batch of 8 = %v, want %v (one step over 800 tokens)", batched, want)
	}
}

func TestDecodeTimeGrowsWithBatch(t *testing.T) {
	t.Parallel()
	itl := func(cfg Config, n int) time.Duration {
		e := newEngine(t, cfg)
		var reqs []Request
		for i := range n {
			reqs = append(reqs, Request{ID: uint64(i), Tokens: tokens(uint32(i), 16), MaxTokens: 5})
		}
		times := tokenTimes(simulate(t, e, together(reqs...)), 0)
		return times[3] - times[2]
	}
	cfg := testConfig()
	if got, want := itl(cfg, 1), ms+100*us; got != want {
		t.Errorf("ITL batch 1 = %v, want %v", got, want)
	}
	if got, want := itl(cfg, 8), ms+800*us; got != want {
		t.Errorf("ITL batch 8 = %v, want %v", got, want)
	}
	cfg.DecodePerSeq = 0
	cfg.LoadFactor = 2
	if got, want := itl(cfg, 8), 2*ms; got != want {
		t.Errorf("ITL batch 8 at load factor 2 = %v, want %v (full factor at max-num-seqs)", got, want)
	}
}

func TestChunkedPrefillInterleavesDecodes(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testConfig()) // budget 2048 tokens per step
	events := simulate(t, e, []arrival{
		{at: 0, req: Request{ID: 1, Tokens: tokens(1, 16), MaxTokens: 20}},
		{at: 5 * ms, req: Request{ID: 2, Tokens: tokens(2, 5000), MaxTokens: 1}},
	})
	long := tokenTimes(events, 2)
	// Request 1 decodes during request 2's three prefill chunks.
	decodedDuring := 0
	for _, at := range tokenTimes(events, 1) {
		if at > 5*ms && at < long[0] {
			decodedDuring++
		}
	}
	if decodedDuring < 2 {
		t.Fatalf("request 1 produced %d tokens during the chunked prefill, want ≥ 2", decodedDuring)
	}
	if e.Metrics().Iterations < 3 {
		t.Fatalf("5000-token prompt finished in fewer than 3 iterations")
	}
}

func TestPrefixCacheHit(t *testing.T) {
	t.Parallel()
	shared := tokens(9, 256)
	e := newEngine(t, testConfig())
	first := summarize(t, simulate(t, e, together(Request{ID: 1, Tokens: withPrefix(shared, 1, 64), MaxTokens: 1})))
	second := summarize(t, simulate(t, e, []arrival{{at: time.Second, req: Request{ID: 2, Tokens: withPrefix(shared, 2, 64), MaxTokens: 1}}}))
	if first[1].Cached != 0 || second[2].Cached != 256 {
		t.Fatalf("cached tokens = %d then %d, want 0 then 256", first[1].Cached, second[2].Cached)
	}
	if saved := first[1].First - (second[2].First - time.Second); saved != 256*10*us {
		t.Fatalf("cache hit saved %v of TTFT, want 2.56ms", saved)
	}
	// An identical prompt recomputes its last block, as vLLM does.
	third := summarize(t, simulate(t, e, []arrival{{at: 2 * time.Second, req: Request{ID: 3, Tokens: withPrefix(shared, 2, 64), MaxTokens: 1}}}))
	if third[3].Cached != 304 {
		t.Fatalf("identical 320-token prompt cached %d tokens, want 304", third[3].Cached)
	}
	// The key includes the adapter: the same prompt on a LoRA misses.
	lora := summarize(t, simulate(t, e, []arrival{{at: 3 * time.Second, req: Request{ID: 4, Tokens: withPrefix(shared, 2, 64), MaxTokens: 1, LoRA: "a"}}}))
	if lora[4].Cached != 0 {
		t.Fatalf("adapter request hit %d base-model tokens", lora[4].Cached)
	}
	m := e.Metrics()
	if m.PrefixHits != 256+304 || m.PrefixQueries != 4*320 {
		t.Fatalf("prefix counters hits=%d queries=%d", m.PrefixHits, m.PrefixQueries)
	}
}

// TestCacheSaltIsolatesPrefixCache: a prompt hits the blocks of an earlier
// identical prompt only under the same cache_salt and adapter; no salt is
// a key of its own.
func TestCacheSaltIsolatesPrefixCache(t *testing.T) {
	t.Parallel()
	prompt := tokens(9, 320)
	e := newEngine(t, testConfig())
	steps := []struct {
		salt, lora string
		cached     int
	}{
		{salt: "", cached: 0},
		{salt: "alice", cached: 0}, // the unsalted blocks are not hers
		{salt: "bob", cached: 0},   // nor alice's his
		{salt: "alice", cached: 304},
		{salt: "", cached: 304}, // salted requests left the unsalted blocks alone
		{salt: "alice", lora: "a", cached: 0},
		{salt: "alice", lora: "a", cached: 304},
		{salt: "", lora: "a", cached: 0},
	}
	hits := 0
	for i, st := range steps {
		id := uint64(i + 1)
		req := Request{ID: id, Tokens: prompt, MaxTokens: 1, CacheSalt: st.salt, LoRA: st.lora}
		got := summarize(t, simulate(t, e, []arrival{{at: time.Duration(i) * time.Second, req: req}}))
		if got[id].Cached != st.cached {
			t.Fatalf("request %d (salt %q, adapter %q) cached %d tokens, want %d", id, st.salt, st.lora, got[id].Cached, st.cached)
		}
		hits += st.cached
	}
	if m := e.Metrics(); m.PrefixHits != uint64(hits) {
		t.Fatalf("prefix hits counter %d, want %d", m.PrefixHits, hits)
	}
}

// TestBlockHashes pins the hashing: an unsalted prompt hashes as it always
// has (a change would shift every fleet benchmark), and a salt changes
// every block from the first on.
func TestBlockHashes(t *testing.T) {
	t.Parallel()
	prompt := tokens(1, 32)
	for _, tc := range []struct {
		lora string
		want []uint64
	}{
		{lora: "", want: []uint64{0x74cf517f0fa02585, 0x46c89d045b0d1e93}},
		{lora: "a", want: []uint64{0x2e2a0065090103fb, 0x304fc1e3ac6d72b6}},
	} {
		root := rootHash("m", tc.lora)
		if got := appendBlockHashes(nil, saltRoot(root, ""), prompt, 16); !slices.Equal(got, tc.want) {
			t.Errorf("adapter %q: unsalted hashes %#x, want %#x", tc.lora, got, tc.want)
		}
		seen := map[uint64]string{}
		for _, salt := range []string{"", "s", "t", "st"} {
			for _, h := range appendBlockHashes(nil, saltRoot(root, salt), prompt, 16) {
				if other, dup := seen[h]; dup {
					t.Errorf("adapter %q: salts %q and %q share block hash %#x", tc.lora, other, salt, h)
				}
				seen[h] = salt
			}
		}
	}
}

func TestLRUEvictionUnderPressure(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.NumBlocks, cfg.BlockSize = 20, 4
	e := newEngine(t, cfg)
	a, b, c := tokens(1, 32), tokens(2, 32), tokens(3, 32) // 8 blocks each
	run := func(id uint64, at time.Duration, p []uint32) summary {
		return summarize(t, simulate(t, e, []arrival{{at: at, req: Request{ID: id, Tokens: p, MaxTokens: 1}}}))[id]
	}
	run(1, 0, a)
	run(2, time.Second, b)
	if got := [2]int{e.CachedPrefix(a, ""), e.CachedPrefix(b, "")}; got != [2]int{32, 32} {
		t.Fatalf("cached prefixes = %v, want both 32", got)
	}
	// c takes the 4 never-used blocks, then evicts the 4 least recently
	// freed ones: a's tail (a was freed first, tail blocks first).
	run(3, 2*time.Second, c)
	got := [3]int{e.CachedPrefix(a, ""), e.CachedPrefix(b, ""), e.CachedPrefix(c, "")}
	if got != [3]int{16, 32, 32} {
		t.Fatalf("after pressure cached prefixes a, b, c = %v, want [16 32 32]", got)
	}
	if d := run(4, 3*time.Second, a); d.Cached != 16 {
		t.Fatalf("re-sent a hit %d tokens, want 16", d.Cached)
	}
	if e.Metrics().Evictions == 0 {
		t.Fatal("no evictions counted")
	}
}

func TestAdmissionWaitsForBlocks(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.NumBlocks, cfg.BlockSize = 10, 4
	e := newEngine(t, cfg)
	mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 28), MaxTokens: 8}, 0) // 7 blocks, grows to 9
	mustSubmit(t, e, Request{ID: 2, Tokens: tokens(2, 16), MaxTokens: 1}, 0) // needs 4
	e.Step(0)
	if got := [2]int{e.Running(), e.Waiting()}; got != [2]int{1, 1} {
		t.Fatalf("running, waiting = %v, want [1 1]: request 2 must wait for blocks", got)
	}
	if u := e.KVUsage(); u != 0.7 {
		t.Fatalf("KV usage = %v, want 0.7", u)
	}
	for {
		next, ok := e.NextEventTime()
		if !ok {
			break
		}
		e.Step(next)
	}
	if m := e.Metrics(); m.Finished != 2 || m.Preemptions != 0 {
		t.Fatalf("finished=%d preemptions=%d, want 2 and 0", m.Finished, m.Preemptions)
	}
}

func TestPreemptionRecomputes(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.NumBlocks, cfg.BlockSize = 8, 4
	e := newEngine(t, cfg)
	// Both fit at admission (3 blocks each) but grow to 6 blocks each.
	events := simulate(t, e, together(
		Request{ID: 1, Tokens: tokens(1, 12), MaxTokens: 12},
		Request{ID: 2, Tokens: tokens(2, 12), MaxTokens: 12},
	))
	got := summarize(t, events) // fails on a skipped or repeated token
	if got[1].Tokens != 12 || got[2].Tokens != 12 {
		t.Fatalf("tokens = %d, %d; want 12 each", got[1].Tokens, got[2].Tokens)
	}
	m := e.Metrics()
	if m.Preemptions == 0 {
		t.Fatal("no preemption although the cache could not hold both")
	}
	if got[1].Last >= got[2].Last {
		t.Fatalf("the earlier request should finish first; the later one was preempted")
	}
	if m.UsedBlocks != 0 {
		t.Fatalf("%d blocks leaked", m.UsedBlocks)
	}
}

func mustSubmit(t *testing.T, e *Engine, r Request, at time.Duration) {
	t.Helper()
	if err := e.Submit(r, at); err != nil {
		t.Fatalf("Submit(%d): %v", r.ID, err)
	}
}

func TestSubmitErrors(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxModelLen, cfg.MaxWaiting, cfg.NumBlocks = 500, 2, 20
	noLoRA := testConfig()
	noLoRA.MaxLoRAs = 0
	tests := []struct {
		name string
		cfg  Config
		req  Request
		want error
	}{
		{name: "empty prompt", cfg: cfg, req: Request{ID: 9, MaxTokens: 1}, want: ErrInvalidRequest},
		{name: "zero max tokens", cfg: cfg, req: Request{ID: 9, Tokens: tokens(1, 4)}, want: ErrInvalidRequest},
		{name: "duplicate id", cfg: cfg, req: Request{ID: 1, Tokens: tokens(1, 4), MaxTokens: 1}, want: ErrInvalidRequest},
		{name: "over max model len", cfg: cfg, req: Request{ID: 9, Tokens: tokens(1, 490), MaxTokens: 20}, want: ErrTooLong},
		{name: "over kv cache", cfg: cfg, req: Request{ID: 9, Tokens: tokens(1, 320), MaxTokens: 20}, want: ErrTooLong},
		{name: "queue full", cfg: cfg, req: Request{ID: 9, Tokens: tokens(1, 4), MaxTokens: 1}, want: ErrQueueFull},
		{name: "lora without slots", cfg: noLoRA, req: Request{ID: 9, Tokens: tokens(1, 4), MaxTokens: 1, LoRA: "a"}, want: ErrInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, tc.cfg)
			mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 4), MaxTokens: 1}, 0)
			mustSubmit(t, e, Request{ID: 2, Tokens: tokens(2, 4), MaxTokens: 1}, 0)
			before := e.Metrics()
			err := e.Submit(tc.req, 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Submit error = %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(before, e.Metrics()); diff != "" {
				t.Fatalf("failed Submit changed the engine:\n%s", diff)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxNumSeqs = 1
	e := newEngine(t, cfg)
	mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 64), MaxTokens: 50}, 0)
	mustSubmit(t, e, Request{ID: 2, Tokens: tokens(2, 64), MaxTokens: 50}, 0)
	mustSubmit(t, e, Request{ID: 3, Tokens: tokens(3, 64), MaxTokens: 2}, 0)
	e.Step(0) // 1 in flight
	if !e.Cancel(2) || !e.Cancel(1) {
		t.Fatal("Cancel of held requests returned false")
	}
	if e.Cancel(1) || e.Cancel(42) {
		t.Fatal("Cancel of unknown requests returned true")
	}
	var ids []uint64
	for {
		next, ok := e.NextEventTime()
		if !ok {
			break
		}
		for _, ev := range e.Step(next) {
			ids = append(ids, ev.ID)
		}
	}
	if diff := cmp.Diff([]uint64{3, 3}, ids); diff != "" {
		t.Fatalf("events after cancel (-want +got):\n%s", diff)
	}
	m := e.Metrics()
	if m.UsedBlocks != 0 || m.Cancelled != 2 || m.Waiting != 0 || m.Running != 0 {
		t.Fatalf("after cancel: %+v", m)
	}
	// IDs of cancelled requests may be reused.
	mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 64), MaxTokens: 1}, time.Second)
}
