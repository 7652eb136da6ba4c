package kvevents

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecode checks that Decode never panics, and that what it accepts
// encodes and decodes back to the same batch.
func FuzzDecode(f *testing.F) {
	f.Add(mustEncode(f, realisticBatch()))
	f.Add(mustEncode(f, &Batch{TS: 1, Events: []Event{
		&BlockRemoved{BlockHashes: []Hash{1, 2}, Medium: "CPU"}, &AllBlocksCleared{},
		&BlockStored{BlockHashes: []Hash{3}, HasParent: true, TokenIDs: []uint32{1}, BlockSize: 1, HasLoraID: true, LoraName: "l"},
	}}))
	f.Add(pack(f, arr{1.5, arr{
		arr{"BlockStored", arr{digest("a")}, -3, arr{1, 2}, 2, nil, "GPU", nil, arr{nil}},
		arr{"Unknown", 1},
	}, nil}))
	f.Add(mustEncode(f, &Batch{Events: []Event{
		&BlockStored{BlockHashes: []Hash{1, 2}, TokenIDs: []uint32{1, 2}, BlockSize: 1, LoraName: "a",
			ExtraKeys: []*ExtraKeys{{Strings: []string{"a", "salt"}}, {Ints: []int64{3}, Opaque: []byte{0x92, 0xa1, 'x', 0x00}}},
			Group:     1, HasGroup: true, SpecKind: "mamba"},
		&BlockRemoved{BlockHashes: []Hash{1}, Group: 1, HasGroup: true, RemainingCopies: []int{1}},
	}}))
	f.Add(pack(f, obj{"ts", 1.0, "events", arr{
		obj{"type", "BlockStored", "extra_keys", arr{nil, arr{"s"}}, "block_hashes", arr{1}, "token_ids", arr{}, "block_size", 0},
		obj{"type", "BlockStored", "block_hashes", arr{1}, "token_ids", arr{}, "block_size", 0},
		obj{"block_hashes", arr{2}, "type", "BlockRemoved"},
	}}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := Decode(payload)
		if err != nil {
			return
		}
		b.Unknown = 0 // unknown events are not encoded again
		again, err := Decode(mustEncode(t, b))
		if err != nil {
			t.Fatalf("Decode(AppendEncode(%+v)): %v", b, err)
		}
		if diff := cmp.Diff(b, again, batchOpts); diff != "" {
			t.Errorf("decode, encode, decode (-first +second):\n%s", diff)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	digests := realisticBatch()
	stored := digests.Events[0].(*BlockStored)
	hashes := make(arr, len(stored.BlockHashes))
	for i := range hashes {
		hashes[i] = digest(string(rune(i)))
	}
	tokens := make(arr, len(stored.TokenIDs))
	for i, tok := range stored.TokenIDs {
		tokens[i] = int(tok)
	}
	benchmarks := []struct {
		name    string
		payload []byte
	}{
		// What vLLM sends by default: 64-bit integer hashes, array layout.
		{name: "ints", payload: mustEncode(b, realisticBatch())},
		// sha256 digests in newer vLLM's map layout.
		{name: "digests", payload: pack(b, arr{1.7e9, arr{obj{
			"type", "BlockStored", "block_hashes", hashes, "parent_block_hash", digest("p"),
			"token_ids", tokens, "block_size", 16, "lora_id", nil, "medium", "GPU", "lora_name", nil,
		}}, 0})},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.payload)))
			for b.Loop() {
				if _, err := Decode(bm.payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendEncode(b *testing.B) {
	batch := realisticBatch()
	buf := mustEncode(b, batch)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		var err error
		if buf, err = batch.AppendEncode(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
