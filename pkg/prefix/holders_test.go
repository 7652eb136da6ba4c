package prefix

import (
	"fmt"
	"testing"
)

// TestHolderVectorsGrowAndShrink takes one prompt's holders from one to a
// thousand (class 10) and back, checking the match and the shard's
// invariants at each class boundary. (A vector larger than a chunk would
// take 8,193 endpoints, whose slot-table copies alone take seconds; the
// store's test covers that allocation.)
func TestHolderVectorsGrowAndShrink(t *testing.T) {
	t.Parallel()
	const holders = 1000
	ix := mustIndex(t, 1)
	eps := newEndpoints(holders)
	prompt := chain("shared", 3)
	check := func(n int) {
		t.Helper()
		m := ix.Match(prompt, 16)
		if m.Len() != n {
			t.Fatalf("%d holders inserted, %d matched", n, m.Len())
		}
		for _, e := range eps[:n] {
			if got := m.Blocks(e); got != len(prompt) {
				t.Fatalf("%s matched %d blocks, want %d", e.HostPort, got, len(prompt))
			}
		}
		checkInvariants(t, ix)
	}
	for n := 1; n <= holders; n++ {
		ix.Insert(eps[n-1], prompt, 8)
		if n&(n-1) == 0 || n == holders {
			check(n)
		}
	}
	chunksAtPeak := len(ix.shards[0].vecs.chunks)
	// Evict the prompt endpoint by endpoint (capacity 2 keeps only a
	// prompt of its own), which shrinks the vectors class by class down to
	// a single holder.
	for n := holders; n > 1; n-- {
		ix.Insert(eps[n-1], chain(fmt.Sprint("own-", n), 2), 2)
		if n&(n-1) == 0 || n == 2 {
			check(n - 1)
		}
	}
	check(1)
	if grown, now := chunksAtPeak, len(ix.shards[0].vecs.chunks); now != grown {
		t.Errorf("%d vector chunks after shrinking, %d at the peak: the vectors freed while growing were not reused", now, grown)
	}
}

// TestVecStoreReusesFreedVectors: a freed vector of a class serves the next
// allocation of that class, and starting a new chunk puts the old chunk's
// rest on the free lists instead of wasting it.
func TestVecStoreReusesFreedVectors(t *testing.T) {
	v := newVecStore()
	a := v.alloc(3)
	v.release(a, 3)
	if b := v.alloc(3); b != a {
		t.Fatalf("class 3 allocated at %d after %d was freed", b, a)
	}
	v.alloc(vecChunkBits - 1) // a whole chunk: does not fit beside the class-3 vector
	if len(v.chunks) != 2 {
		t.Fatalf("%d chunks, want 2", len(v.chunks))
	}
	free := 0
	for c := int32(minVecClass); c <= maxVecClass; c++ {
		for r := v.free[c]; r != none; r = v.get(r, 1)[0] {
			free += int(vecInts(c))
		}
	}
	if want := vecChunkInts - int(vecInts(3)); free != want {
		t.Errorf("%d int32s on the free lists after starting a new chunk, want the first chunk's rest, %d", free, want)
	}
	if big := v.alloc(vecChunkBits); len(v.chunks) != 3 || big != 2<<vecChunkBits {
		t.Errorf("a vector larger than a chunk got ref %d with %d chunks, want a chunk of its own", big, len(v.chunks))
	}
}
