package extproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Defaults of the client.
const (
	// DefaultChunkSize is the size of the request body chunks SendRequest
	// sends when Request.ChunkSize is zero, close to what Envoy forwards per
	// read from an HTTP/1 connection.
	DefaultChunkSize = 16 << 10
	// DefaultMaxMessageSize bounds gRPC messages both ways; it leaves room for
	// 25 MiB multimodal bodies sent in a single chunk.
	DefaultMaxMessageSize = 64 << 20
	// DefaultCloseGrace is how long Close waits for the processor to end the
	// stream after the client half-closes it, before cancelling.
	DefaultCloseGrace = 2 * time.Second
)

// Client opens ext_proc streams, one per HTTP exchange, on one gRPC
// connection. It is safe for concurrent use.
type Client struct {
	conn  *grpc.ClientConn
	rpc   extprocv3.ExternalProcessorClient
	owned bool
	opts  options
}

type options struct {
	tls        *tls.Config
	plaintext  bool
	maxMsg     int
	closeGrace time.Duration
	dialOpts   []grpc.DialOption
}

// Option configures Dial and NewClient.
type Option func(*options)

// WithPlaintext dials without TLS (the EPP's --secure-serving=false).
func WithPlaintext() Option { return func(o *options) { o.plaintext = true } }

// WithInsecureSkipVerify dials with TLS but accepts any server certificate,
// as Envoy does with an empty validation context; the EPP serves a
// self-signed certificate by default.
func WithInsecureSkipVerify() Option {
	return func(o *options) { o.tls = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} } //nolint:gosec // the EPP's default certificate is self-signed
}

// envoyWindow is Envoy's default HTTP/2 stream and connection window
// (Http2ProtocolOptions initial_stream_window_size and
// initial_connection_window_size).
const envoyWindow = 256 << 20

// WithTLSConfig dials with the given TLS configuration.
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithMaxMessageSize sets the gRPC message size limit for both directions.
func WithMaxMessageSize(n int) Option { return func(o *options) { o.maxMsg = n } }

// WithCloseGrace sets how long Close waits for the processor to end a stream.
func WithCloseGrace(d time.Duration) Option { return func(o *options) { o.closeGrace = d } }

// WithDialOptions adds raw gRPC dial options (Dial only).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

func buildOptions(opts []Option) options {
	o := options{maxMsg: DefaultMaxMessageSize, closeGrace: DefaultCloseGrace}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Dial creates a Client with its own connection to addr ("host:port"). The
// connection is established in the background; ctx only guards the call. By
// default it uses TLS with certificate verification; see WithPlaintext and
// WithInsecureSkipVerify.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("extproc: dial %q: %w", addr, err)
	}
	if addr == "" {
		return nil, errors.New("extproc: dial: empty address")
	}
	o := buildOptions(opts)
	if o.maxMsg <= 0 {
		return nil, fmt.Errorf("extproc: dial %q: max message size must be > 0, got %d", addr, o.maxMsg)
	}
	creds := insecure.NewCredentials()
	if !o.plaintext {
		cfg := o.tls
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(cfg)
	}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxMsg), grpc.MaxCallSendMsgSize(o.maxMsg)),
		// Envoy's HTTP/2 codec advertises fixed 256 MiB windows and never
		// pings to size them; gRPC-go's default is 64 KiB windows grown by
		// BDP pings the processor must answer. A fixed window turns those off.
		grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow),
	}, o.dialOpts...)
	conn, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("extproc: dial %q: %w", addr, err)
	}
	conn.Connect()
	return &Client{conn: conn, rpc: extprocv3.NewExternalProcessorClient(conn), owned: true, opts: o}, nil
}

// NewClient wraps an existing connection; Close leaves it open. Message size
// limits are applied per call, so the connection needs no special options.
func NewClient(conn *grpc.ClientConn, opts ...Option) *Client {
	return &Client{conn: conn, rpc: extprocv3.NewExternalProcessorClient(conn), opts: buildOptions(opts)}
}

// Close closes the connection if Dial created it.
func (c *Client) Close() error {
	if !c.owned {
		return nil
	}
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("extproc: close connection: %w", err)
	}
	return nil
}

// StreamOption configures one stream.
type StreamOption func(*Stream)

// WithRecorder attaches a Recorder that sees every message of the stream.
func WithRecorder(r Recorder) StreamOption { return func(s *Stream) { s.rec = r } }

// Open starts one ext_proc stream for one HTTP exchange, with the goroutine
// that reads its replies (it ends with the stream). Cancelling ctx aborts the
// stream, as a downstream disconnect does in Envoy. The stream must be ended
// with Close or Abort.
func (c *Client) Open(ctx context.Context, opts ...StreamOption) (*Stream, error) {
	sctx, cancel := context.WithCancel(ctx)
	ps, err := c.rpc.Process(sctx, grpc.MaxCallRecvMsgSize(c.opts.maxMsg), grpc.MaxCallSendMsgSize(c.opts.maxMsg))
	if err != nil {
		cancel()
		return nil, &StreamError{Code: codeOf(err), Pending: "the stream to open", Err: err}
	}
	s := newStream(ps, cancel, c.opts.closeGrace)
	for _, opt := range opts {
		opt(s)
	}
	go s.recvLoop()
	return s, nil
}

// RoundTrip plays the request phase of one exchange (headers, body chunks,
// trailers) on a new stream, closes the stream and returns the decision.
func (c *Client) RoundTrip(ctx context.Context, req Request, opts ...StreamOption) (*Decision, error) {
	s, err := c.Open(ctx, opts...)
	if err != nil {
		return nil, err
	}
	d, err := s.SendRequest(ctx, req)
	closeErr := s.Close()
	if err != nil {
		return nil, err
	}
	if closeErr != nil {
		return nil, closeErr
	}
	return d, nil
}
