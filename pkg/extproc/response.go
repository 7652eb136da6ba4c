package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Response is the upstream HTTP response Envoy received.
type Response struct {
	// Status is the upstream status code (sent as :status).
	Status int
	// Headers are sent after :status, lower-cased, one entry per value.
	Headers http.Header
	// Body and ChunkSize are used by PlayResponse only, like Request's.
	Body      []byte
	ChunkSize int
	// Trailers, when non-nil, are sent after the body (PlayResponse only).
	Trailers http.Header
	// FilterMetadata is merged over the request's filter metadata in the
	// metadata_context of every response-phase message; Envoy's ORIGINAL_DST
	// puts {LBNamespace: {ServedKey: "ip:port"}} there.
	FilterMetadata map[string]map[string]any
}

// ResponseResult is what Envoy would send downstream.
type ResponseResult struct {
	// Immediate is set when the processor answered with an immediate response.
	Immediate *ImmediateResponse
	// Status and Headers are the response headers after mutation, without
	// content-length (removed in FULL_DUPLEX_STREAMED mode).
	Status  int
	Headers http.Header
	// Body and Trailers are filled by PlayResponse.
	Body     []byte
	Trailers http.Header
	// DynamicMetadata and Ignored are as in Decision, for the response phase.
	DynamicMetadata map[string]map[string]any
	Ignored         []string
}

// SendResponseHeaders sends the response_headers message; the request phase
// must be over without an immediate response. It does not wait for the
// reply (see AwaitResponseHeaders), so body chunks can follow at once.
func (s *Stream) SendResponseHeaders(ctx context.Context, resp Response, endOfStream bool) error {
	if resp.Status < 100 || resp.Status > 999 {
		return fmt.Errorf("extproc: invalid response status %d", resp.Status)
	}
	if err := checkHeaders(resp.Headers); err != nil {
		return fmt.Errorf("extproc: response headers: %w", err)
	}
	headers := newHeaderMap([]header{{":status", strconv.Itoa(resp.Status)}}, resp.Headers)
	msg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers: headers.proto(), EndOfStream: endOfStream,
		}},
	}
	return s.send(ctx, msg, func() error {
		switch {
		case s.decision == nil:
			return errors.New("extproc: response headers sent before the request phase ended")
		case s.resp.headersSent:
			return errors.New("extproc: response headers already sent")
		}
		meta, err := metadataContext(mergeFilterMetadata(s.reqFilter, resp.FilterMetadata))
		if err != nil {
			return fmt.Errorf("extproc: response: %w", err)
		}
		s.resp.headersSent, s.resp.headersEOS = true, endOfStream
		s.resp.headers, s.resp.meta = headers, meta
		msg.MetadataContext = meta
		return nil
	})
}

// SendResponseBody sends one response_body chunk, endOfStream on the last.
// It does not wait: read what the processor forwards with RecvResponseBody,
// from this or another goroutine.
func (s *Stream) SendResponseBody(ctx context.Context, chunk []byte, endOfStream bool) error {
	msg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
			Body: chunk, EndOfStream: endOfStream,
		}},
	}
	return s.send(ctx, msg, func() error {
		if err := s.resp.canSendBody(); err != nil {
			return err
		}
		s.resp.chunksSent++
		s.resp.bodyEOSSent = endOfStream
		msg.MetadataContext = s.resp.meta
		return nil
	})
}

// SendResponseTrailers sends the response_trailers message, which ends the
// response (the body must not have carried end_of_stream).
func (s *Stream) SendResponseTrailers(ctx context.Context, trailers http.Header) error {
	if err := checkHeaders(trailers); err != nil {
		return fmt.Errorf("extproc: response trailers: %w", err)
	}
	m := newHeaderMap(nil, trailers)
	msg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: m.proto()}},
	}
	return s.send(ctx, msg, func() error {
		if err := s.resp.canSendBody(); err != nil {
			return err
		}
		s.resp.trailersSent, s.resp.trailers = true, m
		msg.MetadataContext = s.resp.meta
		return nil
	})
}

// AwaitResponseHeaders waits for the reply to the response headers and
// returns the headers Envoy would send downstream, or the immediate response.
func (s *Stream) AwaitResponseHeaders(ctx context.Context) (*ResponseResult, error) {
	var out *ResponseResult
	err := s.wait(ctx, "the response_headers reply", func() bool {
		if s.immediate == nil && !s.resp.headersReplied {
			return false
		}
		out = s.responseSnapshot()
		return true
	})
	return out, err
}

