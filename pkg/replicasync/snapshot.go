package replicasync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/openepp/openepp/pkg/prefix"
)

const (
	// snapshotPath is where a node serves a copy of its index.
	snapshotPath        = "/replicasync/v1/snapshot"
	snapshotContentType = "application/x-openepp-replica-snapshot"
	// frameHeader is the length prefix of a frame.
	frameHeader = 4
	// maxSnapshotsServed bounds the snapshots served at once; more
	// requests are answered 503. Starting replicas ask once each.
	maxSnapshotsServed = 2
	// snapshotWriteTimeout bounds writing one frame to a peer that stopped
	// reading.
	snapshotWriteTimeout = 10 * time.Second
)

// errTooLarge ends a snapshot that exceeds Options.MaxSnapshotBytes.
var errTooLarge = errors.New("snapshot larger than this replica's maxSnapshotBytes")

// serveSnapshot streams this node's indexes to a starting peer: each
// producer's Export, a frame per batch, flushed as it goes. Only one
// frame is held at a time, and the shards are read-locked only while
// Export copies a batch, so neither peers' POSTs nor routing wait on it.
func (n *Node) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	msg, ok := n.openPeerRequest(w, r, http.MethodGet, "ask for a snapshot with GET")
	if !ok {
		return
	}
	if msg != "" {
		http.Error(w, msg, http.StatusUnauthorized)
		return
	}
	if n.boot.copying.Load() {
		w.Header().Set(headerStarting, "copying")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "starting: this replica is copying a peer's index itself; ask another", http.StatusServiceUnavailable)
		return
	}
	select {
	case n.serving <- struct{}{}:
		defer func() { <-n.serving }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy: serving other snapshots", http.StatusServiceUnavailable)
		return
	}
	start := time.Now()
	fw := n.writeSnapshot(w, r)
	log := n.log.WithValues("peer", r.RemoteAddr, "insertions", fw.insertions, "bytes", fw.bytes,
		"seconds", time.Since(start).Seconds())
	if fw.err != nil {
		log.Error(fw.err, "snapshot for a peer cut short")
		return
	}
	log.Info("served a snapshot of the prefix index to a peer")
}

// writeSnapshot answers 200 and streams the served producers' exports,
// a frame per batch, then the end frame; it stops at the first failed
// write (or when the peer goes away).
func (n *Node) writeSnapshot(w http.ResponseWriter, r *http.Request) *frameWriter {
	var serve []*prefix.Producer
	if set := n.producers.Load(); set != nil {
		serve = set.serve
	}
	rc := http.NewResponseController(w)
	// The server's ReadTimeout would otherwise cancel a long stream.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", snapshotContentType)
	w.WriteHeader(http.StatusOK)
	fw := newFrameWriter(w, n.opts.ID, n.opts.MaxBatchBytes-headerReserve)
	fw.before = func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(snapshotWriteTimeout))
		return r.Context().Err()
	}
	fw.after = rc.Flush
	for _, p := range serve {
		if fw.err != nil {
			break
		}
		p.Export(func(batch []prefix.Insertion) bool {
			for _, ins := range batch {
				fw.add(ins)
			}
			fw.seal()
			return fw.err == nil
		})
	}
	fw.end()
	return fw
}

// frameWriter writes a snapshot's frames, splitting insertions that do
// not fit one.
type frameWriter struct {
	w io.Writer
	// before and after, when set, run around the write of each frame
	// (deadline, cancellation; flush).
	before, after func() error
	p             *pending
	sender        string
	limit         int // bytes of strings and records one frame holds
	buf           []byte
	err           error // the first write error; nothing is written after it

	insertions int
	bytes      int64
}

func newFrameWriter(w io.Writer, sender string, limit int) *frameWriter {
	return &frameWriter{w: w, p: newPending(), sender: sender, limit: limit}
}

