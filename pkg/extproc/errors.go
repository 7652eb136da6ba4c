package extproc

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
)

// ErrExchangeEnded is returned by the Send methods once the processor has
// ended the exchange with an immediate_response: Envoy stops talking to the
// processor at that point, so the caller should stop feeding it and read the
// immediate response from Immediate (or AwaitDecision, AwaitResponseHeaders).
var ErrExchangeEnded = errors.New("extproc: exchange already ended by an immediate response")

// ErrAborted is returned after Abort: the HTTP client went away and the
// stream was cancelled, as Envoy resets the ext_proc stream in that case.
var ErrAborted = errors.New("extproc: stream aborted by the client")

// ErrClosed is returned by the Send methods after Close.
var ErrClosed = errors.New("extproc: stream closed")

// ProtocolError reports a ProcessingResponse that Envoy's ext_proc filter
// (configured as described in the package documentation) would refuse, or
// that breaks the endpoint-picker contract. Envoy answers such a message with
// a local reply (status_on_error, 500 by default) and resets the stream; this
// client cancels the stream and returns the error from every later call.
type ProtocolError struct {
	// Phase is the kind of the offending reply, for example "request_body"
	// or "immediate_response".
	Phase string
	// Reason says which rule was broken.
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("extproc: protocol violation (%s): %s", e.Phase, e.Reason)
}

func protoErr(phase, format string, args ...any) *ProtocolError {
	return &ProtocolError{Phase: phase, Reason: fmt.Sprintf(format, args...)}
}

// StreamError reports that the gRPC stream failed, or that the processor
// ended it, while the exchange still expected replies.
type StreamError struct {
	// Code is the gRPC status code; codes.OK means the processor ended the
	// stream cleanly but too early.
	Code codes.Code
	// Pending names what the client was still waiting for.
	Pending string
	// Err is the underlying gRPC error, nil for a clean but early end.
	Err error
}

func (e *StreamError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("extproc: stream closed by the processor while waiting for %s", e.Pending)
	}
	return fmt.Sprintf("extproc: stream failed while waiting for %s: %v", e.Pending, e.Err)
}

func (e *StreamError) Unwrap() error { return e.Err }

// ImmediateResponse is the local reply the processor asked Envoy to send
// downstream instead of (or, mid-response, in place of the rest of) the
// upstream exchange. The response-phase methods return it as an error
// because, once the upstream response has started, Envoy can only ship it or
// reset the downstream stream.
type ImmediateResponse struct {
	// Status is the HTTP status Envoy would send: the requested code, or 200
	// when the processor sent none or one below 200 (Envoy's default).
	Status int
	// Headers are the local reply's headers after the processor's mutations
	// (content-type is text/plain when a body is present).
	Headers http.Header
	// Body is sent as is.
	Body []byte
	// Details is the processor's details string (Envoy's response code details).
	Details string
	// Phase is the direction being processed when it arrived: "request" or
	// "response" ("request" until the response headers are sent, also after
	// the decision while the upstream has not answered).
	Phase string
}

func (r *ImmediateResponse) Error() string {
	return fmt.Sprintf("extproc: immediate response %d during %s: %q", r.Status, r.Phase, r.Body)
}
