package replicasync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// The wire format of one batch (every integer an unsigned varint unless
// said otherwise):
//
//	"OERS" version(1 byte, 1)
//	len(sender) sender
//	nStrings { len(s) s }                      string table
//	nRecords { producer hostPort blockSizeTokens nHashes { hash: 8 bytes LE } }
//	nDispatches [ base { plugin hostPort at } ]  base only if nDispatches > 0
//
// producer, plugin and hostPort are indices into the string table, so a
// batch names each endpoint, producer and plugin once. A dispatch section
// follows the insertion records: base (a signed varint) is the UnixNano of
// the batch's first dispatch and each at (a signed varint) a dispatch's
// time in nanoseconds after base (negative for one before it), so a
// dispatch within a flush interval of base costs five or six bytes. A
// batch holds insertions, dispatches, both or neither (the hello: three
// zero counts). The body ends exactly after the last dispatch, or after
// the dispatch count when it is 0.
//
// A snapshot (the answer to GET /replicasync/v1/snapshot, Content-Type
// application/x-openepp-replica-snapshot) is a stream of frames:
//
//	{ length(4 bytes, big-endian, 1 to maxBatchBytes) batch } 0x00000000
//
// each batch as above, from the serving replica's ID, holding a stretch of
// its producers' indexes; the zero length ends the stream, and nothing
// follows it, so a stream cut anywhere is told from a complete one.
// Within a producer, frames and records come least recently used first,
// and a record's hashes most recent first: applied in order, they rebuild
// each endpoint's LRU lists (see prefix.Producer.Export). Snapshot frames
// carry no dispatches (their dispatch count is 0, and a frame with any is
// refused): a dispatch is worth something only for a few scrape
// intervals, and a starting replica learns the queues from its first
// scrape.
const (
	magic   = "OERS"
	version = 1
	// maxIDLen bounds a replica ID, which travels in every batch and in
	// the X-Replica-Id header.
	maxIDLen = 128
	// minRecordLen is the smallest encoded record: four one-byte varints
	// and one hash. It bounds the record count a body can claim.
	minRecordLen = 4 + 8
	// minDispatchLen is the smallest encoded dispatch: three one-byte
	// varints. It bounds the dispatch count a body can claim.
	minDispatchLen = 3
)

// Reasons a batch was rejected (the reason label of
// openepp_replica_sync_rejected_batches_total).
const (
	rejectBadToken  = "bad_token"
	rejectTooLarge  = "too_large"
	rejectMalformed = "malformed"
	rejectVersion   = "version"
)

// errVersion marks a batch of a version this replica does not speak,
// counted apart from malformed ones: it means mixed releases, not a bug.
var errVersion = errors.New("unknown version")

// pending is the encoder: insertions and dispatches appended as they are
// published, until a flush seals them into one batch. Its buffers and map
// are reused.
type pending struct {
	strs       map[string]uint64
	table      []byte // the string table's entries
	records    []byte
	n          int // records
	dispatches []byte
	nd         int   // dispatches
	base       int64 // the first dispatch's UnixNano
}

func newPending() *pending { return &pending{strs: make(map[string]uint64)} }

// size is the encoded size of the table, records and dispatches so far;
// the counts and the base time are left to headerReserve.
func (p *pending) size() int { return len(p.table) + len(p.records) + len(p.dispatches) }

// bound is an upper bound of what add(ins) adds to size.
func bound(ins prefix.Insertion) int {
	return 4*binary.MaxVarintLen64 + 8*len(ins.Hashes) + len(ins.Producer) + len(ins.HostPort)
}

// add appends one record, adding its strings to the table when new.
func (p *pending) add(ins prefix.Insertion) {
	pi, hi := p.str(ins.Producer), p.str(ins.HostPort)
	r := binary.AppendUvarint(p.records, pi)
	r = binary.AppendUvarint(r, hi)
	r = binary.AppendUvarint(r, uint64(ins.BlockSizeTokens))
	r = binary.AppendUvarint(r, uint64(len(ins.Hashes)))
	at := len(r)
	r = slices.Grow(r, 8*len(ins.Hashes))[:at+8*len(ins.Hashes)]
	for i, h := range ins.Hashes {
		binary.LittleEndian.PutUint64(r[at+8*i:], h)
	}
	p.records = r
	p.n++
}

// dispatchBound is an upper bound of what addDispatch(d) adds to size.
func dispatchBound(d scheduler.Dispatch) int {
	return 3*binary.MaxVarintLen64 + len(d.Plugin) + len(d.HostPort)
}

