package server

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// phase is where one stream is in the HTTP exchange.
type phase int

const (
	awaitRequestHeaders phase = iota
	readingRequestBody
	routed // answer sent, waiting for the model server's response
	readingResponseBody
	finished
)

// maxBodyPrealloc caps the buffer preallocated from Content-Length, so a
// lying header cannot make the EPP allocate the full limit up front.
const maxBodyPrealloc = 1 << 20

// exchange is the state of one stream. It is used by one goroutine only.
type exchange struct {
	srv    *Server
	stream extprocv3.ExternalProcessor_ProcessServer
	ctx    context.Context
	phase  phase
	start  time.Time

	headers     map[string]string
	filterMD    map[string]*structpb.Struct
	api         request.API
	body        []byte
	generatedID string
	// pool is the request's InferencePool (resolvePool); "" when the
	// endpoints belong to no pool.
	pool string

	// Set once scheduled; hooks run on the scheduler that made the decision.
	sched     *scheduler.Scheduler
	state     *scheduler.State
	req       *scheduler.Request
	result    *scheduler.Result
	hooked    bool
	completed bool
	// admission is this request's pass through flow control, told when
	// the request is scheduled and when it is done.
	admission Admitted

	resp     scheduler.Response
	sse      request.StreamUsage
	respBody []byte
	// usageFinal is set once the response's usage has been read to the end.
	usageFinal bool
	// span is the request's trace span; nil without a tracer.
	span trace.Span
	// modelBack restores the client's model name in the response when the
	// request was sent under another one; nil otherwise.
	modelBack *modelRewriter
	// strip removes the stream's usage event when the EPP asked for it on
	// the client's behalf (Options.IncludeStreamUsage); nil otherwise.
	strip *usageStripper

	// obs are the request's metric children, nil until it is scheduled.
	obs *flowMetrics
	// ttft is the time to the first response body byte (0 before it),
	// lastChunk when the latest non-empty chunk came, respBusy the EPP's
	// time on response messages so far.
	ttft      time.Duration
	lastChunk time.Time
	respBusy  time.Duration
	answered  bool

	// sendMu orders this goroutine's sends with an eviction's, which
	// comes from flow control's; evicted (set once the eviction's answer
	// is sent; read without it between messages) and over (the stream is
	// done) are written under it.
	sendMu  sync.Mutex
	evicted atomic.Bool
	over    bool
}

func newExchange(s *Server, stream extprocv3.ExternalProcessor_ProcessServer) *exchange {
	return &exchange{srv: s, stream: stream, ctx: stream.Context(), start: s.now()}
}

// handle processes one message; done means the exchange is over.
func (x *exchange) handle(msg *extprocv3.ProcessingRequest) (done bool, err error) {
	md := msg.GetMetadataContext().GetFilterMetadata()
	switch r := msg.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return x.onRequestHeaders(r.RequestHeaders, md)
	case *extprocv3.ProcessingRequest_RequestBody:
		return x.onRequestBody(r.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return x.onRequestTrailers()
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		defer x.busy(x.srv.now())
		return x.onResponseHeaders(r.ResponseHeaders, md)
	case *extprocv3.ProcessingRequest_ResponseBody:
		now := x.srv.now()
		defer x.busy(now)
		return x.onResponseBody(r.ResponseBody, md, now)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		defer x.busy(x.srv.now())
		return x.onResponseTrailers()
	}
	return false, status.Error(codes.InvalidArgument, "ext_proc message carries no request phase")
}

func outOfOrder(what string, p phase) error {
	return status.Errorf(codes.FailedPrecondition, "ext_proc protocol violation: %s in phase %d", what, p)
}

