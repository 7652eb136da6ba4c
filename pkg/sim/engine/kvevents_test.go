package engine

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// storedCall is one BlocksStored call, copied.
type storedCall struct {
	Parent    uint64
	HasParent bool
	Hashes    []uint64
	LoRA      string
	Salt      string
}

// kvIndex is what a KV-event consumer such as a precise prefix-cache
// router builds: the set of block hashes the server holds. It checks every
// event against the engine's hashing as it applies it.
type kvIndex struct {
	t       *testing.T
	model   string
	held    map[uint64]bool
	ever    map[uint64]bool // hashes stored at some point, for parent checks
	stored  []storedCall
	removed int // BlocksRemoved calls
}

func newKVIndex(t *testing.T, model string) *kvIndex {
	return &kvIndex{t: t, model: model, held: map[uint64]bool{}, ever: map[uint64]bool{}}
}

func (x *kvIndex) BlocksStored(parent uint64, hasParent bool, hashes []uint64, toks []uint32, blockSize int, lora, salt string) {
	x.t.Helper()
	if len(hashes) == 0 || len(toks) != len(hashes)*blockSize {
		x.t.Fatalf("BlocksStored: %d hashes, %d tokens, block size %d", len(hashes), len(toks), blockSize)
	}
	if hasParent && salt != "" {
		x.t.Errorf("BlocksStored: salt %q on a run that does not start the prompt", salt)
	}
	root := saltRoot(rootHash(x.model, lora), salt)
	if hasParent {
		if !x.ever[parent] {
			x.t.Errorf("BlocksStored: parent %x never stored", parent)
		}
		root = parent
	}
	if got := appendBlockHashes(nil, root, toks, blockSize); !slices.Equal(got, hashes) {
		x.t.Errorf("BlocksStored: tokens re-hash to %x, reported %x", got, hashes)
	}
	for _, h := range hashes {
		if x.held[h] {
			x.t.Errorf("BlocksStored: %x stored twice", h)
		}
		x.held[h], x.ever[h] = true, true
	}
	x.stored = append(x.stored, storedCall{parent, hasParent, slices.Clone(hashes), lora, salt})
}

func (x *kvIndex) BlocksRemoved(hashes []uint64) {
	x.t.Helper()
	for _, h := range hashes {
		if !x.held[h] {
			x.t.Errorf("BlocksRemoved: %x not held", h)
		}
		delete(x.held, h)
	}
	x.removed++
}

func (x *kvIndex) AllBlocksCleared() {
	x.t.Error("AllBlocksCleared from an engine without a cache reset")
}

// checkMirrors fails unless the index holds exactly the engine's cached hashes.
func (x *kvIndex) checkMirrors(e *Engine, when string) {
	x.t.Helper()
	want := make(map[uint64]bool, len(e.kv.cached))
	for h := range e.kv.cached {
		want[h] = true
	}
	if diff := cmp.Diff(want, x.held); diff != "" {
		x.t.Fatalf("%s: index differs from the prefix cache (-cache +index):\n%s", when, diff)
	}
}

func TestKVEventsOneCallPerSequenceStep(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.BlockSize = 4
	prompt := tokens(1, 40) // 10 blocks
	longer := withPrefix(prompt, 2, 12)
	base := appendBlockHashes(nil, rootHash("m", ""), longer, 4)
	adapter := appendBlockHashes(nil, rootHash("m", "a"), longer, 4)

	e := newEngine(t, cfg)
	x := newKVIndex(t, "m")
	e.SetKVEventListener(x)
	simulate(t, e, together(Request{ID: 1, Tokens: prompt, MaxTokens: 3}))
	simulate(t, e, []arrival{
		{at: time.Second, req: Request{ID: 2, Tokens: longer, MaxTokens: 1}},
		{at: 2 * time.Second, req: Request{ID: 3, Tokens: longer, MaxTokens: 1, LoRA: "a"}},
	})
	want := []storedCall{
		{Hashes: base[:10]},
		{Parent: base[9], HasParent: true, Hashes: base[10:]}, // after the 10-block hit
		{Hashes: adapter, LoRA: "a"},
	}
	if diff := cmp.Diff(want, x.stored); diff != "" {
		t.Fatalf("BlocksStored calls (-want +got):\n%s", diff)
	}

	// A chunked prefill stores each chunk's blocks when its step ends.
	cfg.MaxNumBatchedTokens = 16
	e = newEngine(t, cfg)
	x = newKVIndex(t, "m")
	e.SetKVEventListener(x)
	simulate(t, e, together(Request{ID: 1, Tokens: prompt, MaxTokens: 1}))
	want = []storedCall{
		{Hashes: base[:4]},
		{Parent: base[3], HasParent: true, Hashes: base[4:8]},
		{Parent: base[7], HasParent: true, Hashes: base[8:10]},
	}
	if diff := cmp.Diff(want, x.stored); diff != "" {
		t.Fatalf("chunked BlocksStored calls (-want +got):\n%s", diff)
	}
}

