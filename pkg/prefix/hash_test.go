package prefix

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSeedIsolation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		modelA, saltA    string
		modelB, saltB    string
		wantSame         bool
		wantSamePrefixes bool
	}{
		{name: "same model and salt", modelA: "llama", modelB: "llama", wantSame: true},
		{name: "different models", modelA: "llama", modelB: "qwen"},
		{name: "different salts", modelA: "llama", saltA: "alice", modelB: "llama", saltB: "bob"},
		{name: "salt versus none", modelA: "llama", saltA: "alice", modelB: "llama"},
		{name: "bytes shifted between model and salt", modelA: "ab", saltA: "c", modelB: "a", saltB: "bc"},
		{name: "model only versus salt only", modelA: "x", modelB: "", saltB: "x"},
	}
	prompt := bytes.Repeat([]byte("0123456789abcdef"), 64)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := AppendBlockHashes(nil, Seed(tc.modelA, tc.saltA), prompt, 64, 16)
			b := AppendBlockHashes(nil, Seed(tc.modelB, tc.saltB), prompt, 64, 16)
			if got := Seed(tc.modelA, tc.saltA) == Seed(tc.modelB, tc.saltB); got != tc.wantSame {
				t.Fatalf("seeds equal = %v, want %v", got, tc.wantSame)
			}
			shared := 0
			for i := range a {
				if a[i] == b[i] {
					shared++
				}
			}
			if want := map[bool]int{true: len(a), false: 0}[tc.wantSame]; shared != want {
				t.Errorf("%d of %d block hashes shared, want %d", shared, len(a), want)
			}
		})
	}
}

func TestAppendBlockHashesCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		promptLen  int
		blockBytes int
		maxBlocks  int
		want       int
	}{
		{name: "empty prompt", promptLen: 0, blockBytes: 64, maxBlocks: 256, want: 0},
		{name: "shorter than a block", promptLen: 63, blockBytes: 64, maxBlocks: 256, want: 0},
		{name: "exactly one block", promptLen: 64, blockBytes: 64, maxBlocks: 256, want: 1},
		{name: "partial last block ignored", promptLen: 64*3 + 10, blockBytes: 64, maxBlocks: 256, want: 3},
		{name: "capped by maxBlocks", promptLen: 64 * 300, blockBytes: 64, maxBlocks: 256, want: 256},
		{name: "one-byte blocks", promptLen: 5, blockBytes: 1, maxBlocks: 256, want: 5},
		{name: "zero block size is no blocks", promptLen: 100, blockBytes: 0, maxBlocks: 256, want: 0},
		{name: "negative block size is no blocks", promptLen: 100, blockBytes: -4, maxBlocks: 256, want: 0},
		{name: "zero maxBlocks is no blocks", promptLen: 100, blockBytes: 4, maxBlocks: 0, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prompt := bytes.Repeat([]byte("x"), tc.promptLen)
			got := AppendBlockHashes([]uint64{42}, 7, prompt, tc.blockBytes, tc.maxBlocks)
			if len(got)-1 != tc.want || got[0] != 42 {
				t.Errorf("appended %d hashes (dst[0]=%d), want %d after the existing one", len(got)-1, got[0], tc.want)
			}
			if slices.Contains(got, 0) {
				t.Error("a hash is 0, the reserved empty-slot key")
			}
		})
	}
}

func TestAppendBlockHashesChaining(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	base := make([]byte, 64*10)
	for i := range base {
		base[i] = byte('a' + r.IntN(26))
	}
	seed := Seed("m", "")
	want := AppendBlockHashes(nil, seed, base, 64, 10)
	if again := AppendBlockHashes(nil, seed, base, 64, 10); !slices.Equal(again, want) {
		t.Fatal("hashing is not deterministic")
	}
	// Changing one byte in block k keeps blocks before k and changes every
	// block from k on, because each hash covers the whole prefix.
	for _, k := range []int{0, 4, 9} {
		changed := slices.Clone(base)
		changed[k*64+17]++
		got := AppendBlockHashes(nil, seed, changed, 64, 10)
		for i := range got {
			if (got[i] == want[i]) != (i < k) {
				t.Errorf("byte changed in block %d: block %d hash equal = %v", k, i, got[i] == want[i])
			}
		}
	}
	// A longer prompt with the same prefix shares its leading hashes.
	longer := AppendBlockHashes(nil, seed, append(slices.Clone(base), bytes.Repeat([]byte("z"), 128)...), 64, 20)
	if diff := cmp.Diff(want, longer[:10]); diff != "" {
		t.Errorf("shared prefix hashes differ (-short +long):\n%s", diff)
	}
}

func TestFixHash(t *testing.T) {
	t.Parallel()
	for in, want := range map[uint64]uint64{0: 1, 1: 1, 2: 2, ^uint64(0): ^uint64(0)} {
		if got := fixHash(in); got != want {
			t.Errorf("fixHash(%d) = %d, want %d", in, got, want)
		}
	}
}

// TestSeedWithTools: no tools keeps Seed's value (so tool-less requests hash
// as before, and as GIE); different tools, or bytes shifted between the
// salt and the tools, give different seeds.
func TestSeedWithTools(t *testing.T) {
	if SeedWithTools("m", "s", nil) != Seed("m", "s") {
		t.Error("no tools: seed differs from Seed's")
	}
	a := SeedWithTools("m", "", []byte(`[{"name":"bash"}]`))
	for _, other := range []uint64{
		Seed("m", ""),
		SeedWithTools("m", "", []byte(`[{"name":"edit"}]`)),
		SeedWithTools("m", `[{"name":"bash"}]`, nil),
		SeedWithTools("m", `[`, []byte(`{"name":"bash"}]`)),
	} {
		if other == a {
			t.Errorf("seed %x repeated for different tools, salt or model", a)
		}
	}
	if SeedWithTools("m", "", []byte(`[{"name":"bash"}]`)) != a {
		t.Error("same tools, different seeds")
	}
}
