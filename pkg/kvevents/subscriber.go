package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Message is one received batch with its envelope.
type Message struct {
	Topic string
	Seq   uint64
	Batch *Batch
}

// GapError reports that a batch's sequence number is not the one after
// the previous batch of its topic and rank: Got > Want means Got-Want
// batches were missed (dropped by a full queue, or sent while
// disconnected); Got < Want means the publisher restarted and its cache
// with it. Either way the subscriber's view of that server is stale.
type GapError struct {
	Topic     string
	DPRank    int // valid only when HasDPRank
	HasDPRank bool
	Want, Got uint64
}

func (e *GapError) Error() string {
	rank := ""
	if e.HasDPRank {
		rank = fmt.Sprintf(" rank %d", e.DPRank)
	}
	if e.Got < e.Want {
		return fmt.Sprintf("kvevents: topic %q%s: sequence restarted at %d, want %d", e.Topic, rank, e.Got, e.Want)
	}
	return fmt.Sprintf("kvevents: topic %q%s: sequence gap: want %d, got %d (%d batches missed)",
		e.Topic, rank, e.Want, e.Got, e.Got-e.Want)
}

// Subscriber receives batches on a SUB socket.
type Subscriber struct {
	sock     zmq4.Socket
	endpoint string
	dialer   *dialer // nil when bound
	filter   string
	stop     chan struct{} // closed by Close
	running  atomic.Bool

	mu      sync.Mutex
	closed  bool
	stopCtx func() bool // unregisters the close on ctx's end
}

// NewSubscriber opens a SUB socket that receives the topics starting with
// topicFilter (llm-d uses "kv@"; "" is every topic). With bind it binds
// endpoint, and any number of publishers connect to it (central mode);
// otherwise Run connects to endpoint, one model server such as
// "tcp://10.0.0.5:5557" (per-pod mode), and reconnects whenever the
// connection drops or cannot be made, for as long as it runs. The socket
// closes when ctx ends or on Close.
func NewSubscriber(ctx context.Context, endpoint, topicFilter string, bind bool) (*Subscriber, error) {
	if err := checkEndpoint(endpoint, !bind); err != nil {
		return nil, fmt.Errorf("kvevents: subscriber: %w", err)
	}
	s := &Subscriber{endpoint: endpoint, filter: topicFilter, stop: make(chan struct{})}
	sockCtx := context.WithoutCancel(ctx)
	if !bind {
		s.dialer, sockCtx = newDialer(ctx, endpoint)
	}
	// One attempt per Dial: Run retries, with backoff, and stops on Close.
	s.sock = zmq4.NewSub(sockCtx, append(socketOptions(), zmq4.WithDialerMaxRetries(0))...)
	if err := s.sock.SetOption(zmq4.OptionSubscribe, topicFilter); err != nil {
		_ = closeSocket(s.sock)
		return nil, fmt.Errorf("kvevents: subscriber: %w", err)
	}
	if bind {
		if err := s.sock.Listen(tcpEndpoint(endpoint)); err != nil {
			_ = closeSocket(s.sock)
			return nil, fmt.Errorf("kvevents: subscriber: bind: %w", err)
		}
	}
	s.mu.Lock()
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.Close() })
	s.mu.Unlock()
	return s, nil
}

// Run receives messages until ctx ends or Close is called, and then
// closes the subscriber; it may be called once. It calls handle for each
// decoded message, in order, on Run's goroutine. A message that cannot
// be used (not three frames, a sequence frame that is not 8 bytes, a
// payload Decode rejects) goes to onError and is skipped. A sequence
// number that does not follow the previous one of its topic and rank is
// reported to onError as a *GapError, and the message is still handled.
// Lost and failed connections are reported as ErrDisconnected. onError
// may be nil. Run returns nil once stopped.
func (s *Subscriber) Run(ctx context.Context, handle func(Message), onError func(error)) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("kvevents: Run called twice")
	}
	if onError == nil {
		onError = func(error) {}
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	seqs := make(map[stream]uint64)
	for {
		if s.dialer != nil && !s.connect(onError) {
			return nil
		}
		s.receive(handle, onError, seqs)
		if s.isClosed() {
			return nil
		}
	}
}

// connect dials until it succeeds (true) or the subscriber closes. Only
// the first failure is reported: a server that is down is reported once,
// not every few seconds.
func (s *Subscriber) connect(onError func(error)) bool {
	for wait, reported := retryMin, false; ; wait = nextWait(wait) {
		_, err := s.dialer.dial(s.sock)
		if s.isClosed() {
			return false
		}
		if err == nil {
			return true
		}
		if !reported {
			onError(fmt.Errorf("%w: connect to %q (retrying): %w", ErrDisconnected, s.endpoint, err))
			reported = true
		}
		select {
		case <-s.stop:
			return false
		case <-time.After(wait):
		}
	}
}

// receive handles messages until the subscriber closes or, when it
// connects, the connection drops.
func (s *Subscriber) receive(handle func(Message), onError func(error), seqs map[stream]uint64) {
	for {
		msg, err := s.sock.Recv()
		if s.isClosed() {
			return
		}
		if err != nil {
			// zmq4 reports a connection's end as one error on Recv.
			onError(fmt.Errorf("%w: %s: %w", ErrDisconnected, s.endpoint, err))
			if s.dialer != nil {
				return
			}
			continue
		}
		if msg.Type == zmq4.CmdMsg { // ZMTP commands such as PING carry no events
			continue
		}
		m, err := parseMessage(msg.Frames)
		if err != nil {
			onError(err)
			continue
		}
		if !strings.HasPrefix(m.Topic, s.filter) { // the publisher filters; this is a safeguard
			continue
		}
		k := streamOf(m.Topic, m.Batch)
		if want, ok := seqs[k]; ok && m.Seq != want {
			onError(&GapError{Topic: m.Topic, DPRank: m.Batch.DPRank, HasDPRank: m.Batch.HasDPRank, Want: want, Got: m.Seq})
		}
		seqs[k] = m.Seq + 1
		handle(m)
	}
}

func parseMessage(frames [][]byte) (Message, error) {
	if len(frames) != 3 {
		return Message{}, fmt.Errorf("kvevents: message of %d frames, want 3 (topic, sequence, payload)", len(frames))
	}
	m := Message{Topic: string(frames[0])}
	if len(frames[1]) != 8 {
		return Message{}, fmt.Errorf("kvevents: topic %q: sequence frame of %d bytes, want 8", m.Topic, len(frames[1]))
	}
	m.Seq = binary.BigEndian.Uint64(frames[1])
	b, err := decode(frames[2])
	if err != nil {
		return Message{}, fmt.Errorf("kvevents: topic %q seq %d: %w", m.Topic, m.Seq, err)
	}
	m.Batch = b
	return m, nil
}

// Addr returns the bound address as an endpoint ("tcp://127.0.0.1:40123"),
// or "" when the subscriber connects.
func (s *Subscriber) Addr() string { return boundAddr(s.sock, s.endpoint) }

// Close closes the socket and stops Run.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	closed, stopCtx := s.closed, s.stopCtx
	s.closed = true
	s.mu.Unlock()
	if closed {
		return nil
	}
	if stopCtx != nil {
		stopCtx()
	}
	close(s.stop)
	if s.dialer != nil {
		s.dialer.close()
	}
	return closeSocket(s.sock)
}

func (s *Subscriber) isClosed() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}
