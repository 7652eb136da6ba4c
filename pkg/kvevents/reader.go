package kvevents

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// maxSkipDepth bounds the nesting of values skipped as unknown, so a
// payload of nested arrays cannot exhaust the stack.
const maxSkipDepth = 32

var errTruncated = errors.New("unexpected end of payload")

// reader reads msgpack values from one payload, strictly: every read
// checks the type code first (msgpack's Decoder would take nil for 0 or
// an int for a float), and every length is checked against the bytes
// left, so a forged length cannot make it allocate more than a small
// multiple of the payload's size.
type reader struct {
	dec     *msgpack.Decoder
	src     bytes.Reader
	payload []byte
}

var readers = sync.Pool{New: func() any { return &reader{dec: msgpack.NewDecoder(nil)} }}

func getReader(payload []byte) *reader {
	r := readers.Get().(*reader)
	r.payload = payload
	r.src.Reset(payload)
	// bytes.Reader is an io.ByteScanner, so the decoder reads it without
	// buffering and src's position is always the decoder's: pos, seek and
	// raw rely on that.
	r.dec.ResetReader(&r.src)
	return r
}

func putReader(r *reader) {
	r.payload = nil
	r.src.Reset(nil)
	r.dec.ResetReader(nil)
	readers.Put(r)
}

func (r *reader) left() int { return r.src.Len() }

func (r *reader) pos() int { return len(r.payload) - r.src.Len() }

func (r *reader) seek(pos int) { _, _ = r.src.Seek(int64(pos), io.SeekStart) }

func (r *reader) peek() (byte, error) {
	c, err := r.dec.PeekCode()
	if err != nil {
		return 0, errTruncated
	}
	return c, nil
}

// wrap turns the decoder's errors at the end of the payload into
// errTruncated; the checks before each read make other errors rare.
func wrap(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errTruncated
	}
	return err
}

func (r *reader) nextIsNil() (bool, error) {
	c, err := r.peek()
	if err != nil || c != msgpcode.Nil {
		return false, err
	}
	return true, wrap(r.dec.DecodeNil())
}

func (r *reader) arrayLen() (int, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	if !isArray(c) {
		return 0, fmt.Errorf("want array, got %s", kind(c))
	}
	n, err := r.dec.DecodeArrayLen()
	if err != nil {
		return 0, wrap(err)
	}
	if n > r.left() { // every element takes at least one byte
		return 0, fmt.Errorf("array of %d elements but %d bytes left", n, r.left())
	}
	return n, nil
}

func (r *reader) mapLen() (int, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	if !isMap(c) {
		return 0, fmt.Errorf("want map, got %s", kind(c))
	}
	n, err := r.dec.DecodeMapLen()
	if err != nil {
		return 0, wrap(err)
	}
	if n > r.left()/2 { // every entry takes at least two bytes
		return 0, fmt.Errorf("map of %d entries but %d bytes left", n, r.left())
	}
	return n, nil
}

func (r *reader) int64() (int64, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	if !isInt(c) {
		return 0, fmt.Errorf("want int, got %s", kind(c))
	}
	n, err := r.dec.DecodeInt64()
	return n, wrap(err)
}

func (r *reader) float64() (float64, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	if c != msgpcode.Float && c != msgpcode.Double && !isInt(c) {
		return 0, fmt.Errorf("want float, got %s", kind(c))
	}
	f, err := r.dec.DecodeFloat64()
	return f, wrap(err)
}

// str returns the next string's bytes without copying; they alias the
// payload.
func (r *reader) str() ([]byte, error) {
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	if !msgpcode.IsString(c) {
		return nil, fmt.Errorf("want string, got %s", kind(c))
	}
	return r.raw()
}

// raw reads a string's or bin's length and returns its bytes, which alias
// the payload.
func (r *reader) raw() ([]byte, error) {
	n, err := r.dec.DecodeBytesLen()
	if err != nil {
		return nil, wrap(err)
	}
	if n > r.left() {
		return nil, fmt.Errorf("%d bytes claimed but %d left", n, r.left())
	}
	start := r.pos()
	r.seek(start + n)
	return r.payload[start : start+n], nil
}

// optString reads a string or nil (""). Common values are returned as
// constants so they cost no allocation.
func (r *reader) optString() (string, error) {
	if isNil, err := r.nextIsNil(); isNil || err != nil {
		return "", err
	}
	b, err := r.str()
	if err != nil {
		return "", err
	}
	switch string(b) {
	case "GPU":
		return "GPU", nil
	case "CPU":
		return "CPU", nil
	}
	return string(b), nil
}

// hash reads an ExternalBlockHash: an int, or bytes folded as described in
// the package documentation.
func (r *reader) hash() (Hash, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	switch {
	case isInt(c):
		n, err := r.dec.DecodeUint64() // two's complement for negative ints
		return Hash(n), wrap(err)
	case msgpcode.IsBin(c):
		b, err := r.raw()
		if err != nil {
			return 0, err
		}
		return foldHash(b), nil
	}
	return 0, fmt.Errorf("want int or bytes, got %s", kind(c))
}

// foldHash reads b as a big-endian number modulo 2^64: its last 8 bytes.
func foldHash(b []byte) Hash {
	if len(b) > 8 {
		b = b[len(b)-8:]
	}
	var h uint64
	for _, c := range b {
		h = h<<8 | uint64(c)
	}
	return Hash(h)
}

// skip skips one value of any type, nested at most maxSkipDepth deep.
func (r *reader) skip(depth int) error {
	if depth > maxSkipDepth {
		return fmt.Errorf("values nested more than %d deep", maxSkipDepth)
	}
	c, err := r.peek()
	if err != nil {
		return err
	}
	n := 0
	switch {
	case msgpcode.IsString(c) || msgpcode.IsBin(c):
		_, err = r.raw()
		return err
	case msgpcode.IsExt(c):
		return r.skipExt()
	case isArray(c):
		n, err = r.arrayLen()
	case isMap(c):
		n, err = r.mapLen()
		n *= 2
	default: // a scalar: nil, bool, int, float, or an invalid code (0xc1)
		return wrap(r.dec.Skip())
	}
	for i := 0; i < n && err == nil; i++ {
		err = r.skip(depth + 1)
	}
	return err
}

func (r *reader) skipExt() error {
	_, n, err := r.dec.DecodeExtHeader()
	if err != nil {
		return wrap(err)
	}
	if n > r.left() {
		return fmt.Errorf("ext of %d bytes but %d left", n, r.left())
	}
	r.seek(r.pos() + n)
	return nil
}

func isArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}

func isMap(c byte) bool {
	return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) ||
		c >= msgpcode.Uint8 && c <= msgpcode.Uint64 ||
		c >= msgpcode.Int8 && c <= msgpcode.Int64
}

// kind names a value's type for error messages.
func kind(c byte) string {
	switch {
	case c == msgpcode.Nil:
		return "nil"
	case c == msgpcode.False || c == msgpcode.True:
		return "bool"
	case isInt(c):
		return "int"
	case c == msgpcode.Float || c == msgpcode.Double:
		return "float"
	case msgpcode.IsString(c):
		return "string"
	case msgpcode.IsBin(c):
		return "bytes"
	case isArray(c):
		return "array"
	case isMap(c):
		return "map"
	case msgpcode.IsExt(c):
		return "ext"
	}
	return fmt.Sprintf("invalid code 0x%02x", c)
}
