package prefix

import (
	"slices"

	"github.com/openepp/openepp/pkg/endpoint"
)

// exportChunk is the most hashes one Export batch holds, and so the most
// entries copied under one shard read lock.
const exportChunk = 4096

// Export calls fn with what the index holds, as insertions that
// ApplyRemote replays: an empty producer that applies them in order ends
// with the same blocks, in the same LRU order shard by shard, for every
// endpoint it knows (given the same capacities, which it computes from its
// own view of the endpoints). Export walks the endpoints one by one, and
// each endpoint's list in every shard from least to most recently used;
// an insertion holds a stretch of one list, most recent first (the order
// Insert records in), and a batch at most 4096 hashes. Each stretch is
// copied under its shard's read lock, which is never held while fn runs.
// Export stops when fn returns false. fn must not keep batch, or the
// Hashes in it, after it returns: they are reused.
//
// Inserts may run meanwhile. Each list's walk resumes where it stopped,
// found again by the entries' recency stamps, so every list is still
// exported in recency order: an entry that became more recent after it was
// copied is exported again at its new place, one evicted before its turn
// is not, and entries added meanwhile are, up to the moment the walk
// reaches the list's head. Replaying the batches thus rebuilds each list as
// it stood when its walk ended (entries copied and evicted afterwards are
// evicted again by the receiver's capacity, when it is the same); later
// changes reach a replica as the usual insertions. A list that changes
// faster than its walk advances (fn is slow) is walked for at most its
// length plus four times its capacity, and then left short of its head.
//
// Entries do not record their block size: every insertion carries the
// block size this producer last matched with (before its first request,
// the one it would pick for the current pool). The receiver uses it only
// to size each endpoint's LRU (KV cache tokens / block size), as this
// producer's next insert would. Entries hashed with an earlier size, before
// auto-tuning changed it, are replayed under the current one: they still
// match only prompts cut at the old size, as here, but count against the
// capacity of the new one.
func (p *Producer) Export(fn func(batch []Insertion) bool) {
	p.index.export(p.name.Name, p.exportBlockSize(), exportChunk, fn)
}

// exportBlockSize is the block size Export labels entries with.
func (p *Producer) exportBlockSize() int {
	if bs := p.lastBlockSize.Load(); bs > 0 {
		return int(bs)
	}
	if p.endpoints != nil {
		return p.blockSizeTokens(p.endpoints())
	}
	return p.params.BlockSizeTokens
}

// exporter is one Export's state: the batch being filled and its hashes.
type exporter struct {
	ix       *Index
	producer string
	bs       int
	fn       func([]Insertion) bool
	hashes   []uint64 // the batch's hashes; never grows past its capacity
	batch    []Insertion
}

// export runs Export with batches of at most chunk hashes.
func (ix *Index) export(producer string, bs, chunk int, fn func([]Insertion) bool) {
	x := &exporter{ix: ix, producer: producer, bs: bs, fn: fn, hashes: make([]uint64, 0, max(chunk, 1))}
	for slot, e := range ix.slots.Load().bySlot {
		if e == nil {
			continue
		}
		for _, s := range ix.shards {
			if !x.list(s, int32(slot), e.HostPort) {
				return
			}
		}
	}
	x.emit()
}

// emit hands the batch to fn and empties it; false when fn says stop.
func (x *exporter) emit() bool {
	if len(x.batch) == 0 {
		return true
	}
	ok := x.fn(x.batch)
	clear(x.batch)
	x.batch, x.hashes = x.batch[:0], x.hashes[:0]
	return ok
}

// list adds slot's list in s to the batches, oldest first, emitting each
// batch that fills; false when fn said stop.
func (x *exporter) list(s *shard, slot int32, addr string) bool {
	var c exportCursor
	for !c.done {
		if len(x.hashes) == cap(x.hashes) && !x.emit() {
			return false
		}
		at := len(x.hashes)
		room := x.hashes[at:cap(x.hashes)]
		s.mu.RLock()
		n := 0
		// A slot freed by Purge (and perhaps reused) is no longer addr's.
		if e := x.ix.slots.Load().endpointAt(slot); e != nil && e.HostPort == addr {
			n = s.copyOldest(slot, &c, room)
		} else {
			c.done = true
		}
		s.mu.RUnlock()
		if n == 0 {
			continue
		}
		seg := x.hashes[at : at+n : at+n]
		slices.Reverse(seg) // copied oldest first; Insert wants the most recent first
		x.hashes = x.hashes[:at+n]
		x.batch = append(x.batch, Insertion{Producer: x.producer, HostPort: addr, BlockSizeTokens: x.bs, Hashes: seg})
	}
	return true
}

// endpointAt returns the endpoint holding slot, nil when free.
func (t *slotTable) endpointAt(slot int32) *endpoint.Endpoint {
	if int(slot) >= len(t.bySlot) {
		return nil
	}
	return t.bySlot[slot]
}

// exportTurnovers bounds the walk of a list that changes faster than it is
// walked: it copies at most the list's length plus this many times its
// capacity (as they were when it started), then ends short of the head.
const exportTurnovers = 4

// exportCursor is how far the walk of one list has come: the last entry
// copied and the next to copy, each by hash and recency stamp, and how
// many more entries it may copy.
type exportCursor struct {
	started, done    bool
	left             int
	last, next       uint64
	lastSeq, nextSeq uint32
}

// copyOldest copies into dst, oldest first, the entries of slot's list
// that c has not walked past, as many as fit, and moves c after them.
// Caller holds the read lock.
func (s *shard) copyOldest(slot int32, c *exportCursor, dst []uint64) int {
	if !c.started {
		if int(slot) >= len(s.lists) {
			c.done = true
			return 0
		}
		l := &s.lists[slot]
		c.left = int(l.n) + exportTurnovers*int(l.cap)
	}
	i := s.resume(slot, c)
	c.started = true
	dst = dst[:min(len(dst), c.left)]
	n, last := 0, none
	for ; i != none && n < len(dst); i = s.at(i).prev {
		dst[n] = s.at(i).hash
		n++
		last = i
	}
	c.left -= n
	if i == none || c.left == 0 {
		c.done = true
		return n
	}
	c.last, c.lastSeq = s.at(last).hash, s.at(last).seq
	c.next, c.nextSeq = s.at(i).hash, s.at(i).seq
	return n
}

// resume returns the oldest entry of slot's list newer than the one c
// copied last: the tail when the walk starts; else the next entry it saw,
// if unmoved since (everything older was copied); else the one after the
// last copied, if that is unmoved; else (both moved or were evicted) the
// first entry from the tail stamped after the last copied one, a walk past
// the copied entries still listed.
func (s *shard) resume(slot int32, c *exportCursor) int32 {
	if int(slot) >= len(s.lists) {
		return none
	}
	if !c.started {
		return s.lists[slot].tail
	}
	if i := s.lookup(slot, c.next); i != none && s.at(i).seq == c.nextSeq {
		return i
	}
	if i := s.lookup(slot, c.last); i != none && s.at(i).seq == c.lastSeq {
		return s.at(i).prev
	}
	i := s.lists[slot].tail
	for i != none && int32(s.at(i).seq-c.lastSeq) <= 0 {
		i = s.at(i).prev
	}
	return i
}
