package extproc

import (
	"errors"
	"fmt"
	"io"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// NoopServer is the smallest ext_proc server that follows the EPP's message
// pattern: it holds the request headers reply until the request body ends,
// then echoes the body back as streamed_response chunks; it answers response
// headers at once and echoes response body chunks as they come. It measures
// the transport floor (gRPC plus this client) in benchmarks, and serves as
// a stand-in EPP for the gateway. It is safe for concurrent streams.
type NoopServer struct {
	extprocv3.UnimplementedExternalProcessorServer

	// Destination, when set, is returned like the EPP returns its pick: as
	// the x-gateway-destination-endpoint header (with clear_route_cache) and
	// the envoy.lb dynamic metadata value.
	Destination string
}

var _ extprocv3.ExternalProcessorServer = (*NoopServer)(nil)

// Process serves one stream.
func (n *NoopServer) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	var held [][]byte // request body chunks held until the headers reply is sent
	replied := false
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("noop: receive: %w", err)
		}
		var out []*extprocv3.ProcessingResponse
		switch r := req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if r.RequestHeaders.GetEndOfStream() {
				out, replied = append(out, n.headersReply()), true
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			held = append(held, r.RequestBody.GetBody())
			if r.RequestBody.GetEndOfStream() {
				out = n.releaseHeld(held, true)
				held, replied = nil, true
			}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			if !replied {
				out = n.releaseHeld(held, false)
				held, replied = nil, true
			}
			out = append(out, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}})
		default:
			reply, err := responsePhaseEcho(req)
			if err != nil {
				return err
			}
			out = append(out, reply)
		}
		for _, m := range out {
			if err := srv.Send(m); err != nil {
				return fmt.Errorf("noop: send: %w", err)
			}
		}
	}
}

// releaseHeld returns the headers reply followed by the held chunks, the last
// carrying end_of_stream when eos is true.
func (n *NoopServer) releaseHeld(held [][]byte, eos bool) []*extprocv3.ProcessingResponse {
	out := make([]*extprocv3.ProcessingResponse, 0, len(held)+1)
	out = append(out, n.headersReply())
	for i, b := range held {
		out = append(out, streamedReply(true, b, eos && i == len(held)-1))
	}
	return out
}

func (n *NoopServer) headersReply() *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{}
	resp := &extprocv3.ProcessingResponse{}
	if n.Destination != "" {
		common.ClearRouteCache = true
		common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
			Header: &corev3.HeaderValue{Key: DestinationHeader, RawValue: []byte(n.Destination)},
		}}}
		resp.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{
			LBNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				DestinationHeader: structpb.NewStringValue(n.Destination),
			}}),
		}}
	}
	resp.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: common}}
	return resp
}

// responsePhaseEcho answers a response-phase message without changing it.
func responsePhaseEcho(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return streamedReply(false, r.ResponseBody.GetBody(), r.ResponseBody.GetEndOfStream()), nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	}
	return nil, fmt.Errorf("noop: unexpected %s message", requestKind(req))
}

// streamedReply builds a body reply carrying one streamed_response chunk.
func streamedReply(request bool, body []byte, eos bool) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: eos}},
	}}}
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}
