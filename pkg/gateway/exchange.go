package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/openepp/openepp/pkg/extproc"
)

// exchange is one proxied request.
type exchange struct {
	g         *Gateway
	w         http.ResponseWriter
	r         *http.Request
	requestID string
	endpoint  string // the upstream that answered, once one did
}

func (x *exchange) run(ctx context.Context) {
	stream, err := x.g.ext.Open(ctx)
	if err != nil {
		if len(x.g.failOpen) > 0 {
			x.failOpen(ctx, err)
			return
		}
		x.fail(ctx, err)
		return
	}
	defer x.g.closeLater(stream, x.requestID)
	dec, err := x.sendRequest(ctx, stream)
	if err != nil {
		stream.Abort()
		x.fail(ctx, err)
		return
	}
	if dec.Immediate != nil {
		x.writeImmediate(dec.Immediate, "request")
		return
	}
	if len(dec.Endpoints) == 0 {
		x.writeError(http.StatusServiceUnavailable, "the endpoint picker chose no destination endpoint", nil)
		return
	}
	// From here on the EPP may end the exchange at any moment (llm-d's
	// in-flight eviction); Envoy then resets the upstream request at once, so
	// the model server aborts it and frees its KV cache.
	upCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stream.Ended():
			cancel()
		case <-upCtx.Done():
		}
	}()
	resp, endpoint, err := x.g.forward(upCtx, dec, dec.Endpoints)
	if err != nil {
		x.forwardFailed(ctx, stream, err)
		return
	}
	defer resp.Body.Close()
	x.endpoint = endpoint
	x.respond(ctx, stream, resp)
}

// forwardFailed answers a request that got no upstream response: the EPP's
// immediate response or stream failure when that cancelled it, else 503.
func (x *exchange) forwardFailed(ctx context.Context, stream *extproc.Stream, err error) {
	select {
	case <-stream.Ended():
		if imm := stream.Immediate(); imm != nil {
			x.writeImmediate(imm, "upstream")
			return
		}
		x.fail(ctx, stream.Err())
		return
	default:
	}
	stream.Abort()
	if ctx.Err() != nil {
		x.fail(ctx, err)
		return
	}
	x.writeError(http.StatusServiceUnavailable, err.Error(), err)
}

// fail answers a failure that happened before the response started.
func (x *exchange) fail(ctx context.Context, err error) {
	code, msg := statusFor(ctx, err)
	x.writeError(code, msg, err)
}

// sendRequest plays the request phase: headers, then the client body in the
// chunks it arrives in, then trailers, and returns the EPP's decision.
func (x *exchange) sendRequest(ctx context.Context, stream *extproc.Stream) (*extproc.Decision, error) {
	r := x.r
	headers := cleanHeaders(r.Header)
	headers.Set("X-Request-Id", x.requestID)
	if r.ContentLength > 0 && headers.Get("Content-Length") == "" {
		headers.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	hasTrailers := len(r.Trailer) > 0
	req := extproc.Request{Method: r.Method, Path: r.URL.RequestURI(), Authority: r.Host, Scheme: scheme, Headers: headers}
	bodyless := (r.Body == nil || r.Body == http.NoBody) && !hasTrailers
	err := stream.SendRequestHeaders(ctx, req, bodyless)
	if err == nil && !bodyless {
		err = pumpBody(ctx, r.Body, make([]byte, x.g.chunkSize), stream.SendRequestBody, hasTrailers)
		if err == nil && hasTrailers {
			err = stream.SendRequestTrailers(ctx, r.Trailer)
		}
	}
	if err != nil && !errors.Is(err, extproc.ErrExchangeEnded) {
		return nil, err
	}
	return stream.AwaitDecision(ctx)
}

// pumpBody reads src and sends each piece as soon as it is read,
// end_of_stream on the last unless trailers follow. buf is reused: the
// extproc client serializes each message before Send returns.
func pumpBody(ctx context.Context, src io.Reader, buf []byte, send func(context.Context, []byte, bool) error, trailers bool) error {
	for {
		n, rerr := src.Read(buf)
		eof := errors.Is(rerr, io.EOF)
		if rerr != nil && !eof {
			return fmt.Errorf("gateway: read body: %w", rerr)
		}
		if n > 0 || (eof && !trailers) {
			if err := send(ctx, buf[:n], eof && !trailers); err != nil {
				return err
			}
		}
		if eof {
			return nil
		}
	}
}

// respond plays the response phase and writes what the EPP forwards. An
// immediate response ends it: the local reply while nothing was written,
// else a reset client connection; the upstream request is cancelled by then.
func (x *exchange) respond(ctx context.Context, stream *extproc.Stream, resp *http.Response) {
	trailers := len(resp.Trailer) > 0
	headersOnly := resp.Body == http.NoBody && !trailers
	served := map[string]map[string]any{extproc.LBNamespace: {extproc.ServedKey: x.endpoint}}
	err := stream.SendResponseHeaders(ctx, extproc.Response{Status: resp.StatusCode, Headers: cleanHeaders(resp.Header), FilterMetadata: served}, headersOnly)
	ended := errors.Is(err, extproc.ErrExchangeEnded) // immediate response between phases: written below
	if err != nil && !ended {
		x.fail(ctx, err)
		return
	}
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		if !headersOnly && !ended {
			x.pumpResponse(ctx, stream, resp)
		}
	}()
	completed := false
	defer func() {
		// Unblock the pump (upstream read or ext_proc send) before waiting;
		// after a complete exchange it has already finished.
		if !completed {
			stream.Abort()
		}
		resp.Body.Close()
		<-pumped
	}()
	result, err := stream.AwaitResponseHeaders(ctx)
	if err != nil {
		x.fail(ctx, err)
		return
	}
	if result.Immediate != nil {
		x.writeImmediate(result.Immediate, "response headers")
		return
	}
	x.writeHeaders(result)
	x.copyBody(ctx, stream)
	if trailers {
		t, err := stream.AwaitResponseTrailers(ctx)
		if err != nil {
			x.abort("response trailers", err)
		}
		for k, vs := range t {
			x.w.Header()[http.TrailerPrefix+k] = vs
		}
	}
	completed = true
	if md := stream.ResponseMetadata(); len(md) > 0 {
		// As an access log would print %DYNAMIC_METADATA(...)%.
		x.g.log.V(1).Info("request served", "requestID", x.requestID, "endpoint", x.endpoint, "status", result.Status, "metadata", md)
		return
	}
	x.g.log.V(1).Info("request served", "requestID", x.requestID, "endpoint", x.endpoint, "status", result.Status)
}

