package replicasync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// encode returns the batch of insertions from sender.
func encode(sender string, ins ...prefix.Insertion) []byte { return encodeBatch(sender, ins, nil) }

// encodeBatch returns the batch of insertions and dispatches from sender.
func encodeBatch(sender string, ins []prefix.Insertion, ds []scheduler.Dispatch) []byte {
	p := newPending()
	for _, i := range ins {
		p.add(i)
	}
	for _, d := range ds {
		p.addDispatch(d)
	}
	return p.appendBatch(nil, sender)
}

// uv is x as a varint.
func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }

// sv is x as a signed varint.
func sv(x int64) []byte { return binary.AppendVarint(nil, x) }

// raw builds a body from parts, for hand-made malformed batches.
func raw(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// head is a valid header from sender "a" with the given string table.
func head(strs ...string) []byte {
	out := raw([]byte(magic), []byte{version}, uv(1), []byte("a"), uv(uint64(len(strs))))
	for _, s := range strs {
		out = append(out, uv(uint64(len(s)))...)
		out = append(out, s...)
	}
	return out
}

func le(h uint64) []byte { return binary.LittleEndian.AppendUint64(nil, h) }

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	ins := []prefix.Insertion{
		{Producer: "prefix", HostPort: "10.0.0.1:8000", BlockSizeTokens: 16, Hashes: []uint64{1, 2, 3}},
		{Producer: "prefix", HostPort: "10.0.0.2:8000", BlockSizeTokens: 64, Hashes: []uint64{0, ^uint64(0)}},
		{Producer: "other", HostPort: "10.0.0.1:8000", BlockSizeTokens: 1 << 30, Hashes: []uint64{42}},
		{Producer: "", HostPort: "[::1]:80", BlockSizeTokens: 1, Hashes: make([]uint64, 300)},
	}
	base := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	ds := []scheduler.Dispatch{
		{Plugin: "queue-scorer", HostPort: "10.0.0.1:8000", At: base},
		{Plugin: "queue-scorer", HostPort: "10.0.0.3:8000", At: base.Add(17 * time.Millisecond)},
		{Plugin: "queue-scorer", HostPort: "10.0.0.1:8000", At: base.Add(-3 * time.Millisecond)}, // before the base
		{Plugin: "queue-b", HostPort: "10.0.0.2:8000", At: base.Add(72 * time.Hour)},
		{Plugin: "queue-b", HostPort: "10.0.0.2:8000", At: time.Unix(0, 1)},
	}
	tests := []struct {
		name       string
		ins        []prefix.Insertion
		ds         []scheduler.Dispatch
		strs       int // the string table's entries: each string once
		dispatches int
	}{
		{name: "insertions only", ins: ins, strs: 6},
		{name: "dispatches only", ds: ds, strs: 5},
		{name: "both", ins: ins, ds: ds, strs: 9},
		{name: "neither (the hello)", strs: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var d decoded
			if err := d.decode(encodeBatch("replica-a", tc.ins, tc.ds)); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if d.sender != "replica-a" {
				t.Errorf("sender = %q, want replica-a", d.sender)
			}
			if diff := cmp.Diff(tc.ins, d.insertions, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("insertions (-sent +decoded):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ds, d.dispatches, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("dispatches (-sent +decoded):\n%s", diff)
			}
			if len(d.strs) != tc.strs {
				t.Errorf("string table has %d entries, want %d (each string once)", len(d.strs), tc.strs)
			}
			// A decoder reused for a second batch forgets the first.
			if err := d.decode(encode("b", ins[2])); err != nil || len(d.insertions) != 1 || len(d.dispatches) != 0 || d.sender != "b" {
				t.Errorf("second decode: %v, %d insertions and %d dispatches from %q; want 1 and 0 from b",
					err, len(d.insertions), len(d.dispatches), d.sender)
			}
		})
	}
}

// TestDispatchSize: a dispatch within a flush interval of its batch's
// first costs a few bytes once its strings are in the table.
func TestDispatchSize(t *testing.T) {
	t.Parallel()
	base := time.Now()
	var ds []scheduler.Dispatch
	for i := range 101 {
		hp := fmt.Sprintf("10.0.0.%d:8000", i%3)
		ds = append(ds, scheduler.Dispatch{Plugin: "queue-scorer", HostPort: hp, At: base.Add(time.Duration(i) * 200 * time.Microsecond)})
	}
	few, all := encodeBatch("a", nil, ds[:3]), encodeBatch("a", nil, ds)
	if per := float64(len(all)-len(few)) / 98; per > 6 {
		t.Errorf("%.1f bytes per dispatch, want at most 6", per)
	}
}

