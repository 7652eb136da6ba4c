package kvevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/go-zeromq/zmq4"
)

var (
	// ErrClosed is returned by Publish after Close.
	ErrClosed = errors.New("kvevents: closed")
	// ErrDisconnected wraps the errors Run reports when a connection ends
	// or cannot be made; Run reconnects by itself (or, bound, waits for
	// the publisher to come back).
	ErrDisconnected = errors.New("kvevents: disconnected")
)

const (
	// retryMin is the first wait before connecting again, libzmq's default
	// reconnect interval; waits double up to retryMax so that a server
	// that stays down costs a dial every few seconds.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// connectTimeout bounds a TCP connect to an address that does not
	// answer (zmq4's default is 5 minutes) and a ZMTP handshake (zmq4 has
	// none).
	connectTimeout = 5 * time.Second
	// sendHWM is how many messages a Publisher queues before dropping new
	// ones, like libzmq's high-water mark; subscribers see the loss as a
	// sequence gap.
	sendHWM = 10_000
)

// socketOptions are the zmq4 options of every socket. zmq4 would log to
// stderr; whatever matters reaches the caller as an error instead.
func socketOptions() []zmq4.Option {
	return []zmq4.Option{
		zmq4.WithLogger(log.New(io.Discard, "", 0)),
		zmq4.WithDialerTimeout(connectTimeout),
		zmq4.WithDialerRetry(retryMin),
	}
}

// checkEndpoint rejects endpoints zmq4 cannot use, up front rather than
// on every connection attempt, and registers tcpTransport. Connecting
// supports TCP only.
func checkEndpoint(endpoint string, connect bool) error {
	if err := registerTCP(); err != nil {
		return err
	}
	scheme, addr, ok := strings.Cut(endpoint, "://")
	if !ok || scheme == tcpTransport || !slices.Contains(zmq4.Transports(), scheme) {
		return fmt.Errorf("endpoint %q: want tcp://host:port (or ipc://path to bind)", endpoint)
	}
	if connect && scheme != "tcp" {
		return fmt.Errorf("endpoint %q: connecting supports tcp:// only", endpoint)
	}
	if scheme == "tcp" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("endpoint %q: %w", endpoint, err)
		}
	}
	return nil
}

// boundAddr is a socket's listening address as an endpoint, or "".
func boundAddr(sock zmq4.Socket, endpoint string) string {
	addr := sock.Addr()
	if addr == nil {
		return ""
	}
	scheme, _, _ := strings.Cut(endpoint, "://")
	return scheme + "://" + addr.String()
}

// closeSocket closes sock, leaving out the errors of connections that
// were closed already (zmq4 reports those too).
func closeSocket(sock zmq4.Socket) error {
	if err := sock.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("kvevents: close: %w", err)
	}
	return nil
}

// stream identifies a sequence of batches numbered by one publisher:
// vLLM numbers the batches of each data-parallel rank separately, and
// ranks may share a topic.
type stream struct {
	topic string
	rank  int // -1 when the batches carry no rank
}

func streamOf(topic string, b *Batch) stream {
	if !b.HasDPRank {
		return stream{topic: topic, rank: -1}
	}
	return stream{topic: topic, rank: b.DPRank}
}

func seqFrame(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// nextWait doubles a retry wait up to retryMax.
func nextWait(wait time.Duration) time.Duration { return min(2*wait, retryMax) }
