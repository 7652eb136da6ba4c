package prefix

// table maps a block hash to its holders: the only holder's entry, or a
// holder vector (see holders.go), told apart by meta. It is an
// open-addressed, linearly probed hash table stored as two flat arrays, keys
// apart from values so that probing for an absent key (every new block an
// insert records) scans densely packed keys; a distinct hash costs 16 bytes
// per slot and no pointers the garbage collector has to scan. Key 0 marks an empty slot (the index never
// stores hash 0, see fixHash). Deletion shifts later keys back instead of
// leaving tombstones, so probe lengths stay short under churn.
type table struct {
	keys []uint64
	vals []tableVal
	n    int
	mask int
}

type tableVal struct {
	head int32 // the only holder's entry, or the holder vector's ref
	meta int32 // metaSingle, or the vector's packed length and class
}

// minTableSize is the smallest table; a power of two.
const minTableSize = 64

func newTable() table {
	return table{keys: make([]uint64, minTableSize), vals: make([]tableVal, minTableSize), mask: minTableSize - 1}
}

// find returns the slot of h, or the empty slot where h would go.
func (t *table) find(h uint64) (int, bool) {
	for i := int(h) & t.mask; ; i = (i + 1) & t.mask {
		switch t.keys[i] {
		case h:
			return i, true
		case 0:
			return i, false
		}
	}
}

// add stores h, absent, at i, the empty slot find returned for it. The table
// grows before it is more than three quarters full.
func (t *table) add(i int, h uint64, head, meta int32) {
	if (t.n+1)*4 > len(t.keys)*3 {
		t.resize(len(t.keys) * 2)
		i, _ = t.find(h)
	}
	t.keys[i], t.vals[i] = h, tableVal{head, meta}
	t.n++
}

// delAt removes the key at slot i, shifting the rest of its probe run back
// so that every remaining key stays reachable from its home slot.
func (t *table) delAt(i int) {
	t.n--
	for j := i; ; {
		t.keys[i] = 0
		for {
			j = (j + 1) & t.mask
			k := t.keys[j]
			if k == 0 {
				return
			}
			home := int(k) & t.mask
			// The key at j may move to i when i lies on its probe path,
			// that is, when i is no farther from home than j is.
			if (j-home)&t.mask >= (j-i)&t.mask {
				t.keys[i], t.vals[i] = k, t.vals[j]
				i = j
				break
			}
		}
	}
}

// shrink halves the table while it is less than an eighth full, returning
// memory after a purge removed many endpoints.
func (t *table) shrink() {
	size := len(t.keys)
	for size > minTableSize && t.n*8 < size {
		size /= 2
	}
	if size != len(t.keys) {
		t.resize(size)
	}
}

func (t *table) resize(size int) {
	old := *t
	*t = table{keys: make([]uint64, size), vals: make([]tableVal, size), mask: size - 1}
	for i, k := range old.keys {
		if k != 0 {
			j, _ := t.find(k)
			t.keys[j], t.vals[j] = k, old.vals[i]
			t.n++
		}
	}
}
