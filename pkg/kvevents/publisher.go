package kvevents

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Publisher publishes batches on a PUB socket, as a model server does.
// It is safe for concurrent use.
type Publisher struct {
	sock     zmq4.Socket
	endpoint string
	dialer   *dialer // nil when bound
	stop     chan struct{}
	dialing  sync.WaitGroup

	mu      sync.Mutex
	seqs    map[stream]uint64
	closed  bool
	stopCtx func() bool // unregisters the close on ctx's end
}

// NewPublisher opens a PUB socket on endpoint. It binds it, like vLLM
// with "tcp://*:5557" (port 0 picks a free port; see Addr), or with
// connect, connects to a Subscriber that binds (llm-d's central mode,
// where the EPP binds and every model server connects; "tcp://" only).
// Connecting happens in the background, like libzmq's, and is retried
// until it works and again whenever the connection ends; batches
// published meanwhile are lost, as with any PUB socket that has no
// subscriber. The socket closes when ctx ends or on Close.
func NewPublisher(ctx context.Context, endpoint string, connect bool) (*Publisher, error) {
	if err := checkEndpoint(endpoint, connect); err != nil {
		return nil, fmt.Errorf("kvevents: publisher: %w", err)
	}
	p := &Publisher{endpoint: endpoint, stop: make(chan struct{}), seqs: make(map[stream]uint64)}
	sockCtx := context.WithoutCancel(ctx)
	if connect {
		p.dialer, sockCtx = newDialer(ctx, endpoint)
	}
	// One attempt per Dial: stayConnected retries.
	p.sock = zmq4.NewPub(sockCtx, append(socketOptions(), zmq4.WithDialerMaxRetries(0))...)
	if err := p.sock.SetOption(zmq4.OptionHWM, sendHWM); err != nil {
		_ = closeSocket(p.sock)
		return nil, fmt.Errorf("kvevents: publisher: %w", err)
	}
	if connect {
		// Connecting must not block the caller: the model server may
		// start before the EPP.
		p.dialing.Add(1)
		go p.stayConnected()
	} else if err := p.sock.Listen(tcpEndpoint(endpoint)); err != nil {
		_ = closeSocket(p.sock)
		return nil, fmt.Errorf("kvevents: publisher: bind: %w", err)
	}
	p.mu.Lock()
	p.stopCtx = context.AfterFunc(ctx, func() { _ = p.Close() })
	p.mu.Unlock()
	return p, nil
}

// stayConnected connects, waits for the connection to end, and connects
// again, until Close.
func (p *Publisher) stayConnected() {
	defer p.dialing.Done()
	wait := retryMin
	for {
		if lost, err := p.dialer.dial(p.sock); err == nil {
			select {
			case <-lost:
				wait = retryMin
			case <-p.stop:
				return
			}
		} else {
			wait = nextWait(wait)
		}
		select {
		case <-p.stop:
			return
		case <-time.After(wait):
		}
	}
}

// Publish sends b on topic, numbering it after the previous batch of the
// same topic and data-parallel rank (from 0), as vLLM does per publisher.
// It only queues the message: PUB sockets drop messages for subscribers
// that are not connected, and this one drops new messages while sendHWM
// are queued.
func (p *Publisher) Publish(topic string, b *Batch) error {
	payload, err := b.AppendEncode(nil)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	k := streamOf(topic, b)
	seq := p.seqs[k]
	p.seqs[k] = seq + 1 // a batch that fails to go out leaves a gap, truthfully
	if err := p.sock.SendMulti(zmq4.NewMsgFrom([]byte(topic), seqFrame(seq), payload)); err != nil {
		return fmt.Errorf("kvevents: publish on %q: %w", topic, err)
	}
	return nil
}

// Addr returns the bound address as an endpoint ("tcp://127.0.0.1:40123"),
// or "" when the publisher connects.
func (p *Publisher) Addr() string { return boundAddr(p.sock, p.endpoint) }

// Close closes the socket; messages not yet sent are dropped.
func (p *Publisher) Close() error {
	p.mu.Lock()
	closed, stopCtx := p.closed, p.stopCtx
	p.closed = true
	p.mu.Unlock()
	if closed {
		return nil
	}
	if stopCtx != nil {
		stopCtx()
	}
	close(p.stop)
	if p.dialer != nil {
		p.dialer.close()
	}
	err := closeSocket(p.sock)
	p.dialing.Wait()
	return err
}
