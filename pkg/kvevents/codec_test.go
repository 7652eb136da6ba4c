package kvevents

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/big"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		batch *Batch
	}{
		{name: "no events", batch: &Batch{TS: 1.5}},
		{name: "dp rank", batch: &Batch{TS: 2, DPRank: 3, HasDPRank: true, Events: []Event{&AllBlocksCleared{}}}},
		{name: "stored, all fields", batch: &Batch{TS: 1.7e9, Events: []Event{&BlockStored{
			BlockHashes: []Hash{1, math.MaxUint64, 1 << 63}, Parent: math.MaxUint64 - 1, HasParent: true,
			TokenIDs: []uint32{0, 1, math.MaxUint32}, BlockSize: 1, LoraID: -7, HasLoraID: true,
			Medium: "CPU", LoraName: "adapter-1",
		}}}},
		{name: "stored, optional fields unset", batch: &Batch{TS: 0, Events: []Event{&BlockStored{
			BlockHashes: []Hash{42}, TokenIDs: []uint32{9, 8, 7, 6}, BlockSize: 4,
		}}}},
		{name: "stored, parent 0 and lora 0 are set", batch: &Batch{Events: []Event{&BlockStored{
			BlockHashes: []Hash{}, TokenIDs: []uint32{}, HasParent: true, HasLoraID: true,
		}}}},
		{name: "stored, newer fields", batch: &Batch{Events: []Event{
			&BlockStored{BlockHashes: []Hash{1, 2, 3}, TokenIDs: []uint32{1, 2, 3}, BlockSize: 1, LoraName: "a",
				ExtraKeys: []*ExtraKeys{{Strings: []string{"a", "salt"}}, nil, {Ints: []int64{4}, Opaque: []byte{0x92, 0xa3, 'i', 'm', 'g', 0x05}}},
				Group:     1, HasGroup: true, SpecKind: "sliding_window"},
			&BlockStored{BlockHashes: []Hash{4}, TokenIDs: []uint32{4}, BlockSize: 1, ExtraKeys: []*ExtraKeys{nil}},
			&BlockStored{BlockHashes: []Hash{5}, TokenIDs: []uint32{5}, BlockSize: 1, HasGroup: true},
		}}},
		{name: "removed, newer fields", batch: &Batch{Events: []Event{
			&BlockRemoved{BlockHashes: []Hash{5, 6}, Medium: "GPU", Group: 2, HasGroup: true},
			&BlockRemoved{BlockHashes: []Hash{5, 6}, RemainingCopies: []int{0, 1}},
		}}},
		{name: "removed", batch: &Batch{TS: -1, Events: []Event{
			&BlockRemoved{BlockHashes: []Hash{5, 6}, Medium: "GPU"},
			&BlockRemoved{BlockHashes: []Hash{7}},
		}, HasDPRank: true}},
		{name: "mixed", batch: realisticBatch()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := []byte("prefix")
			payload, err := tt.batch.AppendEncode(bytes.Clone(prefix))
			if err != nil {
				t.Fatalf("AppendEncode: %v", err)
			}
			if !bytes.HasPrefix(payload, prefix) {
				t.Fatalf("AppendEncode did not append to dst")
			}
			got, err := Decode(payload[len(prefix):])
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.batch, got, batchOpts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEncodeBytes pins the exact bytes: msgspec's shortest integers, a
// float64 ts, nil for unset fields, the rank last.
func TestEncodeBytes(t *testing.T) {
	t.Parallel()
	b := &Batch{TS: 1.5, HasDPRank: true, DPRank: 1, Events: []Event{
		&BlockStored{BlockHashes: []Hash{math.MaxUint64}, TokenIDs: []uint32{1, 300}, BlockSize: 2, Medium: "GPU"},
		&BlockRemoved{BlockHashes: []Hash{7}},
		&AllBlocksCleared{},
	}}
	want := "93" + // [ts, events, rank]
		"cb3ff8000000000000" + // 1.5
		"93" +
		"98" + "ab" + hex.EncodeToString([]byte("BlockStored")) +
		"91cfffffffffffffffff" + // [2^64-1]
		"c0" + // parent nil
		"9201cd012c" + // [1, 300]
		"02" + "c0" + "a3" + hex.EncodeToString([]byte("GPU")) + "c0" +
		"93" + "ac" + hex.EncodeToString([]byte("BlockRemoved")) + "9107" + "c0" +
		"91" + "b0" + hex.EncodeToString([]byte("AllBlocksCleared")) +
		"01"
	if got := hex.EncodeToString(mustEncode(t, b)); got != want {
		t.Errorf("AppendEncode:\n got %s\nwant %s", got, want)
	}
}

func TestEncodeNilEvent(t *testing.T) {
	t.Parallel()
	for _, ev := range []Event{nil, (*BlockStored)(nil), (*BlockRemoved)(nil), (*AllBlocksCleared)(nil)} {
		b := &Batch{Events: []Event{&AllBlocksCleared{}, ev}}
		if _, err := b.AppendEncode(nil); err == nil || !strings.Contains(err.Error(), "event 1: nil") {
			t.Errorf("AppendEncode(%T) error = %v, want event 1: nil", ev, err)
		}
	}
}

// digest and vllmInt give a sha256 digest and the integer vLLM sends for
// it with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1: int.from_bytes(d, "big")
// & (2**64 - 1), computed here independently of foldHash.
func digest(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

func vllmInt(d []byte) Hash {
	mod := new(big.Int).Lsh(big.NewInt(1), 64)
	return Hash(new(big.Int).Mod(new(big.Int).SetBytes(d), mod).Uint64())
}

func TestDecodeGolden(t *testing.T) {
	t.Parallel()
	neg5 := uint64(math.MaxUint64 - 4) // -5 as 64-bit two's complement
	want := &Batch{TS: 1700000000.5, DPRank: 0, HasDPRank: true, Unknown: 1, Events: []Event{
		&BlockStored{BlockHashes: []Hash{math.MaxUint64 - 1, Hash(neg5)}, Parent: 42, HasParent: true,
			TokenIDs: []uint32{1, 2, 3, 4}, BlockSize: 2, Medium: "GPU",
			ExtraKeys: []*ExtraKeys{nil, {Strings: []string{"salt"}, Opaque: []byte{0x92, 0xa2, 'm', 'm', 0x00}}},
			HasGroup:  true, SpecKind: "full_attention"},
		&BlockStored{BlockHashes: []Hash{vllmInt(digest("a")), vllmInt(digest("b"))},
			Parent: vllmInt(digest("p")), HasParent: true, TokenIDs: []uint32{5, 6, 7, 8}, BlockSize: 2},
		&BlockRemoved{BlockHashes: []Hash{7}, Medium: "CPU"},
		&BlockRemoved{BlockHashes: []Hash{8}},
		&AllBlocksCleared{},
	}}
	tests := []struct {
		name    string
		payload []byte
	}{
		{name: "array layout", payload: pack(t, arr{1700000000.5, arr{
			// vLLM's newer fields, one unknown trailing field, and a negative int hash.
			arr{"BlockStored", arr{uint64(math.MaxUint64 - 1), -5}, 42, arr{1, 2, 3, 4}, 2, nil, "GPU", nil,
				arr{nil, arr{"salt", arr{"mm", 0}}}, 0, "full_attention", nil, "future"},
			// 32-byte digests; lora_id, medium and lora_name left out.
			arr{"BlockStored", arr{digest("a"), digest("b")}, digest("p"), arr{5, 6, 7, 8}, 2},
			arr{"BlockRemoved", arr{7}, "CPU"},
			arr{"BlockRemoved", arr{8}},
			arr{"BlockMigrated", arr{9}, "peer"},
			arr{"AllBlocksCleared"},
		}, 0})},
		{name: "map events", payload: pack(t, arr{1700000000.5, arr{
			obj{"type", "BlockStored", "block_hashes", arr{uint64(math.MaxUint64 - 1), -5}, "parent_block_hash", 42,
				"token_ids", arr{1, 2, 3, 4}, "block_size", 2, "lora_id", nil, "medium", "GPU", "lora_name", nil,
				"extra_keys", arr{nil, arr{"salt", arr{"mm", 0}}}, "group_idx", 0, "kv_cache_spec_kind", "full_attention"},
			// Keys sorted, "type" last, as a generic encoder writes them.
			obj{"block_hashes", arr{digest("a"), digest("b")}, "block_size", 2, "parent_block_hash", digest("p"),
				"token_ids", arr{5, 6, 7, 8}, "type", "BlockStored"},
			obj{"type", "BlockRemoved", "block_hashes", arr{7}, "medium", "CPU", "group_idx", nil},
			obj{"type", "BlockRemoved", "block_hashes", arr{8}},
			obj{"type", "BlockMigrated", "block_hashes", arr{9}, "destination", obj{"x", arr{}}},
			obj{"type", "AllBlocksCleared"},
		}, 0})},
		{name: "map batch", payload: pack(t, obj{"data_parallel_rank", 0, "ts", 1700000000.5, "future", true, "events", arr{
			arr{"BlockStored", arr{uint64(math.MaxUint64 - 1), -5}, 42, arr{1, 2, 3, 4}, 2, nil, "GPU", nil,
				arr{arr{}, arr{"salt", arr{"mm", 0}}}, 0, "full_attention"},
			arr{"BlockStored", arr{digest("a"), digest("b")}, digest("p"), arr{5, 6, 7, 8}, 2},
			arr{"BlockRemoved", arr{7}, "CPU", nil, nil},
			arr{"BlockRemoved", arr{8}, nil},
			arr{"BlockMigrated"},
			arr{"AllBlocksCleared", "future field"},
		}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode(tt.payload)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(want, got, batchOpts); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeOptionalBatchFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload []byte
		want    *Batch
	}{
		{name: "rank omitted", payload: pack(t, arr{1.0, arr{}}), want: &Batch{TS: 1}},
		{name: "rank nil", payload: pack(t, arr{1.0, arr{}, nil}), want: &Batch{TS: 1}},
		{name: "int ts", payload: pack(t, arr{7, arr{}, 2}), want: &Batch{TS: 7, DPRank: 2, HasDPRank: true}},
		{name: "extra batch field", payload: pack(t, arr{1.0, arr{}, 1, "x"}), want: &Batch{TS: 1, DPRank: 1, HasDPRank: true}},
		{name: "short digest", payload: pack(t, arr{1.0, arr{arr{"BlockRemoved", arr{[]byte{1, 2}, []byte{}}}}}),
			want: &Batch{TS: 1, Events: []Event{&BlockRemoved{BlockHashes: []Hash{0x0102, 0}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode(tt.payload)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, batchOpts); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	stored := func(fields ...any) []byte {
		return pack(t, arr{1.0, arr{arr{"AllBlocksCleared"}, append(arr{"BlockStored"}, fields...)}})
	}
	tests := []struct {
		name    string
		payload []byte
		want    string
	}{
		{name: "empty", payload: nil, want: "batch: unexpected end of payload"},
		{name: "not a batch", payload: pack(t, 5), want: "batch: want array or map, got int"},
		{name: "short batch", payload: pack(t, arr{1.0}), want: "batch: 1 elements, want ts and events at least"},
		{name: "ts nil", payload: pack(t, arr{nil, arr{}}), want: "batch: ts: want float, got nil"},
		{name: "events not an array", payload: pack(t, arr{1.0, obj{}}), want: "batch: events: want array, got map"},
		{name: "rank string", payload: pack(t, arr{1.0, arr{}, "0"}), want: "batch: data_parallel_rank: want int, got string"},
		{name: "map batch without events", payload: pack(t, obj{"ts", 1.0}), want: "batch: missing events"},
		{name: "map batch key", payload: pack(t, obj{1, 1.0}), want: "batch: key: want string, got int"},
		{name: "event not an array", payload: pack(t, arr{1.0, arr{5}}), want: "event 0: want array or map, got int"},
		{name: "empty event", payload: pack(t, arr{1.0, arr{arr{}}}), want: "event 0: empty array, want a tag first"},
		{name: "tag not a string", payload: pack(t, arr{1.0, arr{arr{[]byte("BlockStored")}}}), want: "event 0: tag: want string, got bytes"},
		{name: "token not an int", payload: stored(arr{1}, nil, arr{1, "2"}, 1), want: "event 1: BlockStored: token_ids: element 1: want int, got string"},
		{name: "token too big", payload: stored(arr{1}, nil, arr{uint64(1 << 32)}, 1), want: "event 1: BlockStored: token_ids: element 0: 4294967296 out of uint32 range"},
		{name: "negative token", payload: stored(arr{1}, nil, arr{-1}, 1), want: "token_ids: element 0: -1 out of uint32 range"},
		{name: "token float", payload: stored(arr{1}, nil, arr{1.0}, 1), want: "token_ids: element 0: want int, got float"},
		{name: "hash string", payload: stored(arr{"h"}, nil, arr{}, 1), want: "event 1: BlockStored: block_hashes: element 0: want int or bytes, got string"},
		{name: "hashes nil", payload: stored(nil, nil, arr{}, 1), want: "BlockStored: block_hashes: want array, got nil"},
		{name: "parent bool", payload: stored(arr{1}, true, arr{}, 1), want: "BlockStored: parent_block_hash: want int or bytes, got bool"},
		{name: "block size negative", payload: stored(arr{1}, nil, arr{}, -1), want: "BlockStored: block_size: -1 out of range"},
		{name: "lora id string", payload: stored(arr{1}, nil, arr{}, 1, "x"), want: "BlockStored: lora_id: want int, got string"},
		{name: "medium int", payload: stored(arr{1}, nil, arr{}, 1, nil, 3), want: "BlockStored: medium: want string, got int"},
		{name: "missing block size", payload: stored(arr{1}, nil, arr{}), want: "event 1: BlockStored: missing block_size"},
		{name: "missing token ids", payload: stored(arr{1}), want: "BlockStored: missing token_ids"},
		{name: "removed without hashes", payload: pack(t, arr{1.0, arr{arr{"BlockRemoved"}}}), want: "event 0: BlockRemoved: missing block_hashes"},
		{name: "map event without type", payload: pack(t, arr{1.0, arr{obj{"block_hashes", arr{}}}}), want: `event 0: map without a "type" key`},
		{name: "map event type int", payload: pack(t, arr{1.0, arr{obj{"type", 1}}}), want: "event 0: type: want string, got int"},
		{name: "map event key int", payload: pack(t, arr{1.0, arr{obj{"type", "BlockRemoved", 1, 2}}}), want: "event 0: BlockRemoved: key: want string, got int"},
		{name: "map event missing field", payload: pack(t, arr{1.0, arr{obj{"type", "BlockStored", "block_hashes", arr{}}}}), want: "BlockStored: missing token_ids"},
		{name: "bad field in unknown map event", payload: pack(t, arr{1.0, arr{obj{"type", "X", "k", raw{0xc1}}}}), want: "event 0: X: msgpack: unknown code c1"},
		{name: "too deep", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, nil, nil, nil, arr{raw(bytes.Repeat([]byte{0x91}, 100)), nil}), want: "values nested more than 32 deep"},
		{name: "extra item too deep", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, arr{arr{raw(bytes.Repeat([]byte{0x91}, 100))}}), want: "extra_keys: element 0: item 0: values nested more than 32 deep"},
		{name: "extra keys for more blocks", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, arr{nil, nil}), want: "BlockStored: extra_keys: 2 entries for 1 blocks"},
		{name: "extra keys not an array", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, "salt"), want: "BlockStored: extra_keys: want array, got string"},
		{name: "extra keys entry a string", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, arr{"salt"}), want: "extra_keys: element 0: want array, got string"},
		{name: "group string", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, nil, "0"), want: "BlockStored: group_idx: want int, got string"},
		{name: "group negative", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, nil, -1), want: "BlockStored: group_idx: -1 out of range"},
		{name: "spec kind int", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, nil, 0, 3), want: "BlockStored: kv_cache_spec_kind: want string, got int"},
		{name: "remaining copies negative", payload: pack(t, arr{1.0, arr{arr{"BlockRemoved", arr{1}, nil, 0, arr{-1}}}}), want: "BlockRemoved: remaining_copy_counts: element 0: -1 out of range"},
		{name: "removed group float", payload: pack(t, arr{1.0, arr{arr{"BlockRemoved", arr{1}, nil, 1.5}}}), want: "BlockRemoved: group_idx: want int, got float"},
		{name: "trailing bytes", payload: append(pack(t, arr{1.0, arr{}}), 0xc0), want: "1 bytes after the batch"},
		{name: "huge array", payload: pack(t, arr{1.0, raw{0xdd, 0xff, 0xff, 0xff, 0xff}}), want: "batch: events: array of 4294967295 elements but 0 bytes left"},
		{name: "huge map", payload: pack(t, raw{0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0}), want: "batch: map of 4294967295 entries but 2 bytes left"},
		{name: "huge digest", payload: stored(arr{raw{0xc6, 0xff, 0xff, 0xff, 0xff, 1}}), want: "block_hashes: element 0: 4294967295 bytes claimed but 1 left"},
		{name: "huge tag", payload: pack(t, arr{1.0, arr{arr{raw{0xdb, 0x7f, 0xff, 0xff, 0xff}}}}), want: "event 0: tag: 2147483647 bytes claimed but 0 left"},
		{name: "huge ext", payload: stored(arr{1}, nil, arr{}, 1, nil, nil, nil, nil, nil, nil, raw{0xc9, 0xff, 0xff, 0xff, 0xff, 1}), want: "ext of 4294967295 bytes but 0 left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := Decode(tt.payload)
			if err == nil {
				t.Fatalf("Decode = %+v, want error %q", b, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "kvevents: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeTruncated(t *testing.T) {
	t.Parallel()
	payload := pack(t, arr{1.5, arr{
		arr{"BlockStored", arr{1, digest("x")}, nil, arr{1, 2}, 1, 3, "GPU", "lora", arr{arr{"k"}}},
		obj{"type", "BlockRemoved", "block_hashes", arr{uint64(1 << 40)}},
		arr{"AllBlocksCleared"},
	}, 0})
	if _, err := Decode(payload); err != nil {
		t.Fatalf("Decode(whole) = %v", err)
	}
	for n := range len(payload) {
		if _, err := Decode(payload[:n]); err == nil {
			t.Errorf("Decode(first %d of %d bytes) succeeded", n, len(payload))
		}
	}
}

// TestDecodeHugeClaimsAllocateLittle checks that lengths are checked
// before anything is allocated for them.
func TestDecodeHugeClaimsAllocateLittle(t *testing.T) {
	payloads := [][]byte{
		pack(t, arr{1.0, raw{0xdd, 0x7f, 0xff, 0xff, 0xff}}),
		pack(t, arr{1.0, arr{arr{"BlockStored", raw{0xdd, 0x7f, 0xff, 0xff, 0xff}}}}),
		pack(t, arr{1.0, arr{arr{"BlockStored", arr{1}, nil, raw{0xdd, 0x7f, 0xff, 0xff, 0xff}}}}),
		pack(t, arr{1.0, arr{arr{"BlockStored", arr{raw{0xc6, 0x7f, 0xff, 0xff, 0xff}}}}}),
		pack(t, arr{1.0, arr{arr{"X", raw{0xdb, 0x7f, 0xff, 0xff, 0xff}}}}),
		pack(t, arr{1.0, arr{arr{"BlockStored", arr{1}, nil, arr{}, 1, nil, nil, nil, raw{0xdd, 0x7f, 0xff, 0xff, 0xff}}}}),
		pack(t, arr{1.0, arr{arr{"BlockStored", arr{1}, nil, arr{}, 1, nil, nil, nil, arr{raw{0xdd, 0x7f, 0xff, 0xff, 0xff}}}}}),
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, p := range payloads {
		if _, err := Decode(p); err == nil {
			t.Errorf("Decode(%x) succeeded", p)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("decoding forged lengths allocated %d bytes", n)
	}
}

func TestParseTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		topic, address, model string
		ok                    bool
	}{
		{topic: "kv@10.0.0.5@meta-llama/Llama-3.1-8B", address: "10.0.0.5", model: "meta-llama/Llama-3.1-8B", ok: true},
		{topic: "kv@pod-a:8000@org/model@rev", address: "pod-a:8000", model: "org/model@rev", ok: true},
		{topic: "kv@fd00::1@m", address: "fd00::1", model: "m", ok: true},
		{topic: "kv@10.0.0.5"},
		{topic: "kv@@model"},
		{topic: "kv@10.0.0.5@"},
		{topic: "@10.0.0.5@m"},
		{topic: ""},
	}
	for _, tt := range tests {
		address, model, ok := ParseTopic(tt.topic)
		if address != tt.address || model != tt.model || ok != tt.ok {
			t.Errorf("ParseTopic(%q) = %q, %q, %v; want %q, %q, %v", tt.topic, address, model, ok, tt.address, tt.model, tt.ok)
		}
	}
}
