package kvevents

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
)

// header is a ZMTP frame header.
func header(flags byte, size uint64) []byte {
	if size > 255 {
		return binary.BigEndian.AppendUint64([]byte{flags | flagLong}, size)
	}
	return []byte{flags, byte(size)}
}

func TestFrameGuard(t *testing.T) {
	t.Parallel()
	greeting := bytes.Repeat([]byte{0xff}, greetingSize)
	frames := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{greeting}, parts...), nil) }
	tests := []struct {
		name   string
		stream []byte
		want   string // "" for no error
	}{
		{name: "short and long frames", stream: frames(
			header(0x04, 3), []byte("abc"), // a command
			header(flagMore, 1), []byte("t"), header(flagMore, 8), make([]byte, 8), header(0, 300), make([]byte, 300),
		)},
		{name: "empty frames", stream: frames(header(flagMore, 0), header(0, 0))},
		{name: "frame at the limit", stream: frames(header(0, 0), header(0, maxFrameSize))},
		{name: "frame over the limit", stream: frames(header(0, 1), []byte("x"), header(0, maxFrameSize+1)), want: fmt.Sprintf("frame of %d bytes", maxFrameSize+1)},
		{name: "forged size", stream: frames(header(0, 1<<62)), want: "frame of 4611686018427387904 bytes"},
		{name: "too many frames", stream: frames(bytes.Repeat(header(flagMore, 0), maxFrames+1)), want: "more than 16 frames"},
		{name: "frames counted per message", stream: frames(bytes.Repeat(append(header(flagMore, 0), header(0, 0)...), maxFrames))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Whole, and split at every byte: reads come in any size.
			for _, chunk := range []int{len(tt.stream), 1, 7} {
				g := frameGuard{greeting: greetingSize}
				var err error
				for p := tt.stream; len(p) > 0 && err == nil; {
					k := min(chunk, len(p))
					err = g.scan(p[:k])
					p = p[k:]
				}
				switch {
				case tt.want == "" && err == nil && !g.ready:
					t.Errorf("chunks of %d: not ready after the first frame", chunk)
				case tt.want == "" && err != nil:
					t.Errorf("chunks of %d: scan = %v", chunk, err)
				case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
					t.Errorf("chunks of %d: scan = %v, want %q", chunk, err, tt.want)
				}
			}
		})
	}
}

// TestForgedFrameSize sends a frame header claiming 2^62 bytes, which
// would make zmq4 panic: the connection is dropped instead, and the
// subscriber goes on.
func TestForgedFrameSize(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.13@m"
	sub := newSubscriber(t, "tcp://127.0.0.1:0", "kv@", true)
	r := run(t, sub)
	c, err := net.Dial("tcp", strings.TrimPrefix(sub.Addr(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := zmq4.Open(c, null.Security(), zmq4.Pub, zmq4.SocketIdentity("forger"), false, nil); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if _, err := c.Write(header(0, 1<<62)); err != nil {
		t.Fatal(err)
	}
	err = r.nextErr(t, func(err error) bool { return errors.Is(err, ErrDisconnected) })
	if !strings.Contains(err.Error(), "frame of 4611686018427387904 bytes") {
		t.Errorf("error = %v, want it to name the frame size", err)
	}
	await(t, newPublisher(t, sub.Addr(), true), topic, r)
}

func TestTransportAddr(t *testing.T) {
	t.Parallel()
	for ep, want := range map[string]string{"*:5557": ":5557", "10.0.0.1:*": "10.0.0.1:0", "[::1]:": "[::1]:0", "h:1": "h:1"} {
		if got, err := (transportImpl{}).Addr(ep); err != nil || got != want {
			t.Errorf("Addr(%q) = %q, %v; want %q", ep, got, err, want)
		}
	}
	if _, err := (transportImpl{}).Addr("no-port"); err == nil {
		t.Error("Addr(no-port) succeeded")
	}
	pub := newPublisher(t, "tcp://*:0", false)
	if !strings.HasPrefix(pub.Addr(), "tcp://") || strings.HasSuffix(pub.Addr(), ":0") {
		t.Errorf("Addr() = %q after binding tcp://*:0", pub.Addr())
	}
	if _, err := NewPublisher(context.Background(), tcpTransport+"://127.0.0.1:0", false); err == nil {
		t.Errorf("NewPublisher accepted the internal transport's name")
	}
}

// TestSilentClient connects a client that never speaks to a bound
// subscriber: zmq4 accepts one handshake at a time, so a publisher gets
// in once the handshake deadline drops the silent client. Connections
// outlive that deadline.
func TestSilentClient(t *testing.T) {
	t.Parallel()
	topics := []string{"kv@10.0.0.14@m", "kv@10.0.0.15@m"}
	sub := newSubscriber(t, "tcp://127.0.0.1:0", "kv@", true)
	r := run(t, sub)
	early := newPublisher(t, sub.Addr(), true)
	await(t, early, topics[0], r)
	connected := time.Now()

	silent, err := net.Dial("tcp", strings.TrimPrefix(sub.Addr(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	await(t, newPublisher(t, sub.Addr(), true), topics[1], r)

	time.Sleep(time.Until(connected.Add(connectTimeout + time.Second)))
	if err := early.Publish(topics[0], &Batch{TS: 1}); err != nil {
		t.Fatal(err)
	}
	r.next(t, topics[0])
	r.noErrors(t)
}