// pumpResponse sends the upstream body and trailers to the EPP; a failure
// aborts the stream, which resets the client connection, as an upstream
// reset does in Envoy.
func (x *exchange) pumpResponse(ctx context.Context, stream *extproc.Stream, resp *http.Response) {
	trailers := len(resp.Trailer) > 0
	err := pumpBody(ctx, resp.Body, make([]byte, 32<<10), stream.SendResponseBody, trailers)
	if err == nil && trailers {
		err = stream.SendResponseTrailers(ctx, resp.Trailer)
	}
	if err == nil || stream.Err() != nil {
		return // the stream ended first (and cancelled the upstream): copyBody reports why
	}
	x.g.log.V(1).Info("upstream response interrupted", "requestID", x.requestID, "err", err)
	stream.Abort()
}

// copyBody writes every forwarded chunk and flushes it at once.
func (x *exchange) copyBody(ctx context.Context, stream *extproc.Stream) {
	rc := http.NewResponseController(x.w)
	for {
		chunk, err := stream.RecvResponseBody(ctx)
		if len(chunk) > 0 {
			if _, werr := x.w.Write(chunk); werr != nil {
				x.abort("write to client", werr)
			}
			_ = rc.Flush() // the client may not support flushing; the write already succeeded
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			x.abort("response body", err)
		}
	}
}

// abort resets the client connection once the response has started: the
// status is already sent, so this is the only way to signal the failure, or
// an immediate response (Envoy resets the downstream stream then too).
func (x *exchange) abort(what string, err error) {
	var imm *extproc.ImmediateResponse
	if errors.As(err, &imm) {
		x.g.log.V(1).Info("immediate response, client connection reset", "requestID", x.requestID, "endpoint", x.endpoint, "stage", what, "status", imm.Status)
		panic(http.ErrAbortHandler)
	}
	x.g.log.V(1).Info("response aborted", "requestID", x.requestID, "stage", what, "err", err)
	panic(http.ErrAbortHandler)
}

func (x *exchange) writeHeaders(result *extproc.ResponseResult) {
	h := x.w.Header()
	for k, vs := range cleanHeaders(result.Headers) {
		h[k] = vs
	}
	h.Del("Content-Length")
	h.Set(ServedHeader, x.endpoint)
	x.w.WriteHeader(result.Status)
	_ = http.NewResponseController(x.w).Flush() // headers reach the client before the first token
}

// writeImmediate sends the EPP's local reply; stage says what it cut short.
func (x *exchange) writeImmediate(imm *extproc.ImmediateResponse, stage string) {
	kv := []any{"requestID", x.requestID, "stage", stage, "status", imm.Status}
	if x.endpoint != "" {
		kv = append(kv, "endpoint", x.endpoint)
	}
	x.g.log.V(1).Info("immediate response", kv...)
	h := x.w.Header()
	for k, vs := range imm.Headers {
		h[k] = vs
	}
	h.Set("Content-Length", strconv.Itoa(len(imm.Body)))
	x.w.WriteHeader(imm.Status)
	_, _ = x.w.Write(imm.Body) // nothing to do if the client is gone
}

func (x *exchange) writeError(code int, msg string, err error) {
	if x.r.Context().Err() != nil {
		x.g.log.V(1).Info("client went away", "requestID", x.requestID, "err", err)
		return
	}
	x.g.log.V(1).Info("request failed", "requestID", x.requestID, "status", code, "err", err)
	h := x.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	x.w.WriteHeader(code)
	_, _ = fmt.Fprintf(x.w, "gateway: %s\n", msg) // nothing to do if the client is gone
}
