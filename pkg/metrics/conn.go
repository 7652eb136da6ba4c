package metrics

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// pageConn is one target's kept-alive connection to its metrics server. The
// target's goroutine writes the request and reads the response itself, with
// the standard library's HTTP/1.1 response parser (http.ReadResponse). This
// skips http.Transport's per-connection read and write goroutines, whose
// hand-offs cost more CPU than parsing the page did: a scrape every 50 ms
// per endpoint is a hot path for the EPP.
type pageConn struct {
	addr     string
	tls      *tls.Config // nil for http
	req      *http.Request
	reqBytes []byte // the serialized GET, written as is on every scrape
	// narrowBytes is the GET with the name[] query (nil: none); narrow
	// says which of the two the next send writes.
	narrowBytes []byte
	narrow      bool

	c  net.Conn
	br *bufio.Reader
}

// newPageConn prepares the connection for req and, unless query is empty
// or req already has a query, also the same GET narrowed by query.
func newPageConn(req *http.Request, tlsCfg *tls.Config, query string) (*pageConn, error) {
	var b, nb bytesWriter
	if err := req.Write(&b); err != nil {
		return nil, fmt.Errorf("serialize metrics request: %w", err)
	}
	if query != "" && req.URL.RawQuery == "" && !req.URL.ForceQuery {
		nreq := req.Clone(req.Context())
		nreq.URL.RawQuery = query
		if err := nreq.Write(&nb); err != nil {
			return nil, fmt.Errorf("serialize metrics request: %w", err)
		}
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), map[bool]string{true: "443", false: "80"}[tlsCfg != nil])
	}
	if tlsCfg != nil && tlsCfg.ServerName == "" {
		tlsCfg = tlsCfg.Clone()
		tlsCfg.ServerName = req.URL.Hostname() // verified against the certificate unless skipping
	}
	return &pageConn{addr: addr, tls: tlsCfg, req: req, reqBytes: b, narrowBytes: nb}, nil
}

type bytesWriter []byte

func (w *bytesWriter) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

// get sends the GET and returns the response, whose body must be read or
// closed before the next call. A kept-alive connection the server closed in
// the meantime is retried once on a fresh one, as net/http does.
func (p *pageConn) get(ctx context.Context, deadline time.Time) (*http.Response, error) {
	reused := p.c != nil
	resp, err := p.roundTrip(ctx, deadline)
	if err != nil && reused && ctx.Err() == nil && time.Now().Before(deadline) && isClosedConn(err) {
		resp, err = p.roundTrip(ctx, deadline)
	}
	return resp, err
}

func (p *pageConn) roundTrip(ctx context.Context, deadline time.Time) (*http.Response, error) {
	if p.c == nil {
		if err := p.dial(ctx, deadline); err != nil {
			return nil, err
		}
	}
	defer p.interruptOn(ctx)()
	if err := p.send(deadline); err != nil {
		return nil, err
	}
	return p.receive()
}

// interruptOn makes cancelling ctx (endpoint removed, shutdown) interrupt
// a blocked write or read on the connection until stop is called. The
// callback runs on another goroutine: it must not read p.c.
func (p *pageConn) interruptOn(ctx context.Context) (stop func() bool) {
	c := p.c
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// live reports whether a kept-alive connection is open, so a wave can send
// on it without dialing.
func (p *pageConn) live() bool { return p.c != nil }

// send writes the GET on the live connection and sets deadline for the
// whole exchange; the response is read later (awaitFirstByte, receive), so
// a wave can have every member's request in flight at once.
func (p *pageConn) send(deadline time.Time) error {
	_ = p.c.SetDeadline(deadline)
	req := p.reqBytes
	if p.narrow {
		req = p.narrowBytes
	}
	if _, err := p.c.Write(req); err != nil {
		p.close()
		return err
	}
	return nil
}

// awaitFirstByte waits until the response to send's request has begun to
// arrive, at most until by; then the exchange's deadline applies again. A
// timeout leaves the connection usable: the response can still be read.
// It reports whether it waited: long enough to have parked the goroutine.
func (p *pageConn) awaitFirstByte(by, deadline time.Time) (waited bool, _ error) {
	if p.br.Buffered() > 0 {
		return false, nil
	}
	_ = p.c.SetReadDeadline(by)
	start := time.Now()
	_, err := p.br.Peek(1)
	_ = p.c.SetReadDeadline(deadline)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		p.close()
	}
	return time.Since(start) > 20*time.Microsecond, err
}

// receive reads the response header of send's request.
func (p *pageConn) receive() (*http.Response, error) {
	resp, err := http.ReadResponse(p.br, p.req)
	if err != nil {
		p.close()
		return nil, err
	}
	return resp, nil
}

func (p *pageConn) dial(ctx context.Context, deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return err
	}
	if p.tls != nil {
		tc := tls.Client(c, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return err
		}
		c = tc
	}
	p.c = c
	if p.br == nil {
		p.br = bufio.NewReaderSize(c, 32<<10)
	} else {
		p.br.Reset(c)
	}
	return nil
}

// done finishes a response: the connection is kept only when the body was
// read to its end and the server did not ask to close.
func (p *pageConn) done(resp *http.Response, complete bool) {
	_ = resp.Body.Close()
	if !complete || resp.Close {
		p.close()
	}
}

func (p *pageConn) close() {
	if p.c != nil {
		_ = p.c.Close()
		p.c = nil
	}
}

// isClosedConn reports errors that mean a kept-alive connection was closed
// by the server before it read our request.
func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
