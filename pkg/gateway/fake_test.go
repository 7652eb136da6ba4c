package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openepp/openepp/pkg/extproc"
)

// Request headers that drive fakeEPP.
const (
	hdrDest      = "x-test-dest"      // route here ("" routes nowhere)
	hdrImmediate = "x-test-immediate" // answer with this status at once
	hdrViolate   = "x-test-violate"   // reply with a body mutation Envoy refuses
	hdrHang      = "x-test-hang"      // never reply
	hdrLate      = "x-test-late"      // answer with this status after routing
	hdrCost      = "x-test-cost"      // report this cost in envoy.lb with the last response chunk
	hdrEvict     = "x-test-evict"     // after routing, evict (429) once fakeEPP.evict is closed
)

// fakeEPP follows the EPP's message pattern (headers reply held until the
// body ends, bodies echoed as streamed_response) and is driven by request
// headers. On response headers it reports the served endpoint it saw in
// x-epp-saw-served; it adds x-epp-trailer to response trailers.
type fakeEPP struct {
	extprocv3.UnimplementedExternalProcessorServer
	once     sync.Once
	canceled chan struct{} // closed when a stream ends with Canceled
	ended    chan struct{} // closed when a stream ends, by a half-close or Canceled
	endOnce  sync.Once
	evict    <-chan struct{} // when closed, streams with hdrEvict are evicted
}

func newFakeEPP() *fakeEPP {
	return &fakeEPP{canceled: make(chan struct{}), ended: make(chan struct{})}
}

// eppStream is the per-stream state of fakeEPP.
type eppStream struct {
	headers  map[string]string
	held     [][]byte
	routed   bool // the request headers reply was produced
	evicting bool
}

// eppSender serializes the replies of the Process loop and of an eviction,
// which comes unsolicited, as llm-d's in-flight eviction does; after it
// nothing more is answered.
type eppSender struct {
	mu      sync.Mutex
	srv     extprocv3.ExternalProcessor_ProcessServer
	evicted bool
}

func (o *eppSender) send(replies ...*extprocv3.ProcessingResponse) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range replies {
		if o.evicted {
			return nil
		}
		if err := o.srv.Send(r); err != nil {
			return err
		}
	}
	return nil
}

// evictWhen sends the eviction once trigger is closed, unless the stream
// ended first.
func (o *eppSender) evictWhen(trigger, done <-chan struct{}) {
	select {
	case <-trigger:
	case <-done:
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.evicted = true
	_ = o.srv.Send(immediateWith(http.StatusTooManyRequests, "evicted", "evicted")) // the client may be gone
}

func (f *fakeEPP) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	st := &eppStream{}
	out := &eppSender{srv: srv}
	done := make(chan struct{})
	var evicting sync.WaitGroup
	defer evicting.Wait()
	defer close(done)
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			f.endOnce.Do(func() { close(f.ended) })
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if status.Code(err) == codes.Canceled {
				f.once.Do(func() { close(f.canceled) })
			}
			return err
		}
		replies, finished := st.handle(req)
		if st.headers[hdrHang] != "" {
			<-srv.Context().Done()
			return srv.Context().Err()
		}
		if err := out.send(replies...); err != nil {
			return err
		}
		if st.routed && st.headers[hdrEvict] != "" && !st.evicting {
			st.evicting = true
			evicting.Go(func() { out.evictWhen(f.evict, done) })
		}
		if finished {
			return nil
		}
	}
}