// addDispatch appends one dispatch, adding its strings to the table when
// new; the first of a batch sets its base time.
func (p *pending) addDispatch(d scheduler.Dispatch) {
	at := d.At.UnixNano()
	if p.nd == 0 {
		p.base = at
	}
	pi, hi := p.str(d.Plugin), p.str(d.HostPort)
	b := binary.AppendUvarint(p.dispatches, pi)
	b = binary.AppendUvarint(b, hi)
	p.dispatches = binary.AppendVarint(b, at-p.base) // wraps consistently with decode
	p.nd++
}

func (p *pending) str(s string) uint64 {
	if i, ok := p.strs[s]; ok {
		return i
	}
	i := uint64(len(p.strs))
	p.strs[s] = i
	p.table = binary.AppendUvarint(p.table, uint64(len(s)))
	p.table = append(p.table, s...)
	return i
}

func (p *pending) reset() {
	clear(p.strs)
	p.table, p.records, p.n = p.table[:0], p.records[:0], 0
	p.dispatches, p.nd, p.base = p.dispatches[:0], 0, 0
}

// appendBatch appends the whole batch from sender to dst.
func (p *pending) appendBatch(dst []byte, sender string) []byte {
	dst = append(dst, magic...)
	dst = append(dst, version)
	dst = binary.AppendUvarint(dst, uint64(len(sender)))
	dst = append(dst, sender...)
	dst = binary.AppendUvarint(dst, uint64(len(p.strs)))
	dst = append(dst, p.table...)
	dst = binary.AppendUvarint(dst, uint64(p.n))
	dst = append(dst, p.records...)
	dst = binary.AppendUvarint(dst, uint64(p.nd))
	if p.nd == 0 {
		return dst
	}
	dst = binary.AppendVarint(dst, p.base)
	return append(dst, p.dispatches...)
}

// decoded is one received batch. Its slices are reused from batch to
// batch; Insertions' Hashes point into hashes.
type decoded struct {
	sender     string
	strs       []string
	insertions []prefix.Insertion
	hashes     []uint64
	dispatches []scheduler.Dispatch
}

// reader walks a body, remembering the first problem.
type reader struct {
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	return v, r.advance(what, n)
}

// varint reads a signed varint.
func (r *reader) varint(what string) (int64, error) {
	v, n := binary.Varint(r.b[r.off:])
	return v, r.advance(what, n)
}

// advance moves past a varint of n bytes, as binary.Uvarint or
// binary.Varint reported it.
func (r *reader) advance(what string, n int) error {
	if n <= 0 {
		if n == 0 {
			return fmt.Errorf("%s: truncated at byte %d", what, r.off)
		}
		return fmt.Errorf("%s: varint overflows 64 bits at byte %d", what, r.off)
	}
	r.off += n
	return nil
}

// count reads a count of items of at least size bytes each, refusing one
// that the bytes left cannot hold.
func (r *reader) count(what string, size int) (int, error) {
	v, err := r.uvarint(what)
	if err != nil {
		return 0, err
	}
	if v > uint64(r.left()/size) {
		return 0, fmt.Errorf("%s: %d claimed, but only %d bytes are left", what, v, r.left())
	}
	return int(v), nil
}

