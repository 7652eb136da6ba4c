package extproc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Request is the downstream HTTP request Envoy received.
type Request struct {
	// Method and Path are required; Authority defaults to "localhost" and
	// Scheme to "http".
	Method, Path, Authority, Scheme string
	// Headers are sent after the pseudo headers, lower-cased, one entry per
	// value ("host" is dropped: Envoy turns it into :authority). Put
	// content-type and x-request-id here. SendRequest adds content-length
	// for a non-empty Body when it is absent, as an HTTP/1 client would.
	Headers http.Header
	// Body is sent by SendRequest in chunks of ChunkSize bytes
	// (DefaultChunkSize when zero), end_of_stream on the last one. An empty
	// Body without Trailers sets end_of_stream on the headers instead.
	Body      []byte
	ChunkSize int
	// Trailers, when non-nil, are sent after the body; the body then ends
	// without end_of_stream, as in Envoy.
	Trailers http.Header
	// FilterMetadata is sent in metadata_context.filter_metadata of every
	// request-phase message (and, merged under the response phase's, of
	// every response-phase message), e.g. the subset hint:
	// {SubsetNamespace: {SubsetKey: []string{"10.0.0.1:8000"}}}.
	FilterMetadata map[string]map[string]any
}

// SendRequestHeaders sends the request_headers message. Body, ChunkSize and
// Trailers of req are not used; endOfStream says that neither body nor
// trailers follow. It does not wait for the reply.
func (s *Stream) SendRequestHeaders(ctx context.Context, req Request, endOfStream bool) error {
	return s.sendRequestHeaders(ctx, req, endOfStream, "")
}

// sendRequestHeaders sends the request headers with a content-length entry
// added when contentLength is set (SendRequest's default, without copying
// req.Headers to add it).
func (s *Stream) sendRequestHeaders(ctx context.Context, req Request, endOfStream bool, contentLength string) error {
	if req.Method == "" || req.Path == "" {
		return fmt.Errorf("extproc: request needs a method and a path, got %q %q", req.Method, req.Path)
	}
	if req.Authority == "" {
		req.Authority = "localhost"
	}
	if req.Scheme == "" {
		req.Scheme = "http"
	}
	if err := checkHeaders(req.Headers); err != nil {
		return fmt.Errorf("extproc: request headers: %w", err)
	}
	meta, err := metadataContext(req.FilterMetadata)
	if err != nil {
		return fmt.Errorf("extproc: request: %w", err)
	}
	pseudo := []header{{":authority", req.Authority}, {":path", req.Path}, {":method", req.Method}, {":scheme", req.Scheme}}
	headers := newHeaderMap(pseudo, req.Headers)
	if contentLength != "" {
		headers.add("content-length", contentLength)
	}
	msg := &extprocv3.ProcessingRequest{
		MetadataContext: meta,
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: headers.proto(), EndOfStream: endOfStream,
		}},
	}
	return s.send(ctx, msg, func() error {
		if s.req.headersSent {
			return errors.New("extproc: request headers already sent")
		}
		s.req.headersSent, s.req.headersEOS = true, endOfStream
		s.req.headers, s.req.meta = headers, meta
		s.reqFilter = req.FilterMetadata
		return nil
	})
}

// SendRequestBody sends one request_body chunk, endOfStream on the last. It
// does not wait for replies: the processor may hold them until the end of
// the body. After an immediate response it returns ErrExchangeEnded.
func (s *Stream) SendRequestBody(ctx context.Context, chunk []byte, endOfStream bool) error {
	msg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
			Body: chunk, EndOfStream: endOfStream,
		}},
	}
	return s.send(ctx, msg, func() error {
		if err := s.req.canSendBody(); err != nil {
			return err
		}
		s.req.chunksSent++
		s.req.bodyEOSSent = endOfStream
		msg.MetadataContext = s.req.meta
		return nil
	})
}

// SendRequestTrailers sends the request_trailers message, which ends the
// request (the body must not have carried end_of_stream).
func (s *Stream) SendRequestTrailers(ctx context.Context, trailers http.Header) error {
	if err := checkHeaders(trailers); err != nil {
		return fmt.Errorf("extproc: request trailers: %w", err)
	}
	m := newHeaderMap(nil, trailers)
	msg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{Trailers: m.proto()}},
	}
	return s.send(ctx, msg, func() error {
		if err := s.req.canSendBody(); err != nil {
			return err
		}
		s.req.trailersSent, s.req.trailers = true, m
		msg.MetadataContext = s.req.meta
		return nil
	})
}

// canSendBody checks that body chunks or trailers may still be sent in this
// direction.
func (p *phase) canSendBody() error {
	switch {
	case !p.headersSent:
		return fmt.Errorf("extproc: %s headers not sent yet", p.name)
	case p.headersEOS:
		return fmt.Errorf("extproc: %s headers carried end_of_stream, nothing may follow", p.name)
	case p.bodyEOSSent:
		return fmt.Errorf("extproc: %s body already ended with end_of_stream", p.name)
	case p.trailersSent:
		return fmt.Errorf("extproc: %s trailers already sent", p.name)
	}
	return nil
}

// AwaitDecision waits until the request phase is over: every reply for what
// was sent has arrived, or the processor sent an immediate response.
func (s *Stream) AwaitDecision(ctx context.Context) (*Decision, error) {
	var d *Decision
	err := s.wait(ctx, "the request phase replies", func() bool {
		d = s.decision
		return d != nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// SendRequest plays the whole request phase: headers, body chunks, optional
// trailers, then waits for the Decision. Replies are read concurrently, so
// a processor that holds its header reply until the body ends works; if it
// answers with an immediate response mid-body, sending stops there.
func (s *Stream) SendRequest(ctx context.Context, req Request) (*Decision, error) {
	size := req.ChunkSize
	if size == 0 {
		size = DefaultChunkSize
	}
	if size < 0 {
		return nil, fmt.Errorf("extproc: chunk size must be >= 0, got %d", size)
	}
	var contentLength string
	if len(req.Body) > 0 && req.Headers.Get("Content-Length") == "" {
		contentLength = strconv.Itoa(len(req.Body))
		if _, empty := req.Headers["Content-Length"]; empty { // replaced, as Header.Set would
			req.Headers = req.Headers.Clone()
			req.Headers.Del("Content-Length")
		}
	}
	headersOnly := len(req.Body) == 0 && req.Trailers == nil
	err := s.sendRequestHeaders(ctx, req, headersOnly, contentLength)
	for off := 0; err == nil && off < len(req.Body); off += size {
		end := min(off+size, len(req.Body))
		err = s.SendRequestBody(ctx, req.Body[off:end], end == len(req.Body) && req.Trailers == nil)
	}
	if err == nil && req.Trailers != nil {
		err = s.SendRequestTrailers(ctx, req.Trailers)
	}
	if err != nil && !errors.Is(err, ErrExchangeEnded) {
		return nil, err
	}
	return s.AwaitDecision(ctx)
}

// checkHeaders rejects what an HTTP codec would never hand to Envoy's
// filters: pseudo or malformed names and values with control characters.
func checkHeaders(h http.Header) error {
	for k, vs := range h {
		if strings.HasPrefix(k, ":") || !validHeaderName(k) {
			return fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return fmt.Errorf("header %q: invalid character in value %q", k, v)
			}
		}
	}
	return nil
}
