package kvevents

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPublisherBindSubscriberConnect(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.5@meta-llama/Llama-3.1-8B"
	pub := newPublisher(t, "tcp://127.0.0.1:0", false)
	if !strings.HasPrefix(pub.Addr(), "tcp://127.0.0.1:") || strings.HasSuffix(pub.Addr(), ":0") {
		t.Fatalf("Addr() = %q, want the bound port", pub.Addr())
	}
	sub := newSubscriber(t, pub.Addr(), "kv@", false)
	if sub.Addr() != "" {
		t.Errorf("connecting subscriber's Addr() = %q, want empty", sub.Addr())
	}
	r := run(t, sub)
	await(t, pub, topic, r)

	batches := []*Batch{
		realisticBatch(),
		{TS: 2, Events: []Event{&BlockRemoved{BlockHashes: []Hash{1, 2}, Medium: "GPU"}}, HasDPRank: true},
		{TS: 3, Events: []Event{&AllBlocksCleared{}}, HasDPRank: true},
	}
	var first uint64
	for i, b := range batches {
		if err := pub.Publish(topic, b); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		m := r.next(t, topic)
		if i == 0 {
			first = m.Seq
		}
		if m.Seq != first+uint64(i) {
			t.Errorf("batch %d: Seq = %d, want %d", i, m.Seq, first+uint64(i))
		}
		if diff := cmp.Diff(b, m.Batch, batchOpts); diff != "" {
			t.Errorf("batch %d (-sent +received):\n%s", i, diff)
		}
	}
	r.noErrors(t)
}