// malformed lists bodies every decoder must refuse, with what the error
// must say.
var malformed = []struct {
	name, want string
	body       []byte
}{
	{name: "empty", body: nil, want: "shorter than the header"},
	{name: "bad magic", body: raw([]byte("HTTP"), []byte{1}), want: "bad magic"},
	{name: "unknown version", body: raw([]byte(magic), []byte{2}), want: "unknown version 2"},
	{name: "no sender length", body: raw([]byte(magic), []byte{version}), want: "sender ID length: truncated"},
	{name: "empty sender", body: raw([]byte(magic), []byte{version}, uv(0)), want: "sender ID length 0"},
	{name: "sender longer than body", body: raw([]byte(magic), []byte{version}, uv(9), []byte("ab")), want: "sender ID length: 9 claimed"},
	{name: "sender too long", body: raw([]byte(magic), []byte{version}, uv(200), []byte(strings.Repeat("a", 200))), want: "sender ID length 200"},
	{name: "varint overflow", body: raw([]byte(magic), []byte{version}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), want: "overflows"},
	{name: "string count beyond body", body: raw([]byte(magic), []byte{version}, uv(1), []byte("a"), uv(1<<40)), want: "string table count: 1099511627776 claimed"},
	{name: "no string count", body: head()[:len(head())-1], want: "string table count: truncated"},
	{name: "truncated string", body: raw([]byte(magic), []byte{version}, uv(1), []byte("a"), uv(1), uv(5), []byte("ab")), want: "string 0 length: 5 claimed"},
	{name: "no record count", body: head("p", "h"), want: "record count: truncated"},
	{name: "absurd record count", body: raw(head("p", "h"), uv(1<<50)), want: "record count: 1125899906842624 claimed"},
	{name: "producer out of range", body: raw(head("p", "h"), uv(1), uv(2), uv(1), uv(16), uv(1), le(7)), want: "record 0 producer: string 2 out of range"},
	{name: "hostPort out of range", body: raw(head("p", "h"), uv(1), uv(0), uv(9), uv(16), uv(1), le(7)), want: "record 0 hostPort: string 9 out of range"},
	{name: "zero block size", body: raw(head("p", "h"), uv(1), uv(0), uv(1), uv(0), uv(1), le(7)), want: "record 0 blockSizeTokens: 0"},
	{name: "huge block size", body: raw(head("p", "h"), uv(1), uv(0), uv(1), uv(1<<40), uv(1), le(7)), want: "record 0 blockSizeTokens: 1099511627776"},
	{name: "no hashes", body: raw(head("p", "h"), uv(1), uv(0), uv(1), uv(16), uv(0), le(7)), want: "record 0 hash count: 0"},
	{name: "more hashes than bytes", body: raw(head("p", "h"), uv(1), uv(0), uv(1), uv(16), uv(1<<60), le(7)), want: "record 0 hash count: 1152921504606846976 claimed"},
	{name: "truncated hash", body: raw(head("p", "h"), uv(1), uv(0), uv(1), uv(16), uv(2), le(7), le(8))[:len(head("p", "h"))+5+15], want: "record 0 hash count: 2 claimed, but only 15"},
	{name: "missing record", body: raw(head("p", "h"), uv(2), uv(0), uv(1), uv(16), uv(1), le(7), []byte("0123456789ab"))[:len(head("p", "h"))+5+8], want: "record count: 2 claimed"},
	{name: "truncated second record", body: raw(head("p", "h"), uv(2), uv(0), uv(1), uv(16), uv(1), le(7), uv(0), uv(1), uv(16), uv(2), le(8), le(9))[:len(head("p", "h"))+5+8+4+11], want: "record 1 hash count: 2 claimed, but only 11"},
	{name: "no dispatch count", body: raw(head("p", "h"), uv(1), uv(0), uv(1), uv(16), uv(1), le(7)), want: "dispatch count: truncated"},
	{name: "absurd dispatch count", body: raw(head("p", "h"), uv(0), uv(1<<50)), want: "dispatch count: 1125899906842624 claimed"},
	{name: "dispatch count beyond body", body: raw(head("p", "h"), uv(0), uv(2), sv(0), uv(0), uv(1), sv(5)), want: "dispatch count: 2 claimed, but only 4"},
	{name: "truncated base time", body: raw(head("p", "h"), uv(0), uv(1), []byte{0x80, 0x80, 0x80}), want: "dispatch base time: truncated"},
	{name: "base time overflows", body: raw(head("p", "h"), uv(0), uv(1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), want: "dispatch base time: varint overflows"},
	{name: "plugin out of range", body: raw(head("p", "h"), uv(0), uv(1), sv(0), uv(2), uv(1), sv(0)), want: "dispatch 0 plugin: string 2 out of range"},
	{name: "dispatch hostPort out of range", body: raw(head("p", "h"), uv(0), uv(1), sv(0), uv(0), uv(5), sv(0)), want: "dispatch 0 hostPort: string 5 out of range"},
	{name: "truncated dispatch time", body: raw(head("p", "h"), uv(0), uv(1), sv(0), uv(0), uv(1)), want: "dispatch 0 time: truncated"},
	{name: "dispatch time overflows", body: raw(head("p", "h"), uv(0), uv(1), sv(0), uv(0), uv(1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), want: "dispatch 0 time: varint overflows"},
	{name: "truncated second dispatch", body: raw(head("p", "h"), uv(0), uv(2), sv(0), uv(0), uv(1), sv(0), uv(0), uv(1)), want: "dispatch 1 time: truncated"},
	{name: "trailing bytes", body: raw(head("p", "h"), uv(1), uv(0), uv(1), uv(16), uv(1), le(7), uv(0), []byte{0}), want: "1 trailing bytes after 1 records and 0 dispatches"},
	{name: "trailing bytes after dispatches", body: raw(head("p", "h"), uv(0), uv(1), sv(0), uv(0), uv(1), sv(-4), []byte{0}), want: "1 trailing bytes after 0 records and 1 dispatches"},
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var d decoded
			err := d.decode(tc.body)
			if err == nil {
				t.Fatalf("decode accepted %q", tc.body)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if got := errors.Is(err, errVersion); got != (tc.name == "unknown version") {
				t.Errorf("errors.Is(err, errVersion) = %v", got)
			}
		})
	}
}

