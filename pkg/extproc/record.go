package extproc

import (
	"sync"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Direction says whether a recorded message went to or came from the processor.
type Direction int

const (
	// Sent marks a ProcessingRequest sent by the client (Envoy's side).
	Sent Direction = iota
	// Received marks a ProcessingResponse received from the processor.
	Received
)

func (d Direction) String() string {
	if d == Sent {
		return "send"
	}
	return "recv"
}

// Message is one recorded message of a stream; exactly one of Request and
// Response is set.
type Message struct {
	Direction Direction
	Request   *extprocv3.ProcessingRequest
	Response  *extprocv3.ProcessingResponse
}

// Kind names the message: "send request_headers", "recv request_body",
// "recv immediate_response", ...
func (m Message) Kind() string {
	if m.Direction == Sent {
		return "send " + requestKind(m.Request)
	}
	return "recv " + responseKind(m.Response)
}

// Recorder observes every message of a stream in the order the client sent or
// received it. Record is called with the stream's lock held: it must be quick
// and must not call back into the stream. Recorded messages share memory with
// the stream: body chunks passed to Send methods must not be modified
// afterwards while a recorder is attached.
type Recorder interface {
	Record(Message)
}

// Transcript is a Recorder that keeps every message, for assertions in tests.
type Transcript struct {
	mu   sync.Mutex
	msgs []Message
}

var _ Recorder = (*Transcript)(nil)

// Record appends m.
func (t *Transcript) Record(m Message) {
	t.mu.Lock()
	t.msgs = append(t.msgs, m)
	t.mu.Unlock()
}

// Messages returns a copy of the recorded messages.
func (t *Transcript) Messages() []Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Message(nil), t.msgs...)
}

// Kinds returns the Kind of every recorded message, in order.
func (t *Transcript) Kinds() []string {
	msgs := t.Messages()
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Kind()
	}
	return out
}

func requestKind(r *extprocv3.ProcessingRequest) string {
	switch r.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingRequest_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return "empty"
}

func responseKind(r *extprocv3.ProcessingResponse) string {
	switch r.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return "response_trailers"
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return "immediate_response"
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		return "streamed_immediate_response"
	}
	return "empty"
}
