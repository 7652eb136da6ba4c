package precise

import (
	"sync"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/prefix"
)

func ep(port int) *endpoint.Endpoint {
	return endpoint.New(endpoint.Spec{Name: "e", Address: "10.0.0.1", Port: port})
}

// seq returns n tokens starting at from.
func seq(from, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(from + i)
	}
	return out
}

// stored is a BlockStored of tokens cut into blocks of bs, with engine
// hashes base, base+1, … chained to parent (0: none).
func stored(tokens []uint32, bs int, base, parent kvevents.Hash) *kvevents.BlockStored {
	ev := &kvevents.BlockStored{TokenIDs: tokens, BlockSize: bs, Medium: "GPU"}
	for i := 0; i < len(tokens)/bs; i++ {
		ev.BlockHashes = append(ev.BlockHashes, base+kvevents.Hash(i))
	}
	if parent != 0 {
		ev.Parent, ev.HasParent = parent, true
	}
	return ev
}

func batch(evs ...kvevents.Event) *kvevents.Batch { return &kvevents.Batch{Events: evs} }

func matchOf(ix *Index, tokens []uint32, bs int, eps ...*endpoint.Endpoint) *prefix.Match {
	keys := AppendKeys(nil, ix.Root("", ""), tokens, bs, 0)
	m := prefix.NewMatch(len(keys), bs)
	ix.Match(m, keys, eps, 0)
	return m
}

func TestIndexFollowsStoresAndRemovals(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a, b := ep(8000), ep(8001)
	prompt := seq(1, 64) // 4 blocks of 16

	// a stores the first two blocks, then the next two chained to them.
	st := ix.Apply(a.HostPort, batch(stored(prompt[:32], 16, 100, 0)))
	st2 := ix.Apply(a.HostPort, batch(stored(prompt[32:], 16, 102, 101)))
	if st.Stored != 2 || st2.Stored != 2 {
		t.Fatalf("stored %d and %d blocks, want 2 and 2", st.Stored, st2.Stored)
	}
	// b holds only the first block.
	ix.Apply(b.HostPort, batch(stored(prompt[:16], 16, 900, 0)))

	m := matchOf(ix, prompt, 16, a, b)
	if m.Blocks(a) != 4 || m.Blocks(b) != 1 {
		t.Fatalf("matched a=%d b=%d, want 4 and 1", m.Blocks(a), m.Blocks(b))
	}
	// Evicting a's third block cuts its match there.
	ix.Apply(a.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{102}}))
	if m := matchOf(ix, prompt, 16, a, b); m.Blocks(a) != 2 {
		t.Errorf("after removal a matches %d blocks, want 2", m.Blocks(a))
	}
	// A different prompt with the same second block does not match past
	// the first difference: keys chain.
	other := append(seq(500, 16), prompt[16:]...)
	if m := matchOf(ix, other, 16, a, b); m.Blocks(a) != 0 || m.Blocks(b) != 0 {
		t.Errorf("a prompt differing in block 0 matched a=%d b=%d", m.Blocks(a), m.Blocks(b))
	}
	ix.Apply(a.HostPort, batch(&kvevents.AllBlocksCleared{}))
	if m := matchOf(ix, prompt, 16, a, b); m.Blocks(a) != 0 || m.Blocks(b) != 1 {
		t.Errorf("after a's reset: a=%d b=%d, want 0 and 1", m.Blocks(a), m.Blocks(b))
	}
	if ix.Keys() != 1 {
		t.Errorf("index holds %d keys, want b's one", ix.Keys())
	}
}

func TestIndexSkipsWhatItCannotPlace(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a := ep(8000)
	st := ix.Apply(a.HostPort, &kvevents.Batch{Unknown: 1, Events: []kvevents.Event{
		stored(seq(1, 16), 16, 7, 99), // parent never seen
		&kvevents.BlockStored{BlockHashes: []kvevents.Hash{1}, TokenIDs: seq(1, 5), BlockSize: 16}, // short
		&kvevents.BlockStored{BlockHashes: []kvevents.Hash{2}, TokenIDs: seq(1, 16), BlockSize: 16, Medium: "CPU"},
	}})
	if st.Orphans != 1 || st.Malformed != 1 || st.OtherTier != 1 || st.Unknown != 1 || st.Stored != 0 {
		t.Errorf("stats %+v", st)
	}
	if ix.Keys() != 0 {
		t.Errorf("%d keys recorded from unplaceable events", ix.Keys())
	}
}

func TestIndexIdempotentStoresAndSharedKeys(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a := ep(8000)
	prompt := seq(1, 32)
	ix.Apply(a.HostPort, batch(stored(prompt, 16, 10, 0), stored(prompt, 16, 10, 0)))
	// The same content under other engine hashes (another cache salt, say)
	// maps to the same keys; removing one copy keeps the other.
	ix.Apply(a.HostPort, batch(stored(prompt, 16, 20, 0)))
	ix.Apply(a.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{10, 11}}))
	if m := matchOf(ix, prompt, 16, a); m.Blocks(a) != 2 {
		t.Errorf("a matches %d blocks, want 2 (the second copy)", m.Blocks(a))
	}
	ix.Apply(a.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{20, 21}}))
	if ix.Keys() != 0 || ix.Blocks(a.HostPort) != 0 {
		t.Errorf("keys %d blocks %d after removing every copy", ix.Keys(), ix.Blocks(a.HostPort))
	}
}

