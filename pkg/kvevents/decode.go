package kvevents

import (
	"fmt"
	"math"
)

// Field names of vLLM's structs, in declaration order, which is also their
// position after the tag in the array layout.
var (
	storedFields = []string{"block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium", "lora_name",
		"extra_keys", "group_idx", "kv_cache_spec_kind"}
	removedFields = []string{"block_hashes", "medium", "group_idx", "remaining_copy_counts"}
)

// Required fields, as bit masks over the field lists above: every vLLM
// version sends them; the others default when missing.
const (
	storedRequired  = 1<<0 | 1<<2 | 1<<3 // block_hashes, token_ids, block_size
	removedRequired = 1 << 0             // block_hashes
)

// Decode decodes a batch payload (the third frame of a message) in either
// of vLLM's layouts. Errors name the place of the problem, such as
// "kvevents: event 3: BlockStored: token_ids: element 5: want int, got
// string". Decode never panics, and the memory it allocates is bounded by
// a multiple of len(payload): under 10 times for hashes and tokens, at
// most about 50 for a payload made of tiny extra_keys entries.
func Decode(payload []byte) (*Batch, error) {
	b, err := decode(payload)
	if err != nil {
		return nil, fmt.Errorf("kvevents: %w", err)
	}
	return b, nil
}

func decode(payload []byte) (*Batch, error) {
	r := getReader(payload)
	defer putReader(r)
	b := &Batch{}
	if err := r.batch(b); err != nil {
		return nil, err
	}
	if r.left() != 0 {
		return nil, fmt.Errorf("%d bytes after the batch", r.left())
	}
	return b, nil
}

func (r *reader) batch(b *Batch) error {
	c, err := r.peek()
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if isMap(c) {
		return r.batchMap(b)
	}
	if !isArray(c) {
		return fmt.Errorf("batch: want array or map, got %s", kind(c))
	}
	n, err := r.arrayLen()
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if n < 2 {
		return fmt.Errorf("batch: %d elements, want ts and events at least", n)
	}
	for i := range n {
		if err := r.batchField(b, i); err != nil {
			return err
		}
	}
	return nil
}

var batchFields = []string{"ts", "events", "data_parallel_rank"}

func (r *reader) batchMap(b *Batch) error {
	n, err := r.mapLen()
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	seen := 0
	for range n {
		key, err := r.str()
		if err != nil {
			return fmt.Errorf("batch: key: %w", err)
		}
		i := fieldIndex(batchFields, key)
		if err := r.batchField(b, i); err != nil {
			return err
		}
		if i >= 0 {
			seen |= 1 << i
		}
	}
	if i := firstMissing(batchFields, seen, 1<<0|1<<1); i >= 0 {
		return fmt.Errorf("batch: missing %s", batchFields[i])
	}
	return nil
}

// batchField decodes the batch's field i (-1 or beyond the known ones:
// skip it).
func (r *reader) batchField(b *Batch, i int) error {
	var err error
	switch i {
	case 0:
		b.TS, err = r.float64()
	case 1:
		return r.events(b)
	case 2:
		var rank int64
		rank, b.HasDPRank, err = r.optInt()
		b.DPRank = int(rank)
		if err == nil && int64(b.DPRank) != rank {
			err = fmt.Errorf("%d out of range", rank)
		}
	default:
		return r.skip(0)
	}
	if err != nil {
		return fmt.Errorf("batch: %s: %w", batchFields[i], err)
	}
	return nil
}

func (r *reader) events(b *Batch) error {
	n, err := r.arrayLen()
	if err != nil {
		return fmt.Errorf("batch: events: %w", err)
	}
	b.Events = make([]Event, 0, n)
	for i := range n {
		ev, err := r.event()
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if ev == nil {
			b.Unknown++
			continue
		}
		b.Events = append(b.Events, ev)
	}
	return nil
}

// event decodes one event, or skips it and returns nil when its tag is
// unknown.
func (r *reader) event() (Event, error) {
	start := r.pos()
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	if isMap(c) {
		return r.mapEvent(start)
	}
	if !isArray(c) {
		return nil, fmt.Errorf("want array or map, got %s", kind(c))
	}
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("empty array, want a tag first")
	}
	tag, err := r.str()
	if err != nil {
		return nil, fmt.Errorf("tag: %w", err)
	}
	return r.eventFields(tagString(tag), n-1, false)
}

// mapEvent decodes an event in the map layout. msgspec writes the "type"
// key first, but other encoders may not, so it is looked up first and the
// map read again from start.
func (r *reader) mapEvent(start int) (Event, error) {
	tag, err := r.mapTag()
	if err != nil {
		return nil, err
	}
	r.seek(start)
	n, err := r.mapLen()
	if err != nil {
		return nil, err
	}
	return r.eventFields(tag, n, true)
}

