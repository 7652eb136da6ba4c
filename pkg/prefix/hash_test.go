package prefix

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
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

// TestAppendBlockHashesWith: hashing with an insertion equals hashing the
// spliced copy, wherever the insertion falls relative to block boundaries;
// without one it is AppendBlockHashes.
func TestAppendBlockHashesWith(t *testing.T) {
	prompt := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog. ", 40))
	seed := Seed("m", "")
	if got, want := AppendBlockHashesWith(nil, seed, prompt, 100, nil, 64, 64), AppendBlockHashes(nil, seed, prompt, 64, 64); !slices.Equal(got, want) {
		t.Fatal("no insertion: hashes differ from AppendBlockHashes")
	}
	for _, extra := range [][]byte{[]byte("8 bytes!"), []byte(strings.Repeat("x", 150))} {
		for _, at := range []int{0, 1, 63, 64, 65, 640, len(prompt) - 1, len(prompt)} {
			spliced := slices.Concat(prompt[:at], extra, prompt[at:])
			for _, maxBlocks := range []int{3, 64} {
				got := AppendBlockHashesWith(nil, seed, prompt, at, extra, 64, maxBlocks)
				if want := AppendBlockHashes(nil, seed, spliced, 64, maxBlocks); !slices.Equal(got, want) {
					t.Errorf("insert %d bytes at %d, %d blocks: hashes differ from the spliced prompt's", len(extra), at, maxBlocks)
				}
			}
		}
	}
	a := AppendBlockHashesWith(nil, seed, prompt, 640, []byte(`[{"name":"bash"}]`), 64, 64)
	b := AppendBlockHashesWith(nil, seed, prompt, 640, []byte(`[{"name":"edit"}]`), 64, 64)
	if !slices.Equal(a[:10], b[:10]) || a[10] == b[10] {
		t.Error("other tools after 640 bytes: want the 10 blocks before them shared and block 10 on differing")
	}
}