// ResponseMetadata returns the dynamic metadata the processor has sent in
// the response phase so far (the EPP's request-attribute-reporter values
// come with the answer to the last response message).
func (s *Stream) ResponseMetadata() map[string]map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyMetadata(s.resp.dynamic)
}

// responseSnapshot copies the response state; s.mu must be held.
func (s *Stream) responseSnapshot() *ResponseResult {
	p := &s.resp
	out := &ResponseResult{
		Immediate:       s.immediate,
		DynamicMetadata: copyMetadata(p.dynamic),
		Ignored:         append([]string(nil), p.log.ignored...),
	}
	if p.headersReplied {
		out.Headers = p.headers.httpHeader()
		out.Headers.Del("Content-Length")
		out.Status, _ = strconv.Atoi(p.headers.first(":status")) // only valid values are ever stored
	}
	if p.trailersReplied {
		out.Trailers = p.trailers.httpHeader()
	}
	return out
}

// RecvResponseBody returns the next piece of response body the processor
// forwarded (what Envoy would write downstream), waiting for one. It returns
// io.EOF after the last piece, and the *ImmediateResponse as the error when
// the processor replaced the rest of the response.
func (s *Stream) RecvResponseBody(ctx context.Context) ([]byte, error) {
	var chunk []byte
	var end error
	err := s.wait(ctx, "a response_body reply", func() bool {
		p := &s.resp
		switch {
		case len(p.chunks) > 0:
			chunk, p.chunks = p.chunks[0], p.chunks[1:]
		case s.immediate != nil:
			end = s.immediate
		case p.complete:
			end = io.EOF
		default:
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return chunk, end
}

// AwaitResponseTrailers waits for the reply to the response trailers and
// returns the trailers after mutation (or the *ImmediateResponse as error).
func (s *Stream) AwaitResponseTrailers(ctx context.Context) (http.Header, error) {
	var out http.Header
	var imm *ImmediateResponse
	err := s.wait(ctx, "the response_trailers reply", func() bool {
		switch {
		case s.immediate != nil:
			imm = s.immediate
		case s.resp.trailersReplied:
			out = s.resp.trailers.httpHeader()
		default:
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return nil, err
	case imm != nil:
		return nil, imm
	}
	return out, nil
}

// PlayResponse plays the whole response phase: it sends the headers, the
// body in chunks and the trailers from one goroutine while collecting the
// replies, and returns what Envoy would send downstream.
func (s *Stream) PlayResponse(ctx context.Context, resp Response) (*ResponseResult, error) {
	size := resp.ChunkSize
	if size == 0 {
		size = DefaultChunkSize
	}
	if size < 0 {
		return nil, fmt.Errorf("extproc: chunk size must be >= 0, got %d", size)
	}
	headersOnly := len(resp.Body) == 0 && resp.Trailers == nil
	if err := s.SendResponseHeaders(ctx, resp, headersOnly); err != nil {
		return nil, err
	}
	sendErr := make(chan error, 1)
	go func() { sendErr <- s.sendResponseRest(ctx, resp, size) }()
	out, err := s.collectResponse(ctx, resp.Trailers != nil)
	if serr := <-sendErr; err == nil && serr != nil && !errors.Is(serr, ErrExchangeEnded) {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Stream) sendResponseRest(ctx context.Context, resp Response, size int) error {
	for off := 0; off < len(resp.Body); off += size {
		end := min(off+size, len(resp.Body))
		if err := s.SendResponseBody(ctx, resp.Body[off:end], end == len(resp.Body) && resp.Trailers == nil); err != nil {
			return err
		}
	}
	if resp.Trailers != nil {
		return s.SendResponseTrailers(ctx, resp.Trailers)
	}
	return nil
}

func (s *Stream) collectResponse(ctx context.Context, trailers bool) (*ResponseResult, error) {
	out, err := s.AwaitResponseHeaders(ctx)
	if err != nil || out.Immediate != nil {
		return out, err
	}
	for {
		chunk, err := s.RecvResponseBody(ctx)
		out.Body = append(out.Body, chunk...)
		if errors.Is(err, io.EOF) {
			break
		}
		var imm *ImmediateResponse
		if errors.As(err, &imm) {
			out.Immediate = imm
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
	if trailers {
		t, err := s.AwaitResponseTrailers(ctx)
		if err != nil {
			return nil, err
		}
		out.Trailers = t
	}
	s.mu.Lock()
	out.DynamicMetadata = copyMetadata(s.resp.dynamic)
	out.Ignored = append([]string(nil), s.resp.log.ignored...)
	s.mu.Unlock()
	return out, nil
}
