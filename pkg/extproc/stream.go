package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// phase is the state of one direction (request or response) of an exchange,
// mirroring Envoy's per-direction ProcessorState.
type phase struct {
	name string // "request" or "response"

	headersSent, headersEOS, headersReplied bool
	chunksSent                              int
	bodyEOSSent, bodyDone                   bool
	trailersSent, trailersReplied           bool

	headers  *headerMap
	trailers *headerMap
	meta     *corev3.Metadata // metadata_context attached to this direction's messages

	chunks   [][]byte // streamed_response bodies, in order
	log      mutationLog
	dynamic  map[string]map[string]any
	clearRC  bool
	complete bool
}

// done reports whether the processor has answered everything Envoy sent in
// this direction: the headers, then the body up to end_of_stream or the
// trailers.
func (p *phase) done() bool {
	if !p.headersReplied {
		return false
	}
	return p.headersEOS || (p.bodyEOSSent && p.bodyDone) || (p.trailersSent && p.trailersReplied)
}

// pending describes what this direction still waits for.
func (p *phase) pending() string {
	switch {
	case !p.headersReplied:
		return p.name + "_headers reply"
	case p.trailersSent:
		return p.name + "_trailers reply"
	default:
		return p.name + "_body streamed_response with end_of_stream"
	}
}

// Stream is one ext_proc stream playing one HTTP exchange the way Envoy's
// ext_proc filter does in FULL_DUPLEX_STREAMED mode. Send methods only send
// (they never wait for replies, so a processor that holds its header reply
// until the body's end cannot deadlock them); Await and Recv methods wait for
// replies, which a background reader validates as they arrive.
//
// One goroutine may send while others wait. The Send methods of one
// direction must be called in protocol order: headers, body chunks, then
// trailers. A Stream must be ended with Close (or Abort).
type Stream struct {
	ps         extprocv3.ExternalProcessor_ProcessClient
	cancel     context.CancelFunc
	closeGrace time.Duration
	rec        Recorder
	recvDone   chan struct{}
	sendMu     sync.Mutex
	closeOnce  sync.Once

	mu         sync.Mutex
	notify     chan struct{}
	ended      chan struct{} // closed once err or immediate is set
	err        error
	sentFirst  bool
	halfClosed bool
	recvEnded  bool
	req, resp  phase
	reqFilter  map[string]map[string]any
	decision   *Decision
	immediate  *ImmediateResponse
}

func newStream(ps extprocv3.ExternalProcessor_ProcessClient, cancel context.CancelFunc, grace time.Duration) *Stream {
	return &Stream{
		ps:         ps,
		cancel:     cancel,
		closeGrace: grace,
		recvDone:   make(chan struct{}),
		notify:     make(chan struct{}),
		ended:      make(chan struct{}),
		req:        phase{name: "request", dynamic: map[string]map[string]any{}},
		resp:       phase{name: "response", dynamic: map[string]map[string]any{}},
	}
}

// broadcast wakes every waiter and, once the exchange is over early, closes
// ended; s.mu must be held. Every change of err or immediate broadcasts, so
// Err is non-nil exactly when Ended is closed.
func (s *Stream) broadcast() {
	close(s.notify)
	s.notify = make(chan struct{})
	if s.err != nil || s.immediate != nil {
		select {
		case <-s.ended:
		default:
			close(s.ended)
		}
	}
}

// Ended is closed when the exchange ends before its normal end: the
// processor sent an immediate_response (at any time, also unsolicited while
// no reply is due, as an EPP evicting a dispatched request does), a reply
// broke a rule, the stream failed, or it was aborted. Close and a normal end
// leave it open. A proxy selects on it while it waits for the upstream or
// streams the response, to stop as Envoy does (see Err and Immediate).
func (s *Stream) Ended() <-chan struct{} { return s.ended }

// Err is nil until Ended is closed; then it is the *ImmediateResponse when
// the processor ended the exchange with one, otherwise the terminal error
// (*ProtocolError, *StreamError or ErrAborted).
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.immediate != nil {
		return s.immediate
	}
	return s.err
}

// Immediate returns the processor's immediate response, or nil while it has
// sent none.
func (s *Stream) Immediate() *ImmediateResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.immediate
}

// fail records the first terminal error and resets the stream, as Envoy
// closes the ext_proc stream after a rejected message; s.mu must be held.
func (s *Stream) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	s.cancel()
	s.broadcast()
}

// record passes a message to the recorder; s.mu must be held.
func (s *Stream) record(m Message) {
	if s.rec != nil {
		s.rec.Record(m)
	}
}

// send runs update (which validates the call and advances the state) and
// sends msg, attaching the protocol configuration to the first message.
func (s *Stream) send(ctx context.Context, msg *extprocv3.ProcessingRequest, update func() error) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.prepare(msg, update); err != nil {
		return err
	}
	var err error
	if ctx.Done() == nil { // never cancelled: spare the AfterFunc's allocations
		err = s.ps.Send(msg)
	} else {
		stop := context.AfterFunc(ctx, s.Abort)
		err = s.ps.Send(msg)
		stop()
	}
	if err != nil {
		return s.sendFailed(err)
	}
	return nil
}

