package kvevents

import (
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Readers of the fields current vLLM added: extra_keys, group_idx and
// remaining_copy_counts.

// extraKeys reads extra_keys: nil, or an array holding per block nil or
// an array of items (an empty one is read as nil). When the hashes came
// first, as vLLM writes them, there may be no more entries than hashes,
// which bounds what a hostile payload can make Decode allocate.
func (r *reader) extraKeys(hashes []Hash) ([]*ExtraKeys, error) {
	if isNil, err := r.nextIsNil(); isNil || err != nil {
		return nil, err
	}
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	if hashes != nil && n > len(hashes) {
		return nil, fmt.Errorf("%d entries for %d blocks", n, len(hashes))
	}
	out := make([]*ExtraKeys, n)
	for i := range out {
		if out[i], err = r.blockExtra(); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return out, nil
}

func (r *reader) blockExtra() (*ExtraKeys, error) {
	if isNil, err := r.nextIsNil(); isNil || err != nil {
		return nil, err
	}
	n, err := r.arrayLen()
	if err != nil || n == 0 {
		return nil, err
	}
	x := &ExtraKeys{}
	for i := range n {
		c, err := r.peek()
		if err != nil {
			return nil, err
		}
		switch {
		case msgpcode.IsString(c):
			var b []byte
			if b, err = r.str(); err == nil {
				x.Strings = append(x.Strings, string(b))
			}
		case isInt(c):
			var v int64
			if v, err = r.int64(); err == nil {
				x.Ints = append(x.Ints, v)
			}
		default:
			start := r.pos()
			if err = r.skip(1); err == nil {
				x.Opaque = append(x.Opaque, r.payload[start:r.pos()]...)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return x, nil
}

func (r *reader) optGroup() (int, bool, error) {
	g, ok, err := r.optInt()
	if err == nil && ok && (g < 0 || g > math.MaxInt32) {
		err = fmt.Errorf("%d out of range", g)
	}
	return int(g), ok && err == nil, err
}

// optCounts reads nil or an array of non-negative ints.
func (r *reader) optCounts() ([]int, error) {
	if isNil, err := r.nextIsNil(); isNil || err != nil {
		return nil, err
	}
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	out := make([]int, n)
	for i := range out {
		v, err := r.int64()
		if err == nil && (v < 0 || v > math.MaxInt32) {
			err = fmt.Errorf("%d out of range", v)
		}
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out[i] = int(v)
	}
	return out, nil
}