// add queues ins for the current frame, sealing frames as they fill. An
// insertion too big for the room left goes in parts, its oldest hashes
// (the end of Hashes) first, so that applying them in order keeps its
// LRU order.
func (fw *frameWriter) add(ins prefix.Insertion) {
	hs := ins.Hashes
	for fw.err == nil && len(hs) > 0 {
		room := (fw.limit - fw.p.size() - bound(prefix.Insertion{Producer: ins.Producer, HostPort: ins.HostPort})) / 8
		if room <= 0 && fw.p.n > 0 {
			fw.seal()
			continue
		}
		k := min(max(room, 1), len(hs))
		part := ins
		part.Hashes = hs[len(hs)-k:]
		fw.p.add(part)
		fw.insertions++
		hs = hs[:len(hs)-k]
	}
}

// seal writes the pending insertions as one frame.
func (fw *frameWriter) seal() {
	if fw.err != nil || fw.p.n == 0 {
		return
	}
	fw.buf = fw.p.appendBatch(append(fw.buf[:0], 0, 0, 0, 0), fw.sender)
	fw.p.reset()
	binary.BigEndian.PutUint32(fw.buf, uint32(len(fw.buf)-frameHeader))
	fw.write(fw.buf)
}

// end seals the last frame and writes the end frame.
func (fw *frameWriter) end() {
	fw.seal()
	if fw.err == nil {
		fw.write(make([]byte, frameHeader))
	}
}

func (fw *frameWriter) write(b []byte) {
	if fw.before != nil {
		if fw.err = fw.before(); fw.err != nil {
			return
		}
	}
	k, err := fw.w.Write(b)
	fw.bytes += int64(k)
	if err == nil && fw.after != nil {
		err = fw.after()
	}
	fw.err = err
}

// frameReader reads a snapshot's frames, enforcing its limits.
type frameReader struct {
	r        io.Reader
	maxFrame int
	maxTotal int64
	read     int64
	frames   int
	buf      []byte
	d        decoded
}

// next decodes the next frame. It returns io.EOF after the end frame, if
// nothing follows it; errTooLarge (wrapped) before reading past maxTotal;
// any other problem (a stream cut short, a frame too large or malformed)
// as an error naming it and the frame.
func (fr *frameReader) next() (*decoded, error) {
	var hdr [frameHeader]byte
	if fr.read+frameHeader > fr.maxTotal {
		return nil, fmt.Errorf("frame %d: %w (%d bytes)", fr.frames, errTooLarge, fr.maxTotal)
	}
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("frame %d length: %w", fr.frames, unexpected(err))
	}
	fr.read += frameHeader
	size := int64(binary.BigEndian.Uint32(hdr[:]))
	if size == 0 {
		var b [1]byte
		switch k, err := io.ReadFull(fr.r, b[:]); {
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		case k > 0:
			return nil, fmt.Errorf("bytes after the end frame (after %d frames)", fr.frames)
		default:
			return nil, fmt.Errorf("after the end frame: %w", err)
		}
	}
	if size > int64(fr.maxFrame) {
		return nil, fmt.Errorf("frame %d: %d bytes, more than this replica's maxBatchBytes (%d)", fr.frames, size, fr.maxFrame)
	}
	if fr.read+size > fr.maxTotal {
		return nil, fmt.Errorf("frame %d: %w (%d bytes)", fr.frames, errTooLarge, fr.maxTotal)
	}
	fr.buf = slices.Grow(fr.buf[:0], int(size))[:size]
	if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
		return nil, fmt.Errorf("frame %d of %d bytes: %w", fr.frames, size, unexpected(err))
	}
	fr.read += size
	if err := fr.d.decode(fr.buf); err != nil {
		return nil, fmt.Errorf("frame %d: %w", fr.frames, err)
	}
	if len(fr.d.dispatches) > 0 {
		return nil, fmt.Errorf("frame %d: holds %d dispatches; snapshots carry none", fr.frames, len(fr.d.dispatches))
	}
	fr.frames++
	return &fr.d, nil
}

// unexpected turns a clean EOF, which a stream may only reach after its
// end frame, into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return fmt.Errorf("stream ends without its end frame: %w", io.ErrUnexpectedEOF)
	}
	return err
}