// FuzzDecode: decode never panics, and whatever it accepts encodes back
// to a batch that decodes equal.
func FuzzDecode(f *testing.F) {
	f.Add(encode("a", prefix.Insertion{Producer: "p", HostPort: "h:1", BlockSizeTokens: 16, Hashes: []uint64{1, 2}}))
	f.Add(encode("replica-b",
		prefix.Insertion{Producer: "p", HostPort: "h:1", BlockSizeTokens: 16, Hashes: []uint64{1}},
		prefix.Insertion{Producer: "q", HostPort: "h:2", BlockSizeTokens: 64, Hashes: []uint64{3, 4, 5}}))
	at := time.Unix(1_700_000_000, 5)
	f.Add(encodeBatch("c", nil, []scheduler.Dispatch{
		{Plugin: "queue-scorer", HostPort: "h:1", At: at}, {Plugin: "queue-scorer", HostPort: "h:2", At: at.Add(-time.Millisecond)}}))
	f.Add(encodeBatch("d", []prefix.Insertion{{Producer: "p", HostPort: "h:1", BlockSizeTokens: 16, Hashes: []uint64{9}}},
		[]scheduler.Dispatch{{Plugin: "q", HostPort: "h:1", At: at}}))
	f.Add(encodeBatch("e", nil, nil))
	for _, tc := range malformed {
		f.Add(tc.body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var d decoded
		if err := d.decode(body); err != nil {
			return
		}
		again := encodeBatch(d.sender, d.insertions, d.dispatches)
		var d2 decoded
		if err := d2.decode(again); err != nil {
			t.Fatalf("re-encoded batch refused: %v", err)
		}
		if d2.sender != d.sender {
			t.Errorf("sender %q became %q", d.sender, d2.sender)
		}
		if diff := cmp.Diff(d.insertions, d2.insertions); diff != "" {
			t.Errorf("insertions changed (-first +again):\n%s", diff)
		}
		if diff := cmp.Diff(d.dispatches, d2.dispatches); diff != "" {
			t.Errorf("dispatches changed (-first +again):\n%s", diff)
		}
		for i, dp := range d.dispatches {
			if dp.At.UnixNano() != d2.dispatches[i].At.UnixNano() {
				t.Errorf("dispatch %d at %d ns became %d", i, dp.At.UnixNano(), d2.dispatches[i].At.UnixNano())
			}
		}
	})
}
