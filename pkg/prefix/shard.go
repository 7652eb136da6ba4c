package prefix

import "sync"

// none is the null entry index.
const none int32 = -1

// Entries live in fixed-size chunks so the arena grows without copying and
// wastes at most one partly used chunk per shard.
const (
	chunkBits = 12
	chunkSize = 1 << chunkBits
)

// entry records that the endpoint in slot holds block hash. It sits on the
// endpoint's LRU list in this shard, an intrusive doubly linked list
// threaded through arena indices; the reverse map hash → endpoints is the
// table with its holder vectors. 24 bytes, no pointers.
type entry struct {
	hash uint64
	slot int32
	// seq is the shard's clock when the entry last became its list's most
	// recent, so a list's seqs fall from head to tail (modulo 2^32). It fills
	// what would be padding; Export resumes its walk of a list by it.
	seq        uint32
	prev, next int32 // LRU neighbours; prev is more recent. next links the free list too.
}

// lruList is one endpoint's recency list within a shard.
type lruList struct {
	head, tail int32 // most and least recently used
	n, cap     int32
}

var emptyList = lruList{head: none, tail: none}

// shard is one lock domain of the index: the hashes whose top bits select it,
// their entries, and every endpoint's LRU list restricted to those hashes.
type shard struct {
	mu     sync.RWMutex
	table  table
	vecs   vecStore
	chunks [][]entry
	used   int32 // arena high-water mark
	free   int32 // free list of entries, linked through next
	lists  []lruList
	n      int    // live entries
	clock  uint32 // stamps entry.seq; counts pushFront calls, wrapping
}

func newShard() *shard {
	return &shard{table: newTable(), vecs: newVecStore(), free: none}
}

func (s *shard) at(i int32) *entry { return &s.chunks[i>>chunkBits][i&(chunkSize-1)] }

func (s *shard) alloc() int32 {
	if i := s.free; i != none {
		s.free = s.at(i).next
		return i
	}
	if int(s.used) == len(s.chunks)*chunkSize {
		s.chunks = append(s.chunks, make([]entry, chunkSize))
	}
	s.used++
	return s.used - 1
}

func (s *shard) list(slot int32) *lruList {
	for int(slot) >= len(s.lists) {
		s.lists = append(s.lists, emptyList)
	}
	return &s.lists[slot]
}

// insert records that slot holds h, making it the slot's most recent entry
// and evicting the slot's least recent entries beyond capacity. Caller holds
// the write lock.
func (s *shard) insert(slot int32, h uint64, capacity int32) {
	l := s.list(slot)
	l.cap = max(capacity, 1)
	for l.n > l.cap { // the capacity shrank since the last insert
		s.remove(l, l.tail)
	}
	if i := s.lookup(slot, h); i != none {
		s.unlinkLRU(l, i)
		s.pushFront(l, i)
		return
	}
	for l.n >= l.cap {
		s.remove(l, l.tail)
	}
	i := s.alloc()
	*s.at(i) = entry{hash: h, slot: slot, prev: none, next: none}
	s.addHolder(h, slot, i)
	s.pushFront(l, i)
	s.n++
}

func (s *shard) pushFront(l *lruList, i int32) {
	e := s.at(i)
	s.clock++
	e.seq = s.clock
	e.prev, e.next = none, l.head
	if l.head != none {
		s.at(l.head).prev = i
	} else {
		l.tail = i
	}
	l.head = i
	l.n++
}

func (s *shard) unlinkLRU(l *lruList, i int32) {
	e := s.at(i)
	if e.prev != none {
		s.at(e.prev).next = e.next
	} else {
		l.head = e.next
	}
	if e.next != none {
		s.at(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
	l.n--
}

// remove takes entry i off both lists and frees it.
func (s *shard) remove(l *lruList, i int32) {
	s.unlinkLRU(l, i)
	e := s.at(i)
	s.removeHolder(e.hash, e.slot)
	e.next = s.free
	s.free = i
	s.n--
}

// drop removes every entry of slot. Caller holds the write lock.
func (s *shard) drop(slot int32) {
	if int(slot) >= len(s.lists) {
		return
	}
	l := &s.lists[slot]
	for l.head != none {
		s.remove(l, l.head)
	}
	*l = emptyList
}

// len returns the number of live entries.
func (s *shard) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.n
}
