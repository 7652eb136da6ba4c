package server_test

import (
	"context"
	"io"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/server"
)

// replayStream plays prepared request messages to Server.Process and drops
// its replies: what is left to count is the EPP's own work, without gRPC
// transport and protobuf encoding.
type replayStream struct {
	grpc.ServerStream // nil: Process uses none of its other methods
	msgs              []*extprocv3.ProcessingRequest
	next, sent        int
}

func (s *replayStream) Context() context.Context { return context.Background() }

func (s *replayStream) Recv() (*extprocv3.ProcessingRequest, error) {
	if s.next == len(s.msgs) {
		return nil, io.EOF
	}
	s.next++
	return s.msgs[s.next-1], nil
}

func (s *replayStream) Send(*extprocv3.ProcessingResponse) error {
	s.sent++
	return nil
}

// routedRequest is BenchmarkRoundTrip's request as Envoy sends it: headers,
// then the 1 KiB body in one chunk.
func routedRequest() []*extprocv3.ProcessingRequest {
	req := benchRequest()
	hs := []*corev3.HeaderValue{{Key: ":authority", RawValue: []byte("localhost")}, {Key: ":path", RawValue: []byte(req.Path)},
		{Key: ":method", RawValue: []byte(req.Method)}, {Key: ":scheme", RawValue: []byte("http")}}
	for k, vs := range req.Headers {
		hs = append(hs, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(vs[0])})
	}
	hs = append(hs, &corev3.HeaderValue{Key: "content-length", RawValue: []byte("1024")})
	return []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: hs}}}},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
			Body: req.Body, EndOfStream: true}}},
	}
}

// TestRouteAllocationBudget keeps the EPP's own allocations per routed
// request in check: default scoring over 100 endpoints, from the request
// headers to the routing answer and the body sent back.
func TestRouteAllocationBudget(t *testing.T) { // not parallel: AllocsPerRun counts every goroutine
	if testing.Short() || raceEnabled {
		t.Skip("allocation measurement")
	}
	store := datastore.New()
	store.Replace("test", endpointsAt(100))
	ws, producer := defaultScoring(t)
	srv := server.New(store, newScheduler(t, nil, ws, producer), server.Options{
		Metrics: server.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard()})
	s := &replayStream{msgs: routedRequest()}
	route := func() {
		s.next, s.sent = 0, 0
		if err := srv.Process(s); err != nil || s.sent != 2 {
			t.Fatalf("Process: %v after %d replies, want the answer and the body", err, s.sent)
		}
	}
	for range 20 { // warm the prefix index and the metric children
		route()
	}
	allocs := testing.AllocsPerRun(100, route)
	if allocs > routeAllocBudget {
		t.Errorf("a routed request allocates %.0f times; budget is %d", allocs, routeAllocBudget)
	}
	t.Logf("allocations per routed request: %.1f", allocs)
}

// routeAllocBudget: 72 before the answer's messages, the scorers' outputs
// and the picker's input shared allocations.
const routeAllocBudget = 38
