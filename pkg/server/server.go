// Package server implements the EPP side of Envoy's ext_proc protocol: one
// gRPC stream per HTTP request, FULL_DUPLEX_STREAMED bodies, the routing
// answer (destination header + envoy.lb metadata), immediate responses for
// errors, response pass-through with usage accounting, and gRPC health.
package server

import (
	"errors"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/poolroute"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// BodyChunkLimit is the largest streamed_response chunk the EPP sends; it
// stays under the 64 KiB buffer limit of some Envoy builds.
const BodyChunkLimit = 62000

// DefaultMaxRequestBodyBytes is the default --max-request-body-bytes.
const DefaultMaxRequestBodyBytes = 32 << 20

// Endpoints is what the server needs from the datastore.
type Endpoints interface {
	Snapshot() []*endpoint.Endpoint
	Ready() bool
}

// Objectives resolves an InferenceObjective name to its priority.
type Objectives interface {
	Priority(name string) (priority int, ok bool)
}

// EnginePriority maps a request's priority (higher is more important, as in
// InferenceObjective) to the "priority" body member the engine behind
// target reads; ok is false when that engine takes none.
type EnginePriority interface {
	Value(target *endpoint.Endpoint, priority int) (value int, ok bool)
}

// Rewrites resolves InferenceModelRewrite rules: the model a request for
// model is sent as and the name of the rule's object. Randomness (weighted
// targets) comes from rnd, the request's seeded source.
type Rewrites interface {
	Rewrite(model string, rnd *rand.Rand) (target, rule string, ok bool)
}

// Options tune the server; zero values mean the documented defaults.
type Options struct {
	// MaxRequestBodyBytes rejects larger bodies with 413.
	MaxRequestBodyBytes int
	// DisableSubsetFilter ignores the proxy's subset hint.
	DisableSubsetFilter bool
	// EmitEndpointScores adds each candidate's score to the envoy.lb
	// metadata under x-gateway-destination-endpoint-scores.
	EmitEndpointScores bool
	// IncludeStreamUsage asks the server for token usage on streamed chat
	// and text completions whose client did not (stream_options), so that
	// token metrics and accounting see them, and removes that usage event
	// from the stream the client gets.
	IncludeStreamUsage bool
	// Unparsed names the APIs whose bodies are not parsed (no configured
	// parser covers them): their requests are routed without prompt-aware
	// scoring, as paths the EPP does not know are. request.AllAPIs is the
	// passthrough-parser alone. SetUnparsed changes it (config reload).
	Unparsed   request.APISet
	Objectives Objectives
	// Rewrites, when set, override the model-name rewrite header with a
	// matching rule; responses get the client's model name back.
	Rewrites Rewrites
	// EnginePriority, when set, writes each request's priority into its
	// body for the engine's own scheduler (see enginePriority).
	// SetEnginePriority changes it (config reload).
	EnginePriority EnginePriority
	Log            logr.Logger
	Metrics        *Metrics
	// Streams, when set, records each ext_proc stream (llm-d's opt-in
	// stream metrics).
	Streams *StreamMetrics
	// Tracer, when set, traces every request (see trace.go); Propagator
	// reads and writes the trace context headers (W3C trace context when
	// nil).
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Admission, when set, is the flow control requests pass through
	// before scheduling (see SetAdmission).
	Admission Admission
	// Pools, when set, routes each request among one pool's endpoints
	// once the endpoints name several pools (pool.go). PoolPolicies, when
	// set, gives each pool's objectives and rewrites, replacing Objectives
	// and Rewrites for requests with a pool.
	Pools        *poolroute.Router
	PoolPolicies func(pool string) (Objectives, Rewrites)
}

// Server is the ext_proc service. It is safe for concurrent streams.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	endpoints Endpoints
	sched     atomic.Pointer[scheduler.Scheduler]
	admission swappable[Admission]
	unparsed  atomic.Uint32 // request.APISet
	priority  swappable[EnginePriority]
	opts      Options
	log       logr.Logger
	draining  atomic.Bool
	inflight  atomic.Int64
}

// New returns a server routing among endpoints with sched.
func New(endpoints Endpoints, sched *scheduler.Scheduler, opts Options) *Server {
	if opts.MaxRequestBodyBytes <= 0 {
		opts.MaxRequestBodyBytes = DefaultMaxRequestBodyBytes
	}
	if opts.Tracer != nil && opts.Propagator == nil {
		opts.Propagator = propagation.TraceContext{}
	}
	s := &Server{endpoints: endpoints, opts: opts, log: opts.Log}
	s.sched.Store(sched)
	s.SetAdmission(opts.Admission)
	s.SetUnparsed(opts.Unparsed)
	s.SetEnginePriority(opts.EnginePriority)
	return s
}

// SetEnginePriority sets (nil: stops) the writing of requests' priorities
// into their bodies (config reload: --engine-priority=auto follows the
// config's flavour).
func (s *Server) SetEnginePriority(ep EnginePriority) { s.priority.set(ep) }

func (s *Server) enginePriority() EnginePriority { return s.priority.get() }

// swappable holds an interface value a config reload replaces while
// requests read it; the zero value holds nil.
type swappable[T comparable] struct{ p atomic.Pointer[T] }

func (w *swappable[T]) set(v T) {
	var none T
	if v == none {
		w.p.Store(nil)
		return
	}
	w.p.Store(&v)
}

func (w *swappable[T]) get() T {
	if p := w.p.Load(); p != nil {
		return *p
	}
	var none T
	return none
}

// SetUnparsed changes which API families new requests leave unparsed
// (config reload: the configured parsers changed).
func (s *Server) SetUnparsed(apis request.APISet) { s.unparsed.Store(uint32(apis)) }

func (s *Server) unparsedAPIs() request.APISet { return request.APISet(s.unparsed.Load()) }

// SetScheduler swaps the scheduler (config reload). Requests already
// scheduled keep running their lifecycle hooks on the old one.
func (s *Server) SetScheduler(sched *scheduler.Scheduler) { s.sched.Store(sched) }

// SetAdmission sets (nil: removes) the flow control new requests pass
// through; requests already waiting stay with the one they entered.
func (s *Server) SetAdmission(a Admission) { s.admission.set(a) }

// Admission returns the flow control new requests pass through, or nil.
func (s *Server) Admission() Admission { return s.admission.get() }

// Scheduler returns the scheduler new requests use.
func (s *Server) Scheduler() *scheduler.Scheduler { return s.sched.Load() }

// InFlight is the number of open ext_proc streams.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// Process serves one ext_proc stream, i.e. one HTTP request.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) (err error) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if sm := s.opts.Streams; sm != nil {
		sm.started()
		opened := s.now()
		defer func() { sm.finished(err, s.now().Sub(opened)) }()
	}
	x := newExchange(s, stream)
	defer func() { x.finish(err) }()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if status.Code(err) == codes.Canceled || errors.Is(err, stream.Context().Err()) {
				return nil
			}
			return err
		}
		if x.evicted.Load() {
			return nil // the proxy has its answer and ends the stream
		}
		done, err := x.handle(msg)
		if errors.Is(err, errEvicted) {
			return nil // evicted while handling: the proxy has its answer
		}
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// now is the server's clock reading (a seam for tests of timing metrics).
func (s *Server) now() time.Time { return time.Now() }
