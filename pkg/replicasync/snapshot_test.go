package replicasync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/prefix"
)

// frame returns body as one frame.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// endFrame ends a snapshot.
var endFrame = []byte{0, 0, 0, 0}

// TestSnapshotRefuses: the snapshot path wants GET, the token, and a free
// slot.
func TestSnapshotRefuses(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	r := startReplica(t, eps, func(o *Options) { o.Token = []byte("s3cret") })
	get := func(method, auth string) (int, http.Header, string) {
		status, body, header := call(t, method, "http://"+r.addr()+snapshotPath, auth, nil)
		return status, header, body
	}
	if code, _, msg := get(http.MethodGet, ""); code != http.StatusUnauthorized || !strings.Contains(msg, "missing token") {
		t.Errorf("no token: %d %q, want 401", code, msg)
	}
	if code, _, msg := get(http.MethodGet, "Bearer guess"); code != http.StatusUnauthorized || !strings.Contains(msg, "wrong token") {
		t.Errorf("wrong token: %d %q, want 401", code, msg)
	}
	if code, h, _ := get(http.MethodPost, "Bearer s3cret"); code != http.StatusMethodNotAllowed || h.Get("Allow") != http.MethodGet {
		t.Errorf("POST: %d, Allow %q; want 405, GET", code, h.Get("Allow"))
	}
	code, h, body := get(http.MethodGet, "Bearer s3cret")
	if code != http.StatusOK || h.Get(headerReplicaID) != r.node.ID() || h.Get("Content-Type") != snapshotContentType || body != string(endFrame) {
		t.Errorf("empty index: %d, %v, %q; want 200 and only the end frame", code, h, body)
	}
	for range maxSnapshotsServed {
		r.node.serving <- struct{}{}
	}
	if code, _, msg := get(http.MethodGet, "Bearer s3cret"); code != http.StatusServiceUnavailable {
		t.Errorf("all slots taken: %d %q, want 503", code, msg)
	}
	for range maxSnapshotsServed {
		<-r.node.serving
	}
}

// readAll reads a snapshot whole: its frames' insertions, copied, in order.
func readAll(stream []byte, maxFrame int, maxTotal int64) ([]prefix.Insertion, error) {
	fr := &frameReader{r: bytes.NewReader(stream), maxFrame: maxFrame, maxTotal: maxTotal}
	var out []prefix.Insertion
	for {
		d, err := fr.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for _, ins := range d.insertions {
			ins.Hashes = slices.Clone(ins.Hashes)
			out = append(out, ins)
		}
	}
}

// TestFrameSplitKeepsOrder: an insertion larger than a frame travels in
// parts, oldest hashes first, so applying the parts in order records them
// as the whole would.
func TestFrameSplitKeepsOrder(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	fw := newFrameWriter(&buf, "peer", 1000)
	big := insertion("big", newEndpoints(1)[0], 1000)
	small := insertion("small", newEndpoints(2)[1], 3)
	fw.add(small)
	fw.add(big)
	fw.end()
	got, err := readAll(buf.Bytes(), 1024, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 8 || !cmp.Equal(got[0], small) {
		t.Fatalf("%d insertions, first %+v; want the small one, then the big one in parts", len(got), got[0])
	}
	var whole []uint64
	for _, part := range slices.Backward(got[1:]) {
		whole = append(whole, part.Hashes...)
	}
	if diff := cmp.Diff(big.Hashes, whole); diff != "" {
		t.Errorf("parts, most recent first, differ from the insertion (-want +got):\n%s", diff)
	}
}

// FuzzSnapshot: reading a snapshot never panics, and one read whole writes
// back to a stream that reads the same.
func FuzzSnapshot(f *testing.F) {
	one := frame(encode("a", prefix.Insertion{Producer: "p", HostPort: "h:1", BlockSizeTokens: 16, Hashes: []uint64{1, 2}}))
	f.Add(endFrame)
	f.Add(raw(one, endFrame))
	f.Add(raw(one, one, endFrame, []byte{0}))
	f.Add(raw(one[:7]))
	f.Add(raw(binary.BigEndian.AppendUint32(nil, 1<<31)))
	for _, tc := range malformed {
		f.Add(raw(frame(tc.body), endFrame))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		got, err := readAll(stream, 4<<10, 1<<16)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		fw := newFrameWriter(&buf, "a", 1<<20) // frames of any size read, records never split
		for _, ins := range got {
			fw.add(ins)
		}
		fw.end()
		again, err := readAll(buf.Bytes(), 1<<21, 1<<22)
		if err != nil {
			t.Fatalf("re-written snapshot refused: %v", err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Errorf("insertions changed (-first +again):\n%s", diff)
		}
	})
}

// cutWriter is a response whose connection breaks after left bytes.
type cutWriter struct {
	h    http.Header
	left int
}

func (w *cutWriter) Header() http.Header { return w.h }
func (w *cutWriter) WriteHeader(int)     {}
func (w *cutWriter) Flush()              {}
func (w *cutWriter) Write(b []byte) (int, error) {
	if len(b) > w.left {
		return 0, errors.New("connection reset by peer")
	}
	w.left -= len(b)
	return len(b), nil
}

// TestSnapshotCutShort: a snapshot whose peer goes away stops at the
// first failed write and is logged once.
func TestSnapshotCutShort(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(4)
	var logs logRecorder
	a := startReplica(t, eps, func(o *Options) { o.Log = logs.logger() })
	fill(a, eps, 60)
	w := &cutWriter{h: http.Header{}, left: 50 << 10}
	a.node.serveSnapshot(w, httptest.NewRequest(http.MethodGet, snapshotPath, nil))
	if logs.count("snapshot for a peer cut short") != 1 || logs.count("served a snapshot") != 0 {
		t.Errorf("logged cut short %d times, served %d; want once, never", logs.count("snapshot for a peer cut short"), logs.count("served a snapshot"))
	}
	if len(a.node.serving) != 0 {
		t.Errorf("%d snapshot slots still taken", len(a.node.serving))
	}
}
