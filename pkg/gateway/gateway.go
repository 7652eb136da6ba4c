// Package gateway is the data plane of the local demo: a small HTTP reverse
// proxy that asks an endpoint picker over ext_proc where each request goes,
// then forwards it there, the way Envoy's ext_proc filter plus an
// ORIGINAL_DST cluster (reading x-gateway-destination-endpoint) do. It adds
// nothing the protocol does not need: the response carries
// x-gateway-destination-endpoint-served so a curl user sees who served.
//
// Per request: one ext_proc stream; request headers and body chunks go to
// the EPP as they are read from the client; an immediate response is
// written back as is; otherwise the request (with the EPP's header and body
// mutations) goes to the first endpoint of the destination list, the next
// ones being tried only when a connection cannot be opened. The upstream
// response then plays through the EPP (headers with the served endpoint in
// envoy.lb filter metadata, body chunks, trailers), each forwarded chunk
// being flushed to the client at once so SSE streams add no latency.
//
// Status codes: EPP unreachable 503 (or fail-open to static endpoints),
// no destination or no reachable endpoint 503, ext_proc protocol error or
// failed stream 500 (Envoy's status_on_error), request timeout 504. After
// the response started, failures reset the client connection.
//
// The EPP may end an exchange with an immediate response at any moment,
// also after the request went upstream (llm-d's in-flight eviction: 429 with
// x-llm-d-request-dropped-reason: evicted). As Envoy does, the gateway then
// cancels the upstream request at once, so the model server sees its client
// go away and aborts, and sends the immediate response if the client got
// nothing yet; once the response streams, it resets the client connection
// instead (curl: "transfer closed with outstanding read data remaining"). A
// failed ext_proc stream cancels the upstream request the same way.
package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"

	"github.com/openepp/openepp/pkg/extproc"
)

// ServedHeader is the response header naming the endpoint that served.
const ServedHeader = "x-gateway-destination-endpoint-served"

// Defaults of Options.
const (
	DefaultDialTimeout = 5 * time.Second
)

// Options configures a Gateway.
type Options struct {
	// ExtProc is the client of the endpoint picker (required).
	ExtProc *extproc.Client
	// Logger receives one V(1) line per request; the zero value discards.
	Logger logr.Logger
	// RequestTimeout bounds a whole exchange; 0 means no limit.
	RequestTimeout time.Duration
	// ChunkSize is the largest request body chunk read from the client and
	// sent to the EPP in one message (extproc.DefaultChunkSize when 0).
	ChunkSize int
	// DialTimeout bounds each upstream connection attempt
	// (DefaultDialTimeout when 0).
	DialTimeout time.Duration
	// FailOpenEndpoints, when set, serve requests while the EPP cannot be
	// reached (an InferencePool's FailOpen mode), tried in order.
	FailOpenEndpoints []string
}

// Gateway is the reverse proxy; it is an http.Handler safe for concurrent use.
type Gateway struct {
	ext       *extproc.Client
	log       logr.Logger
	timeout   time.Duration
	chunkSize int
	failOpen  []string
	transport *http.Transport
	closing   sync.WaitGroup
}

var _ http.Handler = (*Gateway)(nil)

// New validates opts and returns a Gateway.
func New(opts Options) (*Gateway, error) {
	if opts.ExtProc == nil {
		return nil, errors.New("gateway: an ext_proc client is required")
	}
	if opts.RequestTimeout < 0 || opts.ChunkSize < 0 || opts.DialTimeout < 0 {
		return nil, fmt.Errorf("gateway: negative option: timeout %v, chunk size %d, dial timeout %v",
			opts.RequestTimeout, opts.ChunkSize, opts.DialTimeout)
	}
	var failOpen []string
	for _, ep := range opts.FailOpenEndpoints {
		eps, err := extproc.ParseEndpoints(ep)
		if err != nil {
			return nil, fmt.Errorf("gateway: fail-open endpoints: %w", err)
		}
		failOpen = append(failOpen, eps...)
	}
	g := &Gateway{
		ext:       opts.ExtProc,
		log:       opts.Logger,
		timeout:   opts.RequestTimeout,
		chunkSize: opts.ChunkSize,
		failOpen:  failOpen,
	}
	if g.chunkSize == 0 {
		g.chunkSize = extproc.DefaultChunkSize
	}
	dialTimeout := opts.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = DefaultDialTimeout
	}
	g.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // pass bodies through untouched
	}
	return g, nil
}

// Close releases idle upstream connections and waits for the ext_proc
// streams still closing.
func (g *Gateway) Close() {
	g.transport.CloseIdleConnections()
	g.closing.Wait()
}

// closeLater ends a stream in the background: Close waits for the EPP to end
// the stream, and the HTTP response must not wait for that (it only ends when
// the handler returns), as Envoy does not hold the response for it either.
func (g *Gateway) closeLater(stream *extproc.Stream, requestID string) {
	g.closing.Add(1)
	go func() {
		defer g.closing.Done()
		if err := stream.Close(); err != nil {
			g.log.V(1).Info("ext_proc stream ended with an error", "requestID", requestID, "err", err)
		}
	}()
}

// ServeHTTP proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	x := &exchange{g: g, w: w, r: r, requestID: r.Header.Get("X-Request-Id")}
	if x.requestID == "" {
		x.requestID = newRequestID()
	}
	x.run(ctx)
}

// statusFor maps a failure before the response started to what Envoy would
// answer.
func statusFor(ctx context.Context, err error) (int, string) {
	var se *extproc.StreamError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.As(err, &se) && se.Code == codes.DeadlineExceeded: // gRPC may see the deadline first
		return http.StatusGatewayTimeout, "request timeout"
	case errors.As(err, &se) && se.Code == codes.Unavailable:
		return http.StatusServiceUnavailable, "endpoint picker unavailable: " + err.Error()
	}
	return http.StatusInternalServerError, "endpoint picker exchange failed: " + err.Error()
}

// newRequestID returns a random UUID (version 4), as Envoy generates
// x-request-id when the client sent none.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