func TestIndexSpeculationExpires(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a, b := ep(8000), ep(8001)
	prompt := seq(1, 48)
	keys := AppendKeys(nil, ix.Root("", ""), prompt, 16, 0)
	ix.Speculate(b.HostPort, keys, 100)
	m := prefix.NewMatch(len(keys), 16)
	ix.Match(m, keys, []*endpoint.Endpoint{a, b}, 50)
	if m.Blocks(b) != 3 || m.Blocks(a) != 0 {
		t.Fatalf("speculative match a=%d b=%d, want 0 and 3", m.Blocks(a), m.Blocks(b))
	}
	m = prefix.NewMatch(len(keys), 16)
	ix.Match(m, keys, []*endpoint.Endpoint{a, b}, 150)
	if m.Blocks(b) != 0 {
		t.Errorf("an expired speculation still matched %d blocks", m.Blocks(b))
	}
	// Real events for the first block outlive the speculation's expiry.
	ix.Apply(b.HostPort, batch(stored(prompt[:16], 16, 1, 0)))
	if n := ix.Expire(150); n != 3 {
		t.Errorf("expired %d entries, want 3", n)
	}
	if ix.Keys() != 1 {
		t.Errorf("%d keys after expiry, want the stored one", ix.Keys())
	}
	ix.Forget(b.HostPort)
	if ix.Keys() != 0 || ix.Blocks(b.HostPort) != 0 {
		t.Errorf("keys %d after forgetting b", ix.Keys())
	}
}

func TestIndexBounds(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{MaxKeys: 2, MaxHolders: 1})
	a, b := ep(8000), ep(8001)
	ix.Apply(a.HostPort, batch(stored(seq(1, 48), 16, 1, 0)))
	if ix.Keys() != 2 {
		t.Errorf("%d keys with a bound of 2", ix.Keys())
	}
	ix.Apply(b.HostPort, batch(stored(seq(1, 16), 16, 1, 0)))
	if m := matchOf(ix, seq(1, 16), 16, a, b); m.Blocks(b) != 0 || m.Blocks(a) != 1 {
		t.Errorf("a second holder joined a block bounded to one: a=%d b=%d", m.Blocks(a), m.Blocks(b))
	}
	// Removing what was never recorded is harmless.
	ix.Apply(b.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{1}}))
	ix.Apply(a.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{1, 2, 3}}))
	if ix.Keys() != 0 {
		t.Errorf("%d keys left", ix.Keys())
	}
}

func TestLoraBlocksMatchOnlyTheirAdapter(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a := ep(8000)
	ev := stored(seq(1, 32), 16, 1, 0)
	ev.LoraName = "sql-adapter"
	ix.Apply(a.HostPort, batch(ev))
	if !ix.IsLora("sql-adapter") {
		t.Fatal("adapter name not learned")
	}
	if m := matchOf(ix, seq(1, 32), 16, a); m.Blocks(a) != 0 {
		t.Errorf("adapter blocks matched a base-model request: %d", m.Blocks(a))
	}
	keys := AppendKeys(nil, ix.Root("sql-adapter", ""), seq(1, 32), 16, 0)
	m := prefix.NewMatch(len(keys), 16)
	ix.Match(m, keys, []*endpoint.Endpoint{a}, 0)
	if m.Blocks(a) != 2 {
		t.Errorf("adapter request matched %d blocks, want 2", m.Blocks(a))
	}
}

// TestIndexUnderConcurrentUse runs ingestion, matching, speculation,
// expiry and departures at once (for the race detector and lock order),
// then checks that forgetting everyone leaves nothing behind.
func TestIndexUnderConcurrentUse(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	eps := []*endpoint.Endpoint{ep(8000), ep(8001), ep(8002)}
	prompt := seq(1, 160)
	keys := AppendKeys(nil, ix.Root("", ""), prompt, 16, 0)
	var wg sync.WaitGroup
	for w, e := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				base := kvevents.Hash(w*100000 + i*10 + 1)
				ev := stored(prompt, 16, base, 0)
				if i%3 == 0 {
					ev.LoraName = "adapter"
				}
				ix.Apply(e.HostPort, batch(ev))
				ix.Apply(e.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: ev.BlockHashes}))
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 200 {
			m := prefix.NewMatch(len(keys), 16)
			ix.Match(m, keys, eps, int64(i))
			_ = ix.BlockSize(eps, 16)
			ix.Speculate(eps[i%3].HostPort, keys, int64(i+5))
			ix.Expire(int64(i))
		}
	}()
	go func() {
		defer wg.Done()
		for range 20 {
			ix.Forget(eps[2].HostPort)
		}
	}()
	wg.Wait()
	for _, e := range eps {
		ix.Forget(e.HostPort)
	}
	if ix.Keys() != 0 {
		t.Errorf("%d keys left after every server was forgotten", ix.Keys())
	}
}

func TestEventAddrsFollowRanks(t *testing.T) {
	t.Parallel()
	eps := []*endpoint.Endpoint{
		endpoint.New(endpoint.Spec{Name: "a1", Address: "10.0.0.1", Port: 8001}),
		endpoint.New(endpoint.Spec{Name: "a0", Address: "10.0.0.1", Port: 8000}),
		endpoint.New(endpoint.Spec{Name: "b", Address: "10.0.0.2", Port: 8000}),
	}
	got := eventAddrs(eps, 5557)
	want := map[string]string{"10.0.0.1:8000": "tcp://10.0.0.1:5557", "10.0.0.1:8001": "tcp://10.0.0.1:5558", "10.0.0.2:8000": "tcp://10.0.0.2:5557"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for hp, addr := range want {
		if got[hp] != addr {
			t.Errorf("%s: events at %q, want %q", hp, got[hp], addr)
		}
	}
}
