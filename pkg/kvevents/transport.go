package kvevents

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// tcpTransport names the zmq4 transport this package uses for TCP
// endpoints instead of zmq4's own. It is TCP with what zmq4 has no
// options for:
//   - every connection's input passes a frameGuard, because zmq4 allocates
//     each frame's size as the peer declares it, before reading it: one
//     9-byte header claiming 2^62 bytes panics the process;
//   - the ZMTP handshake has a deadline: zmq4 would wait for a silent
//     peer forever, and it accepts connections one handshake at a time,
//     so one silent client would keep every publisher out;
//   - a dialer sees the connections it dials (see dialer).
const tcpTransport = "kvevents-tcp"

// Limits of frameGuard. vLLM sends 3 frames per message. A batch is one
// engine step: well under a megabyte usually, a few megabytes when a
// large cache is evicted at once. zmq4 allocates a declared size before
// the bytes come, so the limit also bounds what a peer can make it hold.
const (
	maxFrameSize = 16 << 20
	maxFrames    = 16
	greetingSize = 64 // ZMTP 3's greeting
)

var registerTCP = sync.OnceValue(func() error {
	return zmq4.RegisterTransport(tcpTransport, transportImpl{})
})

// dialHookKey carries a dialer's hook in the context given to zmq4, which
// passes it on to the transport's Dial.
type dialHookKey struct{}

type transportImpl struct{}

func (transportImpl) Dial(ctx context.Context, d transport.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	gc := newConn(c)
	if hook, ok := ctx.Value(dialHookKey{}).(func(*conn)); ok {
		hook(gc)
	}
	return gc, nil
}

func (transportImpl) Listen(_ context.Context, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return listener{l}, nil
}

// Addr maps an endpoint's address as zmq4's TCP transport does: "*" is
// every interface, a port "*" or "" is any free port.
func (transportImpl) Addr(ep string) (string, error) {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return "", err
	}
	if host == "*" {
		host = ""
	}
	if port == "*" || port == "" {
		port = "0"
	}
	return net.JoinHostPort(host, port), nil
}

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newConn(c), nil
}

// conn guards a connection's input, bounds its handshake, and closes lost
// when it fails or is closed.
type conn struct {
	net.Conn
	guard frameGuard
	once  sync.Once
	lost  chan struct{}
}

func newConn(c net.Conn) *conn {
	_ = c.SetDeadline(time.Now().Add(connectTimeout))
	return &conn{Conn: c, guard: frameGuard{greeting: greetingSize}, lost: make(chan struct{})}
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	handshaking := !c.guard.ready
	if gerr := c.guard.scan(p[:n]); gerr != nil {
		_ = c.Close()
		return 0, gerr
	}
	if handshaking && c.guard.ready {
		_ = c.Conn.SetDeadline(time.Time{})
	}
	c.check(err)
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.check(err)
	return n, err
}

func (c *conn) Close() error {
	c.end()
	return c.Conn.Close()
}

// check ends the connection on any error but a timeout, which only the
// handshake has: zmq4 then fails the handshake and closes the connection
// (or the dialer does).
func (c *conn) check(err error) {
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.end()
	}
}

func (c *conn) end() { c.once.Do(func() { close(c.lost) }) }

// frameGuard follows the ZMTP stream (RFC 23: a 64-byte greeting, then
// frames of a flags byte, a 1- or 8-byte size and the body) and fails on
// a frame bigger than maxFrameSize or a message of more than maxFrames.
// zmq4 reads a header with exact-size reads, so the error comes before
// zmq4 has the size.
type frameGuard struct {
	greeting int    // greeting bytes yet to come
	sizeLeft int    // size bytes of the current header yet to come
	size     uint64 // the size read so far
	body     uint64 // body bytes of the current frame yet to come
	frames   int    // frames of the current message so far
	ready    bool   // the peer's handshake is over: its greeting and first frame (READY) came
}

const (
	flagMore = 0x01
	flagLong = 0x02
)

func (g *frameGuard) scan(p []byte) error {
	for len(p) > 0 {
		switch {
		case g.greeting > 0:
			k := min(g.greeting, len(p))
			g.greeting -= k
			p = p[k:]
		case g.body > 0:
			k := min(g.body, uint64(len(p)))
			g.body -= k
			p = p[k:]
			g.ready = g.ready || g.body == 0
		case g.sizeLeft > 0:
			g.size = g.size<<8 | uint64(p[0])
			g.sizeLeft--
			p = p[1:]
			if g.sizeLeft > 0 {
				continue
			}
			if g.size > maxFrameSize {
				return fmt.Errorf("kvevents: peer sent a frame of %d bytes, more than %d", g.size, maxFrameSize)
			}
			g.body, g.size = g.size, 0
			g.ready = g.ready || g.body == 0
		default: // a frame's flags
			if g.frames++; g.frames > maxFrames {
				return fmt.Errorf("kvevents: peer sent a message of more than %d frames", maxFrames)
			}
			if p[0]&flagMore == 0 {
				g.frames = 0
			}
			g.sizeLeft = 1
			if p[0]&flagLong != 0 {
				g.sizeLeft = 8
			}
			p = p[1:]
		}
	}
	return nil
}