// handle returns the replies to one message and whether the stream is over.
func (st *eppStream) handle(req *extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, bool) {
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		st.headers = map[string]string{}
		for _, h := range r.RequestHeaders.GetHeaders().GetHeaders() {
			st.headers[h.GetKey()] = string(h.GetRawValue())
		}
		if code := st.headers[hdrImmediate]; code != "" {
			return []*extprocv3.ProcessingResponse{immediate(code)}, true
		}
		if r.RequestHeaders.GetEndOfStream() {
			return []*extprocv3.ProcessingResponse{st.routedReply()}, false
		}
	case *extprocv3.ProcessingRequest_RequestBody:
		st.held = append(st.held, r.RequestBody.GetBody())
		if r.RequestBody.GetEndOfStream() {
			return st.release(true), st.headers[hdrLate] != ""
		}
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return append(st.release(false), &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}), false
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		served := req.GetMetadataContext().GetFilterMetadata()[extproc.LBNamespace].GetFields()[extproc.ServedKey].GetStringValue()
		return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: setHeaders("x-epp-saw-served", served)},
		}}}}, false
	case *extprocv3.ProcessingRequest_ResponseBody:
		reply := bodyReply(false, r.ResponseBody.GetBody(), r.ResponseBody.GetEndOfStream())
		if cost, err := strconv.Atoi(st.headers[hdrCost]); err == nil && r.ResponseBody.GetEndOfStream() {
			reply.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{extproc.LBNamespace: structpb.NewStructValue(
				&structpb.Struct{Fields: map[string]*structpb.Value{"cost": structpb.NewNumberValue(float64(cost))}})}}
		}
		return []*extprocv3.ProcessingResponse{reply}, false
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{
			HeaderMutation: setHeaders("x-epp-trailer", "1"),
		}}}}, false
	}
	return nil, false
}

// release answers the request headers and echoes the held body.
func (st *eppStream) release(eos bool) []*extprocv3.ProcessingResponse {
	out := []*extprocv3.ProcessingResponse{st.routedReply()}
	if st.headers[hdrViolate] != "" {
		return append(out, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
			Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("{}")}}},
		}}})
	}
	for i, b := range st.held {
		out = append(out, bodyReply(true, b, eos && i == len(st.held)-1))
	}
	if code := st.headers[hdrLate]; code != "" {
		out = append(out, immediate(code))
	}
	return out
}

func (st *eppStream) routedReply() *extprocv3.ProcessingResponse {
	st.routed = true
	dest := st.headers[hdrDest]
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
		Response: &extprocv3.CommonResponse{},
	}}}
	if dest == "" {
		return resp
	}
	common := resp.GetRequestHeaders().GetResponse()
	common.HeaderMutation, common.ClearRouteCache = setHeaders(extproc.DestinationHeader, dest), true
	resp.DynamicMetadata, _ = structpb.NewStruct(map[string]any{extproc.LBNamespace: map[string]any{extproc.DestinationHeader: dest}})
	return resp
}

func setHeaders(key, value string) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)}}}}
}

func immediate(code string) *extprocv3.ProcessingResponse {
	c, _ := strconv.Atoi(code)
	return immediateWith(c, "rejected-saturated", "denied")
}

// immediateWith is an immediate response with llm-d's drop reason header.
func immediateWith(code int, reason, body string) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
		Body:    []byte(body),
		Headers: setHeaders("x-llm-d-request-dropped-reason", reason),
	}}}
}

func bodyReply(request bool, body []byte, eos bool) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: eos}},
	}}}
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}

// serveEPP runs impl on a loopback port until the test ends.
func serveEPP(t *testing.T, impl extprocv3.ExternalProcessorServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(srv, impl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// startGateway serves a Gateway in front of the EPP at eppAddr and returns
// its base URL.
func startGateway(t *testing.T, eppAddr string, opts Options) string {
	t.Helper()
	c, err := extproc.Dial(context.Background(), eppAddr, extproc.WithPlaintext(), extproc.WithCloseGrace(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	opts.ExtProc = c
	gw, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		gw.Close()
		_ = c.Close()
	})
	return srv.URL
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// echoUpstream is a model server stand-in that echoes the body and reports
// what it received in X-Seen-* headers.
func echoUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Dest", r.Header.Get(extproc.DestinationHeader))
		w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append([]byte("echo:"), body...))
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