func (s *Stream) prepare(msg *extprocv3.ProcessingRequest, update func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.immediate != nil:
		return ErrExchangeEnded
	case s.err != nil:
		return s.err
	case s.halfClosed:
		return ErrClosed
	}
	if err := update(); err != nil {
		return err
	}
	if !s.sentFirst {
		s.sentFirst = true
		msg.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  filterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
			ResponseBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
		}
	}
	s.record(Message{Direction: Sent, Request: msg})
	return nil
}

// sendFailed turns a Send error into the stream's real outcome: gRPC reports
// io.EOF from Send and the status from Recv.
func (s *Stream) sendFailed(err error) error {
	if !errors.Is(err, io.EOF) {
		s.mu.Lock()
		s.fail(&StreamError{Code: codeOf(err), Pending: "a send to complete", Err: err})
		s.mu.Unlock()
	}
	<-s.recvDone
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.immediate != nil:
		return ErrExchangeEnded
	case s.err != nil:
		return s.err
	}
	return &StreamError{Pending: "the processor to accept the next message"}
}

// wait blocks until ready (evaluated with s.mu held) is true, the stream
// failed, or ctx is done.
func (s *Stream) wait(ctx context.Context, what string, ready func() bool) error {
	for {
		s.mu.Lock()
		if ready() {
			s.mu.Unlock()
			return nil
		}
		err, ended, ch := s.err, s.recvEnded, s.notify
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if ended {
			return &StreamError{Pending: what}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("extproc: waiting for %s: %w", what, ctx.Err())
		}
	}
}

// Abort cancels the stream at once, as Envoy resets the ext_proc stream when
// the downstream client disconnects. Later calls return ErrAborted.
func (s *Stream) Abort() {
	s.mu.Lock()
	if s.err == nil {
		s.err = ErrAborted
	}
	s.cancel()
	s.broadcast()
	s.mu.Unlock()
}

// Close ends the stream the way Envoy does once it needs nothing more: it
// half-closes, gives the processor DefaultCloseGrace (see WithCloseGrace) to
// end the stream, then cancels it; after Abort or a failure it only
// cancels, as Envoy resets the stream. It returns the stream's terminal error,
// if any, including protocol violations that arrived after the last reply
// the caller waited for; it returns nil after Abort. Close is idempotent.
func (s *Stream) Close() error {
	s.closeOnce.Do(s.shutdown)
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, ErrAborted) {
		return nil
	}
	return s.err
}

func (s *Stream) shutdown() {
	// A failed or aborted stream is only cancelled: gRPC sends a half-close
	// at once but a cancel later, so the processor would see a clean end
	// where Envoy resets. A send blocked on flow control holds sendMu; a
	// graceful half-close is then impossible, so the stream is cancelled.
	s.mu.Lock()
	failed := s.err != nil
	s.mu.Unlock()
	if !failed && s.sendMu.TryLock() {
		s.mu.Lock()
		done := s.halfClosed
		s.halfClosed = true
		s.mu.Unlock()
		if !done {
			_ = s.ps.CloseSend() // the outcome is read from Recv
		}
		s.sendMu.Unlock()
		timer := time.NewTimer(s.closeGrace)
		select {
		case <-s.recvDone:
		case <-timer.C:
		}
		timer.Stop()
	}
	s.mu.Lock()
	s.halfClosed = true
	s.mu.Unlock()
	s.cancel()
	<-s.recvDone
}

// endAfterImmediate closes the stream as Envoy does once it takes an
// immediate response: a half-close, unless a Send in progress holds the
// stream, then a reset.
func (s *Stream) endAfterImmediate() {
	if s.sendMu.TryLock() {
		s.mu.Lock()
		done := s.halfClosed
		s.halfClosed = true
		s.mu.Unlock()
		if !done {
			_ = s.ps.CloseSend()
		}
		s.sendMu.Unlock()
	}
	s.cancel()
}

// recvLoop reads every reply until the stream ends.
func (s *Stream) recvLoop() {
	defer close(s.recvDone)
	for {
		resp, err := s.ps.Recv()
		if err != nil {
			s.recvFailed(err)
			return
		}
		s.handle(resp)
	}
}

// recvFailed records how the stream ended. A clean end (io.EOF) is fine once
// the client half-closed or nothing is pending; otherwise the processor ended
// the exchange early, which Envoy would treat as a failed external call.
func (s *Stream) recvFailed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recvEnded = true
	defer s.broadcast()
	if s.err != nil || s.immediate != nil || s.halfClosed {
		return
	}
	if errors.Is(err, io.EOF) {
		if s.expecting() {
			s.err = &StreamError{Pending: s.pendingLocked()}
		}
		return
	}
	s.err = &StreamError{Code: codeOf(err), Pending: s.pendingLocked(), Err: err}
}

// expecting reports whether a reply is outstanding; s.mu must be held.
func (s *Stream) expecting() bool {
	if s.req.headersSent && !s.req.done() {
		return true
	}
	return s.resp.headersSent && !s.resp.done()
}

func (s *Stream) pendingLocked() string {
	if s.req.headersSent && !s.req.done() {
		return s.req.pending()
	}
	if s.resp.headersSent && !s.resp.done() {
		return s.resp.pending()
	}
	return "the next phase"
}

func codeOf(err error) codes.Code {
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return codes.Unknown
}
