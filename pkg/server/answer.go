package server

import (
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
	set := newHeaderSets(a.headerSizes(dest))
	set.add(DestinationHeader, dest)
	if a.requestID != "" {
		set.add(RequestIDHeader, a.requestID)
	}
	if a.contentLength != "" {
		set.add("content-length", a.contentLength)
	}
	// In name order: the same answer is the same message (map order is random).
	for _, k := range sortedKeys(a.headers) {
		set.add(k, a.headers[k])
	}
	for _, k := range sortedKeys(a.trace) {
		set.add(k, a.trace[k])
	}
	var remove []string
	for _, k := range a.removed {
		if _, set := a.headers[k]; !set && !slices.Contains(remove, k) {
			remove = append(remove, k)
		}
	}
	r := new(headersReply)
	r.destKind.StringValue = dest
	r.dest.Kind = &r.destKind
	r.lb.Fields = map[string]*structpb.Value{DestinationHeader: &r.dest}
	if a.scores != nil {
		r.lb.Fields[ScoresKey] = scoresValue(a.scores)
	}
	r.lbKind.StructValue = &r.lb
	r.lbValue.Kind = &r.lbKind
	r.metadata.Fields = map[string]*structpb.Value{LBNamespace: &r.lbValue}
	r.mutation.SetHeaders, r.mutation.RemoveHeaders = set.list, remove
	r.common.HeaderMutation, r.common.ClearRouteCache = &r.mutation, true
	r.headers.Response = &r.common
	r.oneof.RequestHeaders = &r.headers
	r.resp.Response, r.resp.DynamicMetadata = &r.oneof, &r.metadata
	return &r.resp
}

// sortedKeys returns m's keys in order. Unlike slices.Sorted(maps.Keys(m)),
// whose iterator closures escape, it allocates nothing for an empty map.
func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// headerSizes counts the answer's headers and their values' bytes.
func (a *answer) headerSizes(dest string) (n, size int) {
	n, size = 1+len(a.headers)+len(a.trace), len(dest)+len(a.requestID)+len(a.contentLength)
	if a.requestID != "" {
		n++
	}
	if a.contentLength != "" {
		n++
	}
	for _, v := range a.headers {
		size += len(v)
	}
	for _, v := range a.trace {
		size += len(v)
	}
	return n, size
}

// headersReply holds the messages of one routing answer, nested as
// headersAnswer links them: one allocation instead of eleven. Send
// marshals them all at once, so they become garbage together.
type headersReply struct {
	resp     extprocv3.ProcessingResponse
	oneof    extprocv3.ProcessingResponse_RequestHeaders
	headers  extprocv3.HeadersResponse
	common   extprocv3.CommonResponse
	mutation extprocv3.HeaderMutation
	metadata structpb.Struct
	lbValue  structpb.Value
	lbKind   structpb.Value_StructValue
	lb       structpb.Struct
	dest     structpb.Value
	destKind structpb.Value_StringValue
}

// scoresValue maps each candidate's address to its weighted total score.
func scoresValue(r *scheduler.ProfileResult) *structpb.Value {
	fields := make(map[string]*structpb.Value, len(r.Candidates))
	for i, e := range r.Candidates {
		fields[e.HostPort] = structpb.NewNumberValue(r.Totals[i])
	}
	return structpb.NewStructValue(&structpb.Struct{Fields: fields})
}

// sendBody sends body as streamed_response replies of at most
// BodyChunkLimit bytes (always at least one), the last carrying eos.
func (x *exchange) sendBody(body []byte, eos bool) error {
	for off := 0; ; off += BodyChunkLimit {
		end := min(len(body), off+BodyChunkLimit)
		last := end == len(body)
		if err := x.send(streamedBody(body[off:end], eos && last, true)); err != nil || last {
			return err
		}
	}
}

// streamedBody is a FULL_DUPLEX_STREAMED body reply for either direction.
func streamedBody(chunk []byte, eos, requestSide bool) *extprocv3.ProcessingResponse {
	r := new(bodyReply)
	r.chunk.Body, r.chunk.EndOfStream = chunk, eos
	r.streamed.StreamedResponse = &r.chunk
	r.mutation.Mutation = &r.streamed
	r.common.BodyMutation = &r.mutation
	r.body.Response = &r.common
	if requestSide {
		r.reqBody.RequestBody = &r.body
		r.resp.Response = &r.reqBody
	} else {
		r.respBody.ResponseBody = &r.body
		r.resp.Response = &r.respBody
	}
	return &r.resp
}

// bodyReply holds the messages of one body reply, as headersReply does:
// one allocation per chunk instead of seven.
type bodyReply struct {
	resp     extprocv3.ProcessingResponse
	reqBody  extprocv3.ProcessingResponse_RequestBody
	respBody extprocv3.ProcessingResponse_ResponseBody
	body     extprocv3.BodyResponse
	common   extprocv3.CommonResponse
	mutation extprocv3.BodyMutation
	streamed extprocv3.BodyMutation_StreamedResponse
	chunk    extprocv3.StreamedBodyResponse
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