func (r *reader) bytes(what string, n int) ([]byte, error) {
	if n > r.left() {
		return nil, fmt.Errorf("%s: %d bytes claimed, but only %d are left", what, n, r.left())
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

// decode parses body strictly into d: any structural problem is an error
// naming it, never a panic, and nothing is allocated from a claimed count
// the body is too short to hold.
func (d *decoded) decode(body []byte) error {
	d.sender, d.strs, d.insertions, d.hashes = "", d.strs[:0], d.insertions[:0], d.hashes[:0]
	d.dispatches = d.dispatches[:0]
	if len(body) < len(magic)+1 {
		return fmt.Errorf("body of %d bytes is shorter than the header", len(body))
	}
	if string(body[:len(magic)]) != magic {
		return fmt.Errorf("bad magic %q, want %q", body[:len(magic)], magic)
	}
	if v := body[len(magic)]; v != version {
		return fmt.Errorf("%w %d, this replica speaks %d", errVersion, v, version)
	}
	r := &reader{b: body, off: len(magic) + 1}
	n, err := r.count("sender ID length", 1)
	if err != nil {
		return err
	}
	if n == 0 || n > maxIDLen {
		return fmt.Errorf("sender ID length %d, want 1 to %d", n, maxIDLen)
	}
	id, _ := r.bytes("sender ID", n)
	d.sender = string(id)
	if err := d.decodeStrings(r); err != nil {
		return err
	}
	if err := d.decodeRecords(r); err != nil {
		return err
	}
	if err := d.decodeDispatches(r); err != nil {
		return err
	}
	if r.left() != 0 {
		return fmt.Errorf("%d trailing bytes after %d records and %d dispatches", r.left(), len(d.insertions), len(d.dispatches))
	}
	return nil
}

func (d *decoded) decodeStrings(r *reader) error {
	n, err := r.count("string table count", 1)
	if err != nil {
		return err
	}
	d.strs = slices.Grow(d.strs, n)
	for i := range n {
		l, err := r.count("length", 1)
		if err != nil {
			return fmt.Errorf("string %d %w", i, err)
		}
		s, _ := r.bytes("string", l)
		d.strs = append(d.strs, string(s))
	}
	return nil
}

func (d *decoded) decodeRecords(r *reader) error {
	n, err := r.count("record count", minRecordLen)
	if err != nil {
		return err
	}
	d.insertions = slices.Grow(d.insertions, n)
	d.hashes = slices.Grow(d.hashes, r.left()/8)
	for i := range n {
		ins, err := d.decodeRecord(r)
		if err != nil {
			return fmt.Errorf("record %d %w", i, err)
		}
		d.insertions = append(d.insertions, ins)
	}
	return nil
}

// recordFields names a record's leading varints, for errors.
var recordFields = [3]string{"producer", "hostPort", "blockSizeTokens"}

func (d *decoded) decodeRecord(r *reader) (prefix.Insertion, error) {
	var v [3]uint64
	for j, what := range recordFields {
		x, err := r.uvarint(what)
		if err != nil {
			return prefix.Insertion{}, err
		}
		if j < 2 && x >= uint64(len(d.strs)) {
			return prefix.Insertion{}, fmt.Errorf("%s: string %d out of range (table has %d)", what, x, len(d.strs))
		}
		v[j] = x
	}
	if v[2] == 0 || v[2] > math.MaxInt32 {
		return prefix.Insertion{}, fmt.Errorf("blockSizeTokens: %d, want 1 to %d", v[2], math.MaxInt32)
	}
	nh, err := r.count("hash count", 8)
	if err != nil {
		return prefix.Insertion{}, err
	}
	if nh == 0 {
		return prefix.Insertion{}, errors.New("hash count: 0, want at least 1")
	}
	raw, _ := r.bytes("hashes", 8*nh)
	at := len(d.hashes)
	for k := range nh {
		d.hashes = append(d.hashes, binary.LittleEndian.Uint64(raw[8*k:]))
	}
	return prefix.Insertion{
		Producer: d.strs[v[0]], HostPort: d.strs[v[1]], BlockSizeTokens: int(v[2]),
		Hashes: d.hashes[at:len(d.hashes):len(d.hashes)],
	}, nil
}

// decodeDispatches reads the dispatch section: the count, then, when it
// is not 0, the base time and the dispatches.
func (d *decoded) decodeDispatches(r *reader) error {
	n, err := r.count("dispatch count", minDispatchLen)
	if err != nil || n == 0 {
		return err
	}
	base, err := r.varint("dispatch base time")
	if err != nil {
		return err
	}
	d.dispatches = slices.Grow(d.dispatches, n)
	for i := range n {
		dp, err := d.decodeDispatch(r, base)
		if err != nil {
			return fmt.Errorf("dispatch %d %w", i, err)
		}
		d.dispatches = append(d.dispatches, dp)
	}
	return nil
}

// dispatchFields names a dispatch's string indices, for errors.
var dispatchFields = [2]string{"plugin", "hostPort"}

func (d *decoded) decodeDispatch(r *reader, base int64) (scheduler.Dispatch, error) {
	var v [2]uint64
	for j, what := range dispatchFields {
		x, err := r.uvarint(what)
		if err != nil {
			return scheduler.Dispatch{}, err
		}
		if x >= uint64(len(d.strs)) {
			return scheduler.Dispatch{}, fmt.Errorf("%s: string %d out of range (table has %d)", what, x, len(d.strs))
		}
		v[j] = x
	}
	at, err := r.varint("time")
	if err != nil {
		return scheduler.Dispatch{}, err
	}
	// base+at wraps for absurd values rather than panicking; the
	// receiver's age bounds drop what makes no sense.
	return scheduler.Dispatch{Plugin: d.strs[v[0]], HostPort: d.strs[v[1]], At: time.Unix(0, base+at)}, nil
}
