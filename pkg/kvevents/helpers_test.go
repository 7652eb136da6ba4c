package kvevents

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vmihailenco/msgpack/v5"
)

// Values for pack, which writes msgpack with msgpack's Encoder directly,
// the way an independent encoder (vLLM's msgspec) would, not through
// AppendEncode.
type (
	arr []any  // an array
	obj []any  // a map, as key, value, key, value... in this order
	raw []byte // bytes written as they are, to forge headers
)

func pack(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	var put func(v any) error
	put = func(v any) error {
		switch v := v.(type) {
		case nil:
			return enc.EncodeNil()
		case bool:
			return enc.EncodeBool(v)
		case string:
			return enc.EncodeString(v)
		case int:
			return enc.EncodeInt(int64(v))
		case uint64:
			return enc.EncodeUint(v)
		case float64:
			return enc.EncodeFloat64(v)
		case []byte:
			return enc.EncodeBytes(v)
		case raw:
			_, err := buf.Write(v)
			return err
		case arr:
			if err := enc.EncodeArrayLen(len(v)); err != nil {
				return err
			}
			for _, x := range v {
				if err := put(x); err != nil {
					return err
				}
			}
			return nil
		case obj:
			if err := enc.EncodeMapLen(len(v) / 2); err != nil {
				return err
			}
			for _, x := range v {
				if err := put(x); err != nil {
					return err
				}
			}
			return nil
		}
		t.Fatalf("pack: unsupported %T", v)
		return nil
	}
	if err := put(v); err != nil {
		t.Fatalf("pack: %v", err)
	}
	return buf.Bytes()
}

// batchOpts compares batches: an empty event list equals a nil one.
var batchOpts = cmp.Options{cmpopts.EquateEmpty(), cmpopts.EquateNaNs()}

func mustEncode(t testing.TB, b *Batch) []byte {
	t.Helper()
	payload, err := b.AppendEncode(nil)
	if err != nil {
		t.Fatalf("AppendEncode: %v", err)
	}
	return payload
}

// realisticBatch is one engine step storing a 256-token prompt: 16
// blocks of 16 tokens with 64-bit hashes, as vLLM sends it by default.
func realisticBatch() *Batch {
	e := &BlockStored{BlockSize: 16, Medium: "GPU", HasParent: true, Parent: 0x9e3779b97f4a7c15}
	for i := range 16 {
		e.BlockHashes = append(e.BlockHashes, Hash(0xcbf29ce484222325*uint64(i+1)))
	}
	for i := range 256 {
		e.TokenIDs = append(e.TokenIDs, uint32(1000+i*37%128000))
	}
	return &Batch{TS: 1.7e9, Events: []Event{e}, DPRank: 0, HasDPRank: true}
}

// wait bounds every wait of these tests; the usual time is milliseconds.
const wait = 10 * time.Second

// probeTS marks the batches await publishes until a subscription is up
// (a PUB socket drops what it sends before the subscription arrives).
const probeTS = -1

// received collects what a running Subscriber delivers.
type received struct {
	msgs chan Message
	errs chan error
	done chan error
}

// run runs s until the test ends, then checks that Close stops it.
func run(t *testing.T, s *Subscriber) *received {
	t.Helper()
	r := &received{msgs: make(chan Message, 10_000), errs: make(chan error, 10_000), done: make(chan error, 1)}
	go func() {
		r.done <- s.Run(context.Background(), func(m Message) { r.msgs <- m }, func(err error) { r.errs <- err })
	}()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Run did not return after Close")
		}
	})
	return r
}

// next returns the next message on topic that is not a probe.
func (r *received) next(t *testing.T, topic string) Message {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m := <-r.msgs:
			if m.Topic == topic && m.Batch.TS != probeTS {
				return m
			}
		case <-timeout:
			t.Fatalf("no message on %q within %v", topic, wait)
		}
	}
}

// nextErr returns the next error that satisfies match.
func (r *received) nextErr(t *testing.T, match func(error) bool) error {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case err := <-r.errs:
			if match(err) {
				return err
			}
		case <-timeout:
			t.Fatalf("no matching error within %v", wait)
		}
	}
}

// noErrors fails on any error reported so far.
func (r *received) noErrors(t *testing.T) {
	t.Helper()
	for {
		select {
		case err := <-r.errs:
			t.Errorf("unexpected error: %v", err)
		default:
			return
		}
	}
}

// await publishes probes on topic until one arrives.
func await(t *testing.T, p *Publisher, topic string, r *received) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(wait)
	for {
		if err := p.Publish(topic, &Batch{TS: probeTS}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		select {
		case m := <-r.msgs:
			if m.Topic == topic {
				return
			}
		case <-tick.C:
		case <-timeout:
			t.Fatalf("no probe on %q arrived within %v", topic, wait)
		}
	}
}

func newPublisher(t *testing.T, endpoint string, connect bool) *Publisher {
	t.Helper()
	p, err := NewPublisher(context.Background(), endpoint, connect)
	if err != nil {
		t.Fatalf("NewPublisher(%q, %v): %v", endpoint, connect, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newSubscriber(t *testing.T, endpoint, filter string, bind bool) *Subscriber {
	t.Helper()
	s, err := NewSubscriber(context.Background(), endpoint, filter, bind)
	if err != nil {
		t.Fatalf("NewSubscriber(%q, %v): %v", endpoint, bind, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rebind binds addr again once its previous owner has let go.
func rebind[T any](t *testing.T, addr string, open func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		v, err := open()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("bind %s again: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawPublisher is a bare zmq4 PUB socket, to send frames Publisher never
// would.
func rawPublisher(t *testing.T) (zmq4.Socket, string) {
	t.Helper()
	sock := zmq4.NewPub(context.Background())
	if err := sock.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = sock.Close() })
	return sock, "tcp://" + sock.Addr().String()
}

func sendRaw(t *testing.T, sock zmq4.Socket, frames ...[]byte) {
	t.Helper()
	if err := sock.SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
		t.Fatalf("SendMulti: %v", err)
	}
}

// awaitRaw sends probe messages with sequence number seq until one
// arrives.
func awaitRaw(t *testing.T, sock zmq4.Socket, topic string, seq uint64, r *received) {
	t.Helper()
	probe := mustEncode(t, &Batch{TS: probeTS})
	timeout := time.After(wait)
	for {
		sendRaw(t, sock, []byte(topic), seqFrame(seq), probe)
		select {
		case <-r.msgs:
			return
		case <-time.After(10 * time.Millisecond):
		case <-timeout:
			t.Fatalf("no probe arrived within %v", wait)
		}
	}
}

// fakeServer accepts TCP connections and hands each to serve.
func fakeServer(t *testing.T, serve func(net.Conn)) (endpoint string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	stop = func() { _ = l.Close(); wg.Wait() }
	t.Cleanup(stop)
	return "tcp://" + l.Addr().String(), stop
}

// closedByPeer waits until the peer closes c.
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}
