package prefix

// A block hash held by one endpoint keeps that endpoint's entry in the hash
// table itself; a hash held by several keeps its holders in a vector of
// (slot, entry) pairs, one contiguous run of int32s. Match reads the
// holders' slots from that run instead of visiting their entries, which
// lie scattered over the arena: with a long prefix the whole pool holds,
// that is one or two cache lines per probe instead of one miss per holder.

// Holder vectors come in capacity classes of 2^c pairs (2^(c+1) int32s).
const (
	minVecClass = 1  // 2 pairs: a vector exists only for two or more holders
	maxVecClass = 20 // 2^20 pairs: maxSlots holders, every endpoint
)

// Small vectors are carved out of chunks of vecChunkInts int32s, so the
// store grows without copying; a vector larger than a chunk gets a chunk of
// its own. A vector is addressed by chunk<<vecChunkBits | offset.
const (
	vecChunkBits = 14
	vecChunkInts = 1 << vecChunkBits
)

// metaSingle marks a table slot whose head is the only holder's entry;
// otherwise the slot's meta packs the vector's length (pairs) and class.
const metaSingle int32 = 0

func packMeta(n, class int32) int32       { return n<<5 | class }
func unpackMeta(m int32) (n, class int32) { return m >> 5, m & 31 }
func vecInts(class int32) int32           { return 2 << class }

// vecStore allocates a shard's holder vectors: per class a free list
// (linked through each free vector's first int32) over chunks carved in
// order. Vectors hold no pointers, so the collector never scans them.
type vecStore struct {
	chunks [][]int32
	cur    int32 // the chunk small vectors are carved from, or none
	used   int32 // int32s of chunks[cur] carved so far
	free   [maxVecClass + 1]int32
}

func newVecStore() vecStore {
	v := vecStore{cur: none}
	for c := range v.free {
		v.free[c] = none
	}
	return v
}

// get returns the n int32s of the vector at ref.
func (v *vecStore) get(ref, n int32) []int32 {
	off := ref & (vecChunkInts - 1)
	return v.chunks[ref>>vecChunkBits][off : off+n : off+n]
}

func (v *vecStore) alloc(class int32) int32 {
	if r := v.free[class]; r != none {
		v.free[class] = v.get(r, 1)[0]
		return r
	}
	n := vecInts(class)
	if n > vecChunkInts {
		v.chunks = append(v.chunks, make([]int32, n))
		return int32(len(v.chunks)-1) << vecChunkBits
	}
	if v.cur == none || v.used+n > vecChunkInts {
		v.carveRest()
		v.chunks = append(v.chunks, make([]int32, vecChunkInts))
		v.cur, v.used = int32(len(v.chunks)-1), 0
	}
	r := v.cur<<vecChunkBits | v.used
	v.used += n
	return r
}

func (v *vecStore) release(ref, class int32) {
	v.get(ref, 1)[0] = v.free[class]
	v.free[class] = ref
}

// carveRest puts what is left of the current chunk on the free lists, the
// largest vectors that fit first, so starting a new chunk wastes nothing.
func (v *vecStore) carveRest() {
	if v.cur == none {
		return
	}
	for c := int32(vecChunkBits - 1); c >= minVecClass; c-- {
		for vecChunkInts-v.used >= vecInts(c) {
			v.release(v.cur<<vecChunkBits|v.used, c)
			v.used += vecInts(c)
		}
	}
}

// holders returns the holders of h: the only holder's entry (pairs nil),
// or the (slot, entry) pairs of its vector; none and nil when nobody
// holds h.
func (s *shard) holders(h uint64) (one int32, pairs []int32) {
	i, ok := s.table.find(h)
	if !ok {
		return none, nil
	}
	head, meta := s.table.vals[i].head, s.table.vals[i].meta
	if meta == metaSingle {
		return head, nil
	}
	n, _ := unpackMeta(meta)
	return none, s.vecs.get(head, 2*n)
}

// lookup returns slot's entry for h, or none.
func (s *shard) lookup(slot int32, h uint64) int32 {
	one, pairs := s.holders(h)
	if one != none {
		if s.at(one).slot == slot {
			return one
		}
		return none
	}
	for k := 0; k < len(pairs); k += 2 {
		if pairs[k] == slot {
			return pairs[k+1]
		}
	}
	return none
}

// addHolder records that slot's entry i holds h; slot must not hold h yet.
func (s *shard) addHolder(h uint64, slot, i int32) {
	ti, ok := s.table.find(h)
	if !ok {
		s.table.add(ti, h, i, metaSingle)
		return
	}
	head, meta := s.table.vals[ti].head, s.table.vals[ti].meta
	if meta == metaSingle {
		ref := s.vecs.alloc(minVecClass)
		v := s.vecs.get(ref, 4)
		v[0], v[1], v[2], v[3] = s.at(head).slot, head, slot, i
		s.table.vals[ti] = tableVal{ref, packMeta(2, minVecClass)}
		return
	}
	n, class := unpackMeta(meta)
	if 2*n == vecInts(class) {
		head = s.move(head, n, class, class+1)
		class++
	}
	v := s.vecs.get(head, 2*n+2)
	v[2*n], v[2*n+1] = slot, i
	s.table.vals[ti] = tableVal{head, packMeta(n+1, class)}
}

// removeHolder records that slot no longer holds h.
func (s *shard) removeHolder(h uint64, slot int32) {
	ti, ok := s.table.find(h)
	if !ok {
		return
	}
	head, meta := s.table.vals[ti].head, s.table.vals[ti].meta
	if meta == metaSingle {
		if s.at(head).slot == slot {
			s.table.delAt(ti)
		}
		return
	}
	n, class := unpackMeta(meta)
	v := s.vecs.get(head, 2*n)
	k := 0
	for k < len(v) && v[k] != slot {
		k += 2
	}
	if k == len(v) {
		return
	}
	v[k], v[k+1] = v[2*n-2], v[2*n-1]
	n--
	switch {
	case n == 1:
		s.table.vals[ti] = tableVal{v[1], metaSingle}
		s.vecs.release(head, class)
		return
	case class > minVecClass && 4*n <= 1<<class:
		// A quarter full: halve, leaving room to grow before moving again.
		head = s.move(head, n, class, class-1)
		class--
	}
	s.table.vals[ti] = tableVal{head, packMeta(n, class)}
}

// move copies the n pairs of the vector at ref into a new vector of class
// to, frees the old one and returns the new one's ref.
func (s *shard) move(ref, n, from, to int32) int32 {
	nref := s.vecs.alloc(to)
	copy(s.vecs.get(nref, 2*n), s.vecs.get(ref, 2*n))
	s.vecs.release(ref, from)
	return nref
}