func TestCentralMode(t *testing.T) {
	t.Parallel()
	sub := newSubscriber(t, "tcp://127.0.0.1:0", "kv@", true)
	r := run(t, sub)
	topics := []string{"kv@10.0.0.1@m", "kv@10.0.0.2@m"}
	var pubs []*Publisher
	for _, topic := range topics {
		p := newPublisher(t, sub.Addr(), true)
		if p.Addr() != "" {
			t.Errorf("connecting publisher's Addr() = %q, want empty", p.Addr())
		}
		await(t, p, topic, r)
		pubs = append(pubs, p)
	}
	other := newPublisher(t, sub.Addr(), true)
	// The excluded topic is sent before and while the others are, so that
	// it would arrive before their last batches if it passed the filter.
	for i := range 20 {
		if err := other.Publish("stats@10.0.0.3@m", &Batch{TS: 5}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		for j, p := range pubs {
			if err := p.Publish(topics[j], &Batch{TS: float64(i)}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := map[string]int{}
	for len(got) < 2 || got[topics[0]] < 20 || got[topics[1]] < 20 {
		select {
		case m := <-r.msgs:
			if m.Batch.TS != probeTS {
				got[m.Topic]++
			}
		case <-time.After(wait):
			t.Fatalf("received %v, want 20 batches of each of %v", got, topics)
		}
	}
	if len(got) != 2 {
		t.Errorf("received topics %v, want only %v", got, topics)
	}
	r.noErrors(t)
}

func TestGaps(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.7@m"
	sock, addr := rawPublisher(t)
	r := run(t, newSubscriber(t, addr, "kv@", false))
	awaitRaw(t, sock, topic, 5, r)
	batch := func(rank int, has bool) []byte {
		return mustEncode(t, &Batch{TS: 1, DPRank: rank, HasDPRank: has})
	}
	sendRaw(t, sock, []byte(topic), seqFrame(6), batch(0, false))
	sendRaw(t, sock, []byte(topic), seqFrame(9), batch(0, false)) // 7 and 8 missed
	sendRaw(t, sock, []byte(topic), seqFrame(0), batch(0, false)) // publisher restarted
	sendRaw(t, sock, []byte(topic), seqFrame(0), batch(1, true))  // rank 1: its own sequence
	sendRaw(t, sock, []byte(topic), seqFrame(1), batch(1, true))  // follows
	sendRaw(t, sock, []byte(topic), seqFrame(3), batch(1, true))  // 2 missed
	sendRaw(t, sock, []byte(topic), seqFrame(1), batch(0, false)) // follows the restart
	for _, want := range []uint64{6, 9, 0, 0, 1, 3, 1} {
		if m := r.next(t, topic); m.Seq != want {
			t.Errorf("Seq = %d, want %d (every message is handled)", m.Seq, want)
		}
	}
	var gaps []GapError
	for range 3 {
		var gap *GapError
		_ = r.nextErr(t, func(err error) bool { return errors.As(err, &gap) })
		gaps = append(gaps, *gap)
	}
	want := []GapError{
		{Topic: topic, Want: 7, Got: 9},
		{Topic: topic, Want: 10, Got: 0},
		{Topic: topic, DPRank: 1, HasDPRank: true, Want: 2, Got: 3},
	}
	if diff := cmp.Diff(want, gaps); diff != "" {
		t.Errorf("gaps (-want +got):\n%s", diff)
	}
	if msg := gaps[1].Error(); !strings.Contains(msg, "restarted") {
		t.Errorf("GapError.Error() = %q, want it to say the sequence restarted", msg)
	}
	r.noErrors(t)
}

func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.8@m"
	sock, addr := rawPublisher(t)
	r := run(t, newSubscriber(t, addr, "kv@", false))
	awaitRaw(t, sock, topic, 0, r)
	good := mustEncode(t, &Batch{TS: 1})
	sendRaw(t, sock, []byte(topic), good)                         // 2 frames
	sendRaw(t, sock, []byte(topic), []byte{0, 0, 0, 1}, good)     // short sequence frame
	sendRaw(t, sock, []byte(topic), seqFrame(1), []byte{0x93, 1}) // bad payload
	sendRaw(t, sock, []byte(topic), seqFrame(2), good)            // fine again
	if m := r.next(t, topic); m.Seq != 2 {
		t.Errorf("Seq = %d, want 2", m.Seq)
	}
	for _, want := range []string{
		"message of 2 frames, want 3",
		`topic "kv@10.0.0.8@m": sequence frame of 4 bytes, want 8`,
		`topic "kv@10.0.0.8@m" seq 1: batch: array of 3 elements but 1 bytes left`,
	} {
		err := r.nextErr(t, func(error) bool { return true })
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q, want it to contain %q", err, want)
		}
	}
	// Seq 1 was not decodable, so seq 2 follows the probe's 0 with a gap.
	err := r.nextErr(t, func(error) bool { return true })
	var gap *GapError
	if !errors.As(err, &gap) || gap.Want != 1 || gap.Got != 2 {
		t.Errorf("error = %v, want a gap from 1 to 2", err)
	}
}

// TestSubscriberReconnects restarts the publisher on the same port: the
// subscriber reports the lost connection, reconnects and receives again.
func TestSubscriberReconnects(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.9@m"
	pub := newPublisher(t, "tcp://127.0.0.1:0", false)
	addr := pub.Addr()
	r := run(t, newSubscriber(t, addr, "kv@", false))
	await(t, pub, topic, r)
	if err := pub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := pub.Publish(topic, &Batch{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	_ = r.nextErr(t, func(err error) bool { return errors.Is(err, ErrDisconnected) })

	pub = rebind(t, addr, func() (*Publisher, error) { return NewPublisher(context.Background(), addr, false) })
	t.Cleanup(func() { _ = pub.Close() })
	await(t, pub, topic, r)
	if err := pub.Publish(topic, &Batch{TS: 42}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if m := r.next(t, topic); m.Batch.TS != 42 {
		t.Errorf("TS = %v, want 42", m.Batch.TS)
	}
}

// TestPublisherReconnects restarts the bound subscriber (central mode):
// connecting publishers find it again.
func TestPublisherReconnects(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.10@m"
	sub := newSubscriber(t, "tcp://127.0.0.1:0", "kv@", true)
	addr := sub.Addr()
	r := run(t, sub)
	pub := newPublisher(t, addr, true)
	await(t, pub, topic, r)
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	sub = rebind(t, addr, func() (*Subscriber, error) { return NewSubscriber(context.Background(), addr, "kv@", true) })
	t.Cleanup(func() { _ = sub.Close() })
	r = run(t, sub)
	await(t, pub, topic, r)
}

// TestSubscriberWaitsForPublisher starts the subscriber first: it keeps
// trying, reports the failure once, and connects when the publisher
// appears.
func TestSubscriberWaitsForPublisher(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.11@m"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tcp://" + l.Addr().String()
	_ = l.Close() // nothing listens there now
	r := run(t, newSubscriber(t, addr, "kv@", false))
	_ = r.nextErr(t, func(err error) bool { return errors.Is(err, ErrDisconnected) })
	pub := rebind(t, addr, func() (*Publisher, error) { return NewPublisher(context.Background(), addr, false) })
	t.Cleanup(func() { _ = pub.Close() })
	await(t, pub, topic, r)
}

func TestRunStops(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "tcp://" + l.Addr().String()
	_ = l.Close()
	tests := []struct {
		name     string
		endpoint string
		bind     bool
		stop     func(s *Subscriber, cancel context.CancelFunc)
	}{
		{name: "close while connecting", endpoint: nowhere, stop: func(s *Subscriber, _ context.CancelFunc) { _ = s.Close() }},
		{name: "cancel while connecting", endpoint: nowhere, stop: func(_ *Subscriber, cancel context.CancelFunc) { cancel() }},
		{name: "close while bound", endpoint: "tcp://127.0.0.1:0", bind: true, stop: func(s *Subscriber, _ context.CancelFunc) { _ = s.Close() }},
		{name: "cancel while bound", endpoint: "tcp://127.0.0.1:0", bind: true, stop: func(_ *Subscriber, cancel context.CancelFunc) { cancel() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubscriber(t, tt.endpoint, "", tt.bind)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx, func(Message) {}, nil) }()
			time.Sleep(300 * time.Millisecond) // into the dial retries, or waiting for publishers
			start := time.Now()
			tt.stop(s, cancel)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("Run took %v to stop", d)
				}
			case <-time.After(wait):
				t.Fatal("Run did not stop")
			}
			if err := s.Run(ctx, func(Message) {}, nil); err == nil {
				t.Error("second Run = nil, want an error")
			}
		})
	}
}

// TestContextCloses checks that the constructors' ctx bounds the sockets.
func TestContextCloses(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	pub, err := NewPublisher(ctx, "tcp://127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := NewSubscriber(ctx, pub.Addr(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = sub.Run(context.Background(), func(Message) {}, nil)
	}()
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run did not stop when the subscriber's ctx ended")
	}
	deadline := time.Now().Add(wait)
	for !errors.Is(pub.Publish("kv@a@b", &Batch{}), ErrClosed) {
		if time.Now().After(deadline) {
			t.Fatal("publisher still open after its ctx ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBadEndpoints(t *testing.T) {
	t.Parallel()
	busy := newPublisher(t, "tcp://127.0.0.1:0", false)
	for _, endpoint := range []string{"127.0.0.1:5557", "http://127.0.0.1:5557", "tcp://127.0.0.1", "tcp://"} {
		if _, err := NewPublisher(context.Background(), endpoint, false); err == nil {
			t.Errorf("NewPublisher(%q) succeeded", endpoint)
		}
		if _, err := NewSubscriber(context.Background(), endpoint, "", false); err == nil {
			t.Errorf("NewSubscriber(%q) succeeded", endpoint)
		}
	}
	if _, err := NewPublisher(context.Background(), busy.Addr(), false); err == nil {
		t.Errorf("NewPublisher on a bound port succeeded")
	}
	if _, err := NewSubscriber(context.Background(), busy.Addr(), "", true); err == nil {
		t.Errorf("NewSubscriber on a bound port succeeded")
	}
}

// TestHandshakeFailures points the subscriber at a server that is not
// ZeroMQ: it reports it, closes each failed connection, keeps trying,
// and connects once a publisher takes the port.
func TestHandshakeFailures(t *testing.T) {
	t.Parallel()
	const topic = "kv@10.0.0.12@m"
	var attempts, closed sync.WaitGroup
	attempts.Add(2)
	closed.Add(2)
	var mu sync.Mutex
	n := 0
	addr, stop := fakeServer(t, func(c net.Conn) {
		// At least a ZMTP greeting's 64 bytes, so that it is read whole.
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		mu.Lock()
		n++
		first := n <= 2
		mu.Unlock()
		if first {
			attempts.Done()
		}
		if closedByPeer(c) && first {
			closed.Done()
		}
	})
	r := run(t, newSubscriber(t, addr, "kv@", false))
	_ = r.nextErr(t, func(err error) bool { return errors.Is(err, ErrDisconnected) })
	attempts.Wait()
	closed.Wait() // the subscriber closed the connections whose handshake failed
	stop()
	pub := rebind(t, addr, func() (*Publisher, error) { return NewPublisher(context.Background(), addr, false) })
	t.Cleanup(func() { _ = pub.Close() })
	await(t, pub, topic, r)
}

// TestCloseDuringHandshake points both connecting sides at a server that
// accepts and never answers: Close still stops them at once.
func TestCloseDuringHandshake(t *testing.T) {
	t.Parallel()
	accepted := make(chan net.Conn, 2)
	addr, _ := fakeServer(t, func(c net.Conn) {
		accepted <- c
		closedByPeer(c)
	})

	sub := newSubscriber(t, addr, "", false)
	done := make(chan error, 1)
	go func() { done <- sub.Run(context.Background(), func(Message) {}, nil) }()
	pub := newPublisher(t, addr, true)
	for range 2 {
		select {
		case <-accepted:
		case <-time.After(wait):
			t.Fatal("no connection to the silent server")
		}
	}
	start := time.Now()
	if err := sub.Close(); err != nil {
		t.Errorf("Subscriber.Close: %v", err)
	}
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run did not stop during a handshake")
	}
	if err := pub.Close(); err != nil {
		t.Errorf("Publisher.Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("closing took %v", d)
	}
}