// TestKVEventsReportTheSaltWithTheFirstBlock: a salted prompt's salt comes
// with the run that starts the prompt only; runs that continue it (later
// chunks, blocks after a cache hit) inherit it through their parent.
func TestKVEventsReportTheSaltWithTheFirstBlock(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.BlockSize, cfg.MaxNumBatchedTokens = 4, 16
	prompt := tokens(1, 24) // 6 blocks, prefilled in chunks of 4 blocks
	longer := withPrefix(prompt, 2, 8)
	salted := appendBlockHashes(nil, saltRoot(rootHash("m", ""), "s"), longer, 4)
	adapter := appendBlockHashes(nil, saltRoot(rootHash("m", "a"), "s"), prompt, 4)

	e := newEngine(t, cfg)
	x := newKVIndex(t, "m")
	e.SetKVEventListener(x)
	simulate(t, e, []arrival{
		{req: Request{ID: 1, Tokens: prompt, MaxTokens: 1, CacheSalt: "s"}},
		{at: time.Second, req: Request{ID: 2, Tokens: longer, MaxTokens: 1, CacheSalt: "s"}},
		{at: 2 * time.Second, req: Request{ID: 3, Tokens: prompt, MaxTokens: 1, CacheSalt: "s", LoRA: "a"}},
	})
	want := []storedCall{
		{Hashes: salted[:4], Salt: "s"},
		{Parent: salted[3], HasParent: true, Hashes: salted[4:6]},
		{Parent: salted[5], HasParent: true, Hashes: salted[6:]}, // after the 6-block hit
		{Hashes: adapter[:4], LoRA: "a", Salt: "s"},
		{Parent: adapter[3], HasParent: true, Hashes: adapter[4:], LoRA: "a"},
	}
	if diff := cmp.Diff(want, x.stored); diff != "" {
		t.Fatalf("BlocksStored calls (-want +got):\n%s", diff)
	}
	x.checkMirrors(e, "end")
}

func TestKVEventsConcurrentPrefixStoredOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.BlockSize = 4
	shared := tokens(1, 16) // 4 blocks both requests compute in one step
	hashes := appendBlockHashes(nil, rootHash("m", ""), withPrefix(shared, 2, 8), 4)
	e := newEngine(t, cfg)
	x := newKVIndex(t, "m")
	e.SetKVEventListener(x)
	simulate(t, e, together(
		Request{ID: 1, Tokens: shared, MaxTokens: 1},
		Request{ID: 2, Tokens: withPrefix(shared, 2, 8), MaxTokens: 1},
	))
	want := []storedCall{
		{Hashes: hashes[:4]},
		{Parent: hashes[3], HasParent: true, Hashes: hashes[4:]}, // the shared blocks went first
	}
	if diff := cmp.Diff(want, x.stored); diff != "" {
		t.Fatalf("BlocksStored calls (-want +got):\n%s", diff)
	}
	x.checkMirrors(e, "end")
}

// TestKVEventsMirrorCache replays the events of a workload with shared
// prefixes, adapters, cache salts, chunked prefills and a cache far too
// small for it into an index, which must match the prefix cache after
// every step.
func TestKVEventsMirrorCache(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.NumBlocks, cfg.BlockSize, cfg.MaxNumSeqs, cfg.MaxNumBatchedTokens = 36, 4, 4, 24
	e := newEngine(t, cfg)
	x := newKVIndex(t, "m")
	e.SetKVEventListener(x)
	arrivals := workload(shape{seed: 11, n: 120, rate: 400, prefix: 24, suffix: 12, out: 6})
	for i := 0; i < len(arrivals); i += 7 {
		arrivals[i].req.RemotePrefill = true // P/D: prompt KV pulled, then published
	}
	for i := 0; i < len(arrivals); i += 5 {
		arrivals[i].req.CacheSalt = "tenant" + strconv.Itoa(i%3) // some salts recur
	}
	// Twins arrive together and compute the same prompt at once.
	for i := 0; i < len(arrivals); i += 10 {
		twin := arrivals[i]
		twin.req.ID += 1000
		arrivals = slices.Insert(arrivals, i+1, twin)
	}
	total := uint64(len(arrivals))
	steps := 0
	for {
		next, busy := e.NextEventTime()
		if len(arrivals) > 0 && (!busy || arrivals[0].at <= next) {
			mustSubmit(t, e, arrivals[0].req, arrivals[0].at)
			arrivals = arrivals[1:]
			continue
		}
		if !busy {
			break
		}
		e.Step(next)
		steps++
		x.checkMirrors(e, "step "+strconv.Itoa(steps))
	}
	m := e.Metrics()
	if m.Finished != total || m.Evictions == 0 || m.Preemptions == 0 || x.removed == 0 {
		t.Fatalf("finished %d of %d, %d evictions, %d preemptions, %d BlocksRemoved calls: workload too easy",
			m.Finished, total, m.Evictions, m.Preemptions, x.removed)
	}
	chained, salted := 0, 0
	for _, c := range x.stored {
		if c.HasParent {
			chained++
		}
		if c.Salt != "" {
			salted++
		}
	}
	if chained == 0 || len(x.stored) == chained || salted == 0 {
		t.Fatalf("%d of %d BlocksStored calls have a parent, %d a salt; want both kinds and some salts",
			chained, len(x.stored), salted)
	}
}

func TestSetKVEventListenerAfterSubmitPanics(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testConfig())
	mustSubmit(t, e, Request{ID: 1, Tokens: tokens(1, 16), MaxTokens: 1}, 0)
	e.SetKVEventListener(nil) // removing is always allowed
	defer func() {
		if recover() == nil {
			t.Fatal("SetKVEventListener after Submit did not panic")
		}
	}()
	e.SetKVEventListener(newKVIndex(t, "m"))
}

// discardKVEvents is a listener that does nothing, to price reporting.
type discardKVEvents struct{}

func (discardKVEvents) BlocksStored(uint64, bool, []uint64, []uint32, int, string, string) {}
func (discardKVEvents) BlocksRemoved([]uint64)                                             {}
func (discardKVEvents) AllBlocksCleared()                                                  {}

// BenchmarkVirtualTimeKVEvents is BenchmarkVirtualTime with a listener
// attached: the cost of keeping prompt tokens and building events.
func BenchmarkVirtualTimeKVEvents(b *testing.B) { benchVirtualTime(b, discardKVEvents{}) }