func (r *reader) mapTag() (string, error) {
	n, err := r.mapLen()
	if err != nil {
		return "", err
	}
	for range n {
		key, err := r.str()
		if err != nil {
			return "", fmt.Errorf("key: %w", err)
		}
		if string(key) == "type" {
			tag, err := r.str()
			if err != nil {
				return "", fmt.Errorf("type: %w", err)
			}
			return tagString(tag), nil
		}
		if err := r.skip(0); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf(`map without a "type" key`)
}

// eventFields decodes the n fields of an event with the given tag: the
// n values after the tag in the array layout, or n keys and values in the
// map layout. It returns nil for an unknown tag.
func (r *reader) eventFields(tag string, n int, keyed bool) (Event, error) {
	var (
		ev       Event
		fields   []string
		required int
	)
	switch tag {
	case tagBlockStored:
		ev, fields, required = &BlockStored{}, storedFields, storedRequired
	case tagBlockRemoved:
		ev, fields, required = &BlockRemoved{}, removedFields, removedRequired
	case tagAllBlocksCleared:
		ev = &AllBlocksCleared{}
	}
	seen := 0
	for i := range n {
		if keyed {
			key, err := r.str()
			if err != nil {
				return nil, fmt.Errorf("%s: key: %w", tag, err)
			}
			i = fieldIndex(fields, key)
		}
		if err := r.eventField(ev, i); err != nil {
			return nil, fmt.Errorf("%s: %w", tag, err)
		}
		if i >= 0 && i < len(fields) {
			seen |= 1 << i
		}
	}
	if i := firstMissing(fields, seen, required); i >= 0 {
		return nil, fmt.Errorf("%s: missing %s", tag, fields[i])
	}
	if e, ok := ev.(*BlockStored); ok && len(e.ExtraKeys) > len(e.BlockHashes) {
		// Checked while reading too, when the hashes come first.
		return nil, fmt.Errorf("%s: extra_keys: %d entries for %d blocks", tag, len(e.ExtraKeys), len(e.BlockHashes))
	}
	return ev, nil
}

// eventField decodes field i of ev, or skips the value when ev has no
// such field (or ev is nil: an unknown event).
func (r *reader) eventField(ev Event, i int) error {
	switch e := ev.(type) {
	case *BlockStored:
		return r.storedField(e, i)
	case *BlockRemoved:
		return r.removedField(e, i)
	}
	return r.skip(0)
}

func (r *reader) storedField(e *BlockStored, i int) error {
	var err error
	switch i {
	case 0:
		e.BlockHashes, err = r.hashes()
	case 1:
		e.Parent, e.HasParent, err = r.optHash()
	case 2:
		e.TokenIDs, err = r.tokens()
	case 3:
		e.BlockSize, err = r.blockSize()
	case 4:
		e.LoraID, e.HasLoraID, err = r.optInt()
	case 5:
		e.Medium, err = r.optString()
	case 6:
		e.LoraName, err = r.optString()
	case 7:
		e.ExtraKeys, err = r.extraKeys(e.BlockHashes)
	case 8:
		e.Group, e.HasGroup, err = r.optGroup()
	case 9:
		e.SpecKind, err = r.optString()
	default:
		return r.skip(0)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", storedFields[i], err)
	}
	return nil
}

func (r *reader) removedField(e *BlockRemoved, i int) error {
	var err error
	switch i {
	case 0:
		e.BlockHashes, err = r.hashes()
	case 1:
		e.Medium, err = r.optString()
	case 2:
		e.Group, e.HasGroup, err = r.optGroup()
	case 3:
		e.RemainingCopies, err = r.optCounts()
	default:
		return r.skip(0)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", removedFields[i], err)
	}
	return nil
}

func (r *reader) hashes() ([]Hash, error) {
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	hs := make([]Hash, n)
	for i := range hs {
		if hs[i], err = r.hash(); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return hs, nil
}

func (r *reader) optHash() (Hash, bool, error) {
	if isNil, err := r.nextIsNil(); isNil || err != nil {
		return 0, false, err
	}
	h, err := r.hash()
	return h, err == nil, err
}

func (r *reader) tokens() ([]uint32, error) {
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	ts := make([]uint32, n)
	for i := range ts {
		t, err := r.int64()
		if err == nil && (t < 0 || t > math.MaxUint32) {
			err = fmt.Errorf("%d out of uint32 range", t)
		}
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		ts[i] = uint32(t)
	}
	return ts, nil
}

func (r *reader) blockSize() (int, error) {
	n, err := r.int64()
	if err == nil && (n < 0 || n > math.MaxInt32) {
		err = fmt.Errorf("%d out of range", n)
	}
	return int(n), err
}

func (r *reader) optInt() (int64, bool, error) {
	if isNil, err := r.nextIsNil(); isNil || err != nil {
		return 0, false, err
	}
	n, err := r.int64()
	return n, err == nil, err
}

// tagString returns known tags as constants, which cost no allocation.
func tagString(b []byte) string {
	switch string(b) {
	case tagBlockStored:
		return tagBlockStored
	case tagBlockRemoved:
		return tagBlockRemoved
	case tagAllBlocksCleared:
		return tagAllBlocksCleared
	}
	return string(b)
}

func fieldIndex(fields []string, key []byte) int {
	for i, f := range fields {
		if f == string(key) {
			return i
		}
	}
	return -1
}

// firstMissing returns the index of the first required field not seen, or
// -1.
func firstMissing(fields []string, seen, required int) int {
	for i := range fields {
		if required&(1<<i) != 0 && seen&(1<<i) == 0 {
			return i
		}
	}
	return -1
}
