package kvevents

import (
	"context"
	"strings"
	"sync"

	"github.com/go-zeromq/zmq4"
)

// dialer connects one zmq4 socket to one TCP endpoint, as often as asked.
// It does what zmq4 does not: it learns when the connection ends (a PUB
// socket never says, and zmq4's own reconnection gives up after one
// failed handshake), closes a connection whose handshake failed (zmq4
// leaves it open), and lets Close interrupt a handshake.
type dialer struct {
	endpoint string // in tcpTransport

	mu      sync.Mutex
	pending *conn // dialed by the Dial in progress
	closed  bool
}

// newDialer returns a dialer for a "tcp://host:port" endpoint and the
// context to create its socket with.
func newDialer(ctx context.Context, endpoint string) (*dialer, context.Context) {
	d := &dialer{endpoint: tcpEndpoint(endpoint)}
	return d, context.WithValue(context.WithoutCancel(ctx), dialHookKey{}, d.watch)
}

// tcpEndpoint maps a "tcp://" endpoint to tcpTransport; others are kept.
func tcpEndpoint(endpoint string) string {
	if addr, ok := strings.CutPrefix(endpoint, "tcp://"); ok {
		return tcpTransport + "://" + addr
	}
	return endpoint
}

func (d *dialer) watch(c *conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		_ = c.Close()
	}
	d.pending = c
}

// dial makes one attempt to connect sock, and returns a channel closed
// when the connection ends.
func (d *dialer) dial(sock zmq4.Socket) (<-chan struct{}, error) {
	err := sock.Dial(d.endpoint)
	d.mu.Lock()
	c := d.pending
	d.pending = nil
	d.mu.Unlock()
	if c == nil { // no TCP connection
		return nil, err
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return c.lost, nil
}

// close interrupts a Dial in progress, and those to come.
func (d *dialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.pending != nil {
		_ = d.pending.Close()
	}
}
