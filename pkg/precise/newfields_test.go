package precise

import (
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/prefix"
)

// held is how many leading blocks of tokens a holds for a request of the
// adapter lora with the cache_salt salt.
func held(ix *Index, a *endpoint.Endpoint, tokens []uint32, lora, salt string) int {
	keys := AppendKeys(nil, ix.Root(lora, salt), tokens, 16, 0)
	m := prefix.NewMatch(len(keys), 16)
	ix.Match(m, keys, []*endpoint.Endpoint{a}, 0)
	return m.Blocks(a)
}

func strs(s ...string) *kvevents.ExtraKeys { return &kvevents.ExtraKeys{Strings: s} }

// TestExtraKeysSeparateRequests: what vLLM folds into a block's hash
// besides its tokens keeps requests apart here too: a cache_salt on the
// first block matches only requests of that salt, an adapter's name rides
// on every block, and a multimodal item makes its block and every later
// one unmatchable by text.
func TestExtraKeysSeparateRequests(t *testing.T) {
	t.Parallel()
	prompt := seq(1, 48)
	tests := []struct {
		name  string
		event func(*kvevents.BlockStored)
		// held for: no salt, salt "s1", salt "s2", adapter "a" with "s1"
		want [4]int
	}{
		{name: "none sent", event: func(*kvevents.BlockStored) {}, want: [4]int{3, 0, 0, 0}},
		{name: "no extra keys", event: func(e *kvevents.BlockStored) { e.ExtraKeys = []*kvevents.ExtraKeys{nil, nil, nil} },
			want: [4]int{3, 0, 0, 0}},
		{name: "salted", event: func(e *kvevents.BlockStored) { e.ExtraKeys = []*kvevents.ExtraKeys{strs("s1"), nil, nil} },
			want: [4]int{0, 3, 0, 0}},
		{name: "adapter and salt", event: func(e *kvevents.BlockStored) {
			e.LoraName = "a"
			e.ExtraKeys = []*kvevents.ExtraKeys{strs("a", "s1"), strs("a"), strs("a")}
		}, want: [4]int{0, 0, 0, 3}},
		{name: "older adapter ID and salt", event: func(e *kvevents.BlockStored) {
			e.LoraID, e.HasLoraID = 3, true
			e.ExtraKeys = []*kvevents.ExtraKeys{{Ints: []int64{3}, Strings: []string{"s1"}}, {Ints: []int64{3}}, {Ints: []int64{3}}}
		}, want: [4]int{0, 3, 0, 0}},
		{name: "image in the second block", event: func(e *kvevents.BlockStored) {
			e.ExtraKeys = []*kvevents.ExtraKeys{nil, {Opaque: []byte{0x92, 0xa3, 'i', 'm', 'g', 0x04}}, nil}
		}, want: [4]int{1, 0, 0, 0}},
		{name: "two strings on the first block", event: func(e *kvevents.BlockStored) {
			e.ExtraKeys = []*kvevents.ExtraKeys{strs("mm-hash", "s1"), nil, nil}
		}, want: [4]int{0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ix := NewIndex(IndexOptions{})
			a := ep(8000)
			ev := stored(prompt, 16, 1, 0)
			tt.event(ev)
			ix.Apply(a.HostPort, batch(ev))
			got := [4]int{held(ix, a, prompt, "", ""), held(ix, a, prompt, "", "s1"), held(ix, a, prompt, "", "s2"), held(ix, a, prompt, "a", "s1")}
			if got != tt.want {
				t.Errorf("held %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSaltedContinuation: a later store of the same salted sequence
// chains from its first block, whose parent carried the salt.
func TestSaltedContinuation(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a := ep(8000)
	prompt := seq(1, 48)
	first := stored(prompt[:16], 16, 1, 0)
	first.ExtraKeys = []*kvevents.ExtraKeys{strs("s1")}
	ix.Apply(a.HostPort, batch(first, stored(prompt[16:], 16, 2, 1)))
	if got := held(ix, a, prompt, "", "s1"); got != 3 {
		t.Errorf("salted request holds %d blocks, want 3", got)
	}
}

// TestHybridModelGroups: of a hybrid model's cache groups only full
// attention is indexed; sliding-window stores and removals are counted
// and skipped, also once a group's kind is known only from an earlier
// store, and neither changes the block size learned.
func TestHybridModelGroups(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a := ep(8000)
	prompt := seq(1, 48)
	full := stored(prompt, 16, 1, 0)
	full.Group, full.HasGroup, full.SpecKind = 0, true, "full_attention"
	window := stored(prompt, 48, 100, 0)
	window.Group, window.HasGroup, window.SpecKind = 1, true, "sliding_window"
	unnamed := stored(seq(500, 48), 48, 200, 0)
	unnamed.Group, unnamed.HasGroup = 1, true
	st := ix.Apply(a.HostPort, batch(full, window, unnamed))
	if st.Stored != 3 || st.OtherGroup != 2 {
		t.Errorf("stats %+v, want 3 stored and 2 of another group", st)
	}
	if bs := ix.BlockSize([]*endpoint.Endpoint{a}, 0); bs != 16 {
		t.Errorf("block size %d, want the full-attention group's 16", bs)
	}
	// The same engine hashes in the sliding-window group are evicted:
	// the full-attention copies stay.
	st = ix.Apply(a.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{1, 2, 3}, Group: 1, HasGroup: true}))
	if st.OtherGroup != 1 || held(ix, a, prompt, "", "") != 3 {
		t.Errorf("after a sliding-window eviction: stats %+v, held %d; want it skipped", st, held(ix, a, prompt, "", ""))
	}
	ix.Apply(a.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{3}, Group: 0, HasGroup: true}))
	if got := held(ix, a, prompt, "", ""); got != 2 {
		t.Errorf("after a full-attention eviction of the last block: held %d, want 2", got)
	}
}

// TestRemovalWithCopiesLeft: a removal saying the server keeps another
// copy of a block leaves it held.
func TestRemovalWithCopiesLeft(t *testing.T) {
	t.Parallel()
	ix := NewIndex(IndexOptions{})
	a := ep(8000)
	prompt := seq(1, 48)
	ix.Apply(a.HostPort, batch(stored(prompt, 16, 1, 0)))
	ix.Apply(a.HostPort, batch(&kvevents.BlockRemoved{BlockHashes: []kvevents.Hash{2, 3}, RemainingCopies: []int{1, 0}}))
	if got := held(ix, a, prompt, "", ""); got != 2 {
		t.Errorf("held %d blocks, want 2: block 2 has a copy left, block 3 none", got)
	}
}
