// Package indexlist is a doubly linked list whose elements are small
// integer IDs (0, 1, 2, …) rather than pointers: its links live in two
// int32 slices indexed by ID, so a list of millions of cache blocks costs 8
// bytes per block, allocates only when it grows, and holds nothing the
// garbage collector has to scan. Callers keep their per-ID data in slices
// of their own, indexed by the same IDs.
//
// The zero List is empty and ready to use.
package indexlist

// List links IDs in order, front to back. An ID is either in the list or
// not; pushing one that is already in it corrupts the list.
type List struct {
	// prev and next hold the neighbours' IDs plus one, so that the zero
	// value (0) means "none" and grown slices need no initialisation.
	prev, next  []int32
	front, back int32 // ID plus one; 0 when empty
	n           int
}

// Grow makes IDs below n usable.
func (l *List) Grow(n int) {
	for len(l.prev) < n {
		l.prev = append(l.prev, 0)
		l.next = append(l.next, 0)
	}
}

// Len is the number of IDs in the list.
func (l *List) Len() int { return l.n }

// Front is the first ID, or -1 when the list is empty.
func (l *List) Front() int32 { return l.front - 1 }

// Back is the last ID, or -1 when the list is empty.
func (l *List) Back() int32 { return l.back - 1 }

// Next is the ID after id, which must be in the list, or -1 at the back.
func (l *List) Next(id int32) int32 { return l.next[id] - 1 }

// PushFront puts id first.
func (l *List) PushFront(id int32) { l.insert(id+1, 0, l.front) }

// PushBack puts id last.
func (l *List) PushBack(id int32) { l.insert(id+1, l.back, 0) }

// insert links element e (an ID plus one) between p and n, either of which
// may be 0 for an end of the list.
func (l *List) insert(e, p, n int32) {
	l.prev[e-1], l.next[e-1] = p, n
	if p != 0 {
		l.next[p-1] = e
	} else {
		l.front = e
	}
	if n != 0 {
		l.prev[n-1] = e
	} else {
		l.back = e
	}
	l.n++
}

// Remove takes id, which must be in the list, out of it.
func (l *List) Remove(id int32) {
	p, n := l.prev[id], l.next[id]
	if p != 0 {
		l.next[p-1] = n
	} else {
		l.front = n
	}
	if n != 0 {
		l.prev[n-1] = p
	} else {
		l.back = p
	}
	l.prev[id], l.next[id] = 0, 0
	l.n--
}