func (x *exchange) onRequestHeaders(h *extprocv3.HttpHeaders, md map[string]*structpb.Struct) (bool, error) {
	if x.phase != awaitRequestHeaders {
		return false, outOfOrder("request headers", x.phase)
	}
	x.headers = headerMap(h.GetHeaders())
	x.filterMD = md
	if x.headers[RequestIDHeader] == "" {
		x.generatedID = uuid.NewString()
		x.headers[RequestIDHeader] = x.generatedID
	}
	x.startTrace()
	x.api = request.APIForPath(x.path())
	if x.srv.unparsedAPIs().Has(x.api) {
		x.api = request.Other
	}
	if answered, err := x.respond(); answered || err != nil {
		return answered, err
	}
	if h.GetEndOfStream() {
		return x.routeBodyless()
	}
	// A negative or unparsable content-length is ignored (Envoy never sends
	// one); it only serves the early 413 and the preallocation.
	if cl, err := strconv.Atoi(x.headers["content-length"]); err == nil && cl >= 0 {
		if cl > x.srv.opts.MaxRequestBodyBytes {
			return x.reject(x.tooLarge(cl))
		}
		x.body = make([]byte, 0, min(cl, maxBodyPrealloc))
	}
	x.phase = readingRequestBody
	return false, nil
}

// path is :path, falling back to the headers some proxies rewrite it into.
func (x *exchange) path() string {
	for _, k := range []string{":path", "x-original-path", "x-forwarded-path"} {
		if v := x.headers[k]; v != "" {
			return v
		}
	}
	return "/v1/completions"
}

func (x *exchange) onRequestBody(b *extprocv3.HttpBody) (bool, error) {
	if x.phase != readingRequestBody {
		return false, outOfOrder("request body", x.phase)
	}
	if len(x.body)+len(b.GetBody()) > x.srv.opts.MaxRequestBodyBytes {
		return x.reject(x.tooLarge(len(x.body) + len(b.GetBody())))
	}
	x.body = append(x.body, b.GetBody()...)
	if !b.GetEndOfStream() {
		return false, nil
	}
	return x.route(true)
}

func (x *exchange) onRequestTrailers() (bool, error) {
	switch x.phase {
	case readingRequestBody: // trailers end a body that had no EoS flag
		if done, err := x.route(false); done || err != nil {
			return done, err
		}
	case routed:
	default:
		return false, outOfOrder("request trailers", x.phase)
	}
	return false, x.send(trailersResponse(true))
}

func (x *exchange) tooLarge(n int) error {
	return wrapf(errBodyTooLarge, "%d bytes exceeds the limit of %d bytes", n, x.srv.opts.MaxRequestBodyBytes)
}

// reject answers with an immediate response derived from err and ends the
// exchange.
func (x *exchange) reject(err error) (bool, error) {
	code, reason := statusFor(err)
	x.traceRejected(code, err)
	x.srv.opts.Metrics.requestError(x.req, x.rejectedFairness(), code)
	x.answeredNow()
	if code >= 500 && code != 503 {
		x.srv.log.Error(err, "request failed", "requestID", x.headers[RequestIDHeader])
	} else {
		x.srv.log.V(1).Info("request rejected", "requestID", x.headers[RequestIDHeader], "status", code, "reason", err.Error())
	}
	x.phase = finished
	return true, x.send(immediateResponse(code, reason, err.Error(), request.APIForPath(x.path()).IsAnthropic()))
}

func (x *exchange) send(resp *extprocv3.ProcessingResponse) error {
	x.sendMu.Lock()
	defer x.sendMu.Unlock()
	if x.evicted.Load() {
		return errEvicted
	}
	if err := x.stream.Send(resp); err != nil {
		return status.Errorf(codes.Unavailable, "send to proxy: %v", err)
	}
	return nil
}

// answeredNow records, once, how long the EPP took to answer the request.
func (x *exchange) answeredNow() {
	if !x.answered {
		x.answered = true
		x.srv.opts.Metrics.requestHandled(x.srv.now().Sub(x.start))
	}
}

// busy adds the time since start to the EPP's time on the response.
func (x *exchange) busy(start time.Time) { x.respBusy += x.srv.now().Sub(start) }
