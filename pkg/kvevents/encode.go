package kvevents

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// AppendEncode appends the batch's msgpack encoding to dst, as vLLM writes
// it in the array layout: [ts, events] or [ts, events, rank] when
// HasDPRank; each event an array starting with its tag; every hash an
// unsigned int; optional fields that are not set (and empty strings)
// written as nil, and the newer trailing fields only up to the last one
// set. Integers take their shortest form and ts is a float64, like
// msgspec's output. It fails only on a nil event or on ExtraKeys.Opaque
// that is not whole msgpack values.
func (b *Batch) AppendEncode(dst []byte) ([]byte, error) {
	for i, ev := range b.Events {
		if isNilEvent(ev) {
			return dst, fmt.Errorf("kvevents: encode: event %d: nil %T", i, ev)
		}
	}
	w := appendWriter{buf: dst}
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&w)
	e := encoder{enc: enc, w: &w}
	e.batch(b)
	if e.err != nil {
		return dst, fmt.Errorf("kvevents: encode: %w", e.err)
	}
	return w.buf, nil
}

func isNilEvent(ev Event) bool {
	switch e := ev.(type) {
	case *BlockStored:
		return e == nil
	case *BlockRemoved:
		return e == nil
	case *AllBlocksCleared:
		return e == nil
	}
	return true
}

// appendWriter lets the Encoder append to a slice.
type appendWriter struct{ buf []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.buf = append(w.buf, c)
	return nil
}

// encoder keeps the first error of a sequence of writes, so the encoding
// reads as the layout it writes. (With an appendWriter there is none.)
type encoder struct {
	enc *msgpack.Encoder
	w   *appendWriter // what enc writes to, for raw items
	err error
}

func (e *encoder) batch(b *Batch) {
	if b.HasDPRank {
		e.arrayLen(3)
	} else {
		e.arrayLen(2)
	}
	e.do(e.enc.EncodeFloat64(b.TS))
	e.arrayLen(len(b.Events))
	for _, ev := range b.Events {
		switch ev := ev.(type) {
		case *BlockStored:
			e.stored(ev)
		case *BlockRemoved:
			e.removed(ev)
		case *AllBlocksCleared:
			e.arrayLen(1)
			e.str(tagAllBlocksCleared)
		}
	}
	if b.HasDPRank {
		e.do(e.enc.EncodeInt(int64(b.DPRank)))
	}
}

// stored writes a BlockStored with vLLM's seven original fields and, as
// msgspec leaves out trailing defaults, the newer ones up to the last set.
func (e *encoder) stored(ev *BlockStored) {
	n := 7
	switch {
	case ev.SpecKind != "":
		n = 10
	case ev.HasGroup:
		n = 9
	case ev.ExtraKeys != nil:
		n = 8
	}
	e.arrayLen(1 + n)
	e.str(tagBlockStored)
	e.hashes(ev.BlockHashes)
	if ev.HasParent {
		e.do(e.enc.EncodeUint(uint64(ev.Parent)))
	} else {
		e.do(e.enc.EncodeNil())
	}
	e.arrayLen(len(ev.TokenIDs))
	for _, t := range ev.TokenIDs {
		e.do(e.enc.EncodeUint(uint64(t)))
	}
	e.do(e.enc.EncodeInt(int64(ev.BlockSize)))
	if ev.HasLoraID {
		e.do(e.enc.EncodeInt(ev.LoraID))
	} else {
		e.do(e.enc.EncodeNil())
	}
	e.str(ev.Medium)
	e.str(ev.LoraName)
	if n > 7 {
		e.extraKeys(ev.ExtraKeys)
	}
	if n > 8 {
		e.optInt(int64(ev.Group), ev.HasGroup)
	}
	if n > 9 {
		e.str(ev.SpecKind)
	}
}

func (e *encoder) removed(ev *BlockRemoved) {
	n := 2
	switch {
	case ev.RemainingCopies != nil:
		n = 4
	case ev.HasGroup:
		n = 3
	}
	e.arrayLen(1 + n)
	e.str(tagBlockRemoved)
	e.hashes(ev.BlockHashes)
	e.str(ev.Medium)
	if n > 2 {
		e.optInt(int64(ev.Group), ev.HasGroup)
	}
	if n > 3 {
		e.arrayLen(len(ev.RemainingCopies))
		for _, c := range ev.RemainingCopies {
			e.do(e.enc.EncodeInt(int64(c)))
		}
	}
}

// extraKeys writes extra_keys: nil, or per block nil or its items, the
// strings, then the integers, then the opaque items as they were read.
func (e *encoder) extraKeys(xs []*ExtraKeys) {
	if xs == nil {
		e.do(e.enc.EncodeNil())
		return
	}
	e.arrayLen(len(xs))
	for _, x := range xs {
		if x == nil {
			e.do(e.enc.EncodeNil())
			continue
		}
		opaque, err := countItems(x.Opaque)
		if err != nil {
			e.do(fmt.Errorf("extra_keys: opaque items: %w", err))
			return
		}
		e.arrayLen(len(x.Strings) + len(x.Ints) + opaque)
		for _, s := range x.Strings {
			e.do(e.enc.EncodeString(s))
		}
		for _, v := range x.Ints {
			e.do(e.enc.EncodeInt(v))
		}
		e.w.buf = append(e.w.buf, x.Opaque...)
	}
}

// countItems counts the msgpack values in b, which must hold whole ones.
func countItems(b []byte) (int, error) {
	r := getReader(b)
	defer putReader(r)
	n := 0
	for r.left() > 0 {
		if err := r.skip(0); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

func (e *encoder) optInt(v int64, ok bool) {
	if ok {
		e.do(e.enc.EncodeInt(v))
	} else {
		e.do(e.enc.EncodeNil())
	}
}

func (e *encoder) hashes(hs []Hash) {
	e.arrayLen(len(hs))
	for _, h := range hs {
		e.do(e.enc.EncodeUint(uint64(h)))
	}
}

// str writes s, or nil for "": vLLM's None.
func (e *encoder) str(s string) {
	if s == "" {
		e.do(e.enc.EncodeNil())
	} else {
		e.do(e.enc.EncodeString(s))
	}
}

func (e *encoder) arrayLen(n int) { e.do(e.enc.EncodeArrayLen(n)) }

func (e *encoder) do(err error) {
	if e.err == nil {
		e.err = err
	}
}
