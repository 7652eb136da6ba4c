package prefix

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestTableAgainstMap drives the table and a Go map with the same random
// operations. Keys share their low bits often, so probe runs are long and
// wrap around the end of the array, which is what backward-shift deletion
// must get right.
func TestTableAgainstMap(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		r := rand.New(rand.NewPCG(seed, 0))
		tb := newTable()
		ref := map[uint64]int32{}
		key := func() uint64 {
			low := uint64(r.IntN(8)) | uint64(minTableSize-3) // cluster near the end
			return uint64(r.IntN(300))<<20 | low
		}
		for op := range 20000 {
			k := key()
			switch r.IntN(3) {
			case 0, 1:
				v := int32(op)
				tb.set(k, v, ^v)
				ref[k] = v
			case 2:
				tb.del(k)
				delete(ref, k)
			}
			if op%97 == 0 {
				tb.shrink()
			}
		}
		if tb.n != len(ref) {
			t.Fatalf("seed %d: table has %d keys, map %d", seed, tb.n, len(ref))
		}
		for k, v := range ref {
			if got := tb.get(k); got != v {
				t.Fatalf("seed %d: get(%x) = %d, want %d", seed, k, got, v)
			}
		}
		for k := range uint64(300) {
			if _, ok := ref[k<<20|1]; !ok && tb.get(k<<20|1) != none {
				t.Fatalf("seed %d: absent key found", seed)
			}
		}
	}
}

func TestTableShrinks(t *testing.T) {
	t.Parallel()
	tb := newTable()
	for k := uint64(1); k <= 10000; k++ {
		tb.set(k*0x9e3779b97f4a7c15, int32(k), ^int32(k))
	}
	grown := len(tb.keys)
	for k := uint64(1); k <= 9990; k++ {
		tb.del(k * 0x9e3779b97f4a7c15)
	}
	tb.shrink()
	if len(tb.keys) >= grown/8 || tb.n != 10 {
		t.Errorf("after deleting all but 10 of 10000 keys: %d slots (was %d), n %d", len(tb.keys), grown, tb.n)
	}
	for k := uint64(9991); k <= 10000; k++ {
		if tb.get(k*0x9e3779b97f4a7c15) != int32(k) {
			t.Fatalf("key %d lost by shrink", k)
		}
	}
}

// get returns the head stored for h, or none, checking that h's meta (set
// by these tests to ^head) moved along with it.
func (t *table) get(h uint64) int32 {
	i, ok := t.find(h)
	if !ok {
		return none
	}
	if v := t.vals[i]; v.meta != ^v.head {
		panic(fmt.Sprintf("key %x: meta %d does not belong to head %d", h, v.meta, v.head))
	}
	return t.vals[i].head
}

// set and del are find + add and find + delAt, for the tests: the index
// itself always has the slot from a find it needed anyway.

// set stores head and meta for h, adding h when absent.
func (t *table) set(h uint64, head, meta int32) {
	i, ok := t.find(h)
	if ok {
		t.vals[i] = tableVal{head, meta}
		return
	}
	t.add(i, h, head, meta)
}

// del removes h if present.
func (t *table) del(h uint64) {
	if i, ok := t.find(h); ok {
		t.delAt(i)
	}
}
