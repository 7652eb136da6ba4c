package server

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openepp/openepp/pkg/apierror"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// answer is the routing decision as sent to the proxy.
type answer struct {
	targets       []*endpoint.Endpoint
	headers       map[string]string // extra request headers from plugins
	removed       []string          // request headers plugins want stripped
	requestID     string            // set when the EPP generated it
	contentLength string            // set when the body length must be restated
	scores        *scheduler.ProfileResult
	trace         map[string]string // trace context for the model server
}

// headersAnswer is the reply to the request headers: the destination as a
// header and, identically, as envoy.lb dynamic metadata, with the route
// cache cleared so the proxy re-evaluates the route with the new header.
func headersAnswer(a answer) *extprocv3.ProcessingResponse {
	dest := joinTargets(a.targets)
	set := make([]*corev3.HeaderValueOption, 0, 3+len(a.headers)+len(a.trace))
	set = append(set, setHeader(DestinationHeader, dest))
	if a.requestID != "" {
		set = append(set, setHeader(RequestIDHeader, a.requestID))
	}
	if a.contentLength != "" {
		set = append(set, setHeader("content-length", a.contentLength))
	}
	// In name order: the same answer is the same message (map order is random).
	for _, k := range slices.Sorted(maps.Keys(a.headers)) {
		set = append(set, setHeader(k, a.headers[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(a.trace)) {
		set = append(set, setHeader(k, a.trace[k]))
	}
	var remove []string
	for _, k := range a.removed {
		if _, set := a.headers[k]; !set && !slices.Contains(remove, k) {
			remove = append(remove, k)
		}
	}
	lb := map[string]*structpb.Value{DestinationHeader: structpb.NewStringValue(dest)}
	if a.scores != nil {
		lb[ScoresKey] = scoresValue(a.scores)
	}
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{
				HeaderMutation:  &extprocv3.HeaderMutation{SetHeaders: set, RemoveHeaders: remove},
				ClearRouteCache: true,
			},
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			LBNamespace: structpb.NewStructValue(&structpb.Struct{Fields: lb}),
		}},
	}
}

// scoresValue maps each candidate's address to its weighted total score.
func scoresValue(r *scheduler.ProfileResult) *structpb.Value {
	fields := make(map[string]*structpb.Value, len(r.Candidates))
	for i, e := range r.Candidates {
		fields[e.HostPort] = structpb.NewNumberValue(r.Totals[i])
	}
	return structpb.NewStructValue(&structpb.Struct{Fields: fields})
}

// bodyChunks splits body into streamed_response replies of at most
// BodyChunkLimit bytes (always at least one), the last carrying eos.
func bodyChunks(body []byte, eos bool) []*extprocv3.ProcessingResponse {
	n := max(1, (len(body)+BodyChunkLimit-1)/BodyChunkLimit)
	out := make([]*extprocv3.ProcessingResponse, 0, n)
	for i := 0; i < n; i++ {
		chunk := body[i*BodyChunkLimit : min(len(body), (i+1)*BodyChunkLimit)]
		out = append(out, streamedBody(chunk, eos && i == n-1, true))
	}
	return out
}

// streamedBody is a FULL_DUPLEX_STREAMED body reply for either direction.
func streamedBody(chunk []byte, eos, requestSide bool) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
		BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
			StreamedResponse: &extprocv3.StreamedBodyResponse{Body: chunk, EndOfStream: eos},
		}},
	}}
	if requestSide {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}

func trailersResponse(requestSide bool) *extprocv3.ProcessingResponse {
	if requestSide {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
}

// immediateResponse ends the HTTP request at the proxy with code and a body
// saying what went wrong: plain text, or for an Anthropic client the JSON
// error its SDK decodes.
func immediateResponse(code int, reason, msg string, anthropic bool) *extprocv3.ProcessingResponse {
	contentType, body := "text/plain; charset=utf-8", []byte(http.StatusText(code)+": "+msg+"\n")
	if anthropic {
		contentType, body = "application/json", apierror.Anthropic(code, msg)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader("content-type", contentType),
				setHeader(DroppedReasonHeader, reason),
				setHeader(LLMDDroppedReasonHeader, reason),
			}},
			Body:    body,
			Details: "openepp_" + strings.ReplaceAll(reason, "-", "_"),
		},
	}}
}
