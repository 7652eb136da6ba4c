package indexlist

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestListMatchesSlice drives a List and a plain slice with the same random
// operations and checks they always agree, walking the links both ways.
func TestListMatchesSlice(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var l List
	var want []int32 // front to back
	const ids = 50
	l.Grow(ids)
	for step := range 5000 {
		id := int32(rng.IntN(ids))
		if i := slices.Index(want, id); i >= 0 {
			l.Remove(id)
			want = slices.Delete(want, i, i+1)
		} else if rng.IntN(2) == 0 {
			l.PushFront(id)
			want = slices.Insert(want, 0, id)
		} else {
			l.PushBack(id)
			want = append(want, id)
		}
		if got, ok := walk(&l); !ok || !slices.Equal(got, want) {
			t.Fatalf("step %d: list %v (links consistent: %v), want %v", step, got, ok, want)
		}
	}
}

// walk lists the IDs front to back and reports whether the back-to-front
// links and Len agree with that.
func walk(l *List) ([]int32, bool) {
	var fwd, back []int32
	for id := l.Front(); id >= 0; id = l.Next(id) {
		fwd = append(fwd, id)
	}
	for id := l.Back(); id >= 0; id = l.prev[id] - 1 {
		back = append(back, id)
	}
	slices.Reverse(back)
	return fwd, slices.Equal(fwd, back) && len(fwd) == l.Len()
}

func TestZeroListIsEmpty(t *testing.T) {
	t.Parallel()
	var l List
	if l.Len() != 0 || l.Front() != -1 || l.Back() != -1 {
		t.Fatalf("zero list: len %d front %d back %d", l.Len(), l.Front(), l.Back())
	}
}
