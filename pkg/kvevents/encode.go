package kvevents

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// AppendEncode appends the batch's msgpack encoding to dst, as vLLM writes
// it in the array layout: [ts, events] or [ts, events, rank] when
// HasDPRank; each event an array starting with its tag; every hash an
// unsigned int; optional fields that are not set (and empty strings)
// written as nil. Integers take their shortest form and ts is a float64,
// like msgspec's output. It fails only on a nil event.
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
	e := encoder{enc: enc}
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
			e.arrayLen(1 + len(removedFields))
			e.str(tagBlockRemoved)
			e.hashes(ev.BlockHashes)
			e.str(ev.Medium)
		case *AllBlocksCleared:
			e.arrayLen(1)
			e.str(tagAllBlocksCleared)
		}
	}
	if b.HasDPRank {
		e.do(e.enc.EncodeInt(int64(b.DPRank)))
	}
}

func (e *encoder) stored(ev *BlockStored) {
	e.arrayLen(1 + len(storedFields))
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
