// Package extproc is an ext_proc client that drives
// envoy.service.ext_proc.v3.ExternalProcessor/Process exactly as Envoy's
// ext_proc HTTP filter does for an endpoint picker, so tests, the local
// gateway and load generators exercise an EPP the way production does. There
// is no Envoy binary here; if this client accepted a reply Envoy refuses,
// every test built on it would lie, so it is strict by design.
//
// # Modelled Envoy configuration
//
//	processing_mode:
//	  request_header_mode: SEND        response_header_mode: SEND
//	  request_body_mode: FULL_DUPLEX_STREAMED
//	  response_body_mode: FULL_DUPLEX_STREAMED
//	  request_trailer_mode: SEND       response_trailer_mode: SEND
//	failure_mode_allow: false, status_on_error: 500, no mutation_rules,
//	no allow_mode_override, no max_message_timeout
//
// One gRPC stream per HTTP exchange. Every namespace of dynamic_metadata is
// reported, as if each were listed in metadata_options.receiving_namespaces.
//
// # Usage
//
//	c, err := extproc.Dial(ctx, "127.0.0.1:9002", extproc.WithInsecureSkipVerify())
//	d, err := c.RoundTrip(ctx, extproc.Request{Method: "POST", Path: "/v1/completions", Body: body})
//	// d.Endpoints[0] is where Envoy's ORIGINAL_DST cluster would connect.
//
// For a whole exchange, Open a Stream and call SendRequest (or the
// SendRequestHeaders / SendRequestBody / SendRequestTrailers / AwaitDecision
// steps), then PlayResponse (or SendResponseHeaders, SendResponseBody,
// SendResponseTrailers with AwaitResponseHeaders, RecvResponseBody and
// AwaitResponseTrailers), then Close. Send methods never wait for replies;
// a background reader validates replies as they arrive. WithRecorder
// exposes the raw message sequence.
//
// The processor may end the exchange at any moment, also while nothing is
// due from it: llm-d's in-flight eviction sends an unsolicited immediate
// response while the proxy waits for the upstream or streams its response.
// Ended is closed then (and on any failure), Err and Immediate say why; a
// proxy selects on it to reset the upstream request at once, as Envoy does:
//
//	select {
//	case <-s.Ended(): // cancel the upstream request; send s.Immediate(), or reset the client mid-body
//	case <-upstreamAnswered:
//	}
//
// # What is sent (as Envoy does)
//
//   - request_headers first, with :authority, :path, :method, :scheme, then
//     the request headers, lower-case, one entry per value, values in
//     raw_value; end_of_stream when neither body nor trailers follow.
//   - request_body chunks as they come, without waiting for any reply (the
//     EPP holds its headers reply until the body ends); end_of_stream on the
//     last chunk, or none when trailers follow.
//   - request_trailers after the body when the request has trailers.
//   - metadata_context.filter_metadata on every message (the subset hint);
//     response messages carry the request's plus the response's (the served
//     endpoint under envoy.lb).
//   - protocol_config (both body modes FULL_DUPLEX_STREAMED) on the first
//     message only.
//   - response_headers with :status, then response_body chunks and
//     response_trailers, in the same way.
//
// # Rules enforced on replies (a violation is a *ProtocolError)
//
// Envoy answers these with a local reply (500) and resets the stream; so
// does this client (it cancels the stream and fails every later call).
//
//  1. A reply must answer a direction whose headers were sent and that is
//     still open: a response-direction reply during the request phase, a
//     reply for a message never sent, or any reply after a direction got all
//     its replies is spurious.
//  2. At most one headers reply per direction.
//  3. Body replies only after that direction's headers reply, only after a
//     body chunk was sent, and never after the streamed_response that
//     carried end_of_stream or after the trailers reply.
//  4. Every body reply must carry body_mutation.streamed_response; a
//     body_mutation.body, clear_body, or no body mutation is refused
//     (Envoy: "normal body mutation response is received while body_mode_ is
//     FULL_DUPLEX_STREAMED").
//  5. streamed_response.end_of_stream only after the client sent
//     end_of_stream on its body, and never when trailers end the body.
//  6. CONTINUE_AND_REPLACE is refused on any reply (stricter than Envoy,
//     which would drop the streamed body; an EPP must never use it).
//  7. A headers reply must not carry a body_mutation (Envoy would silently
//     drop it; refused so the mistake cannot hide).
//  8. Trailers replies only after trailers were sent, once, and after the
//     headers reply (Envoy would treat a later headers reply as spurious).
//  9. Header mutations: names must be tokens and values free of control
//     characters; value and raw_value must not both be set; at most 100 sets
//     and 100 removals; the resulting map at most 100 entries and 60 KiB.
//  10. immediate_response is accepted at any point after the request headers,
//     whether or not a reply is due (between the decision and the response
//     headers, or mid-response), and ends the exchange: Ended is closed,
//     later sends return ErrExchangeEnded, waiting calls return it, and
//     later replies are ignored, as Envoy ignores them once processing is
//     complete. A status below 200 or none becomes 200; the body is sent as
//     text/plain; header mutation failures are ignored. Envoy resets the
//     upstream request and sends the local reply, or resets the downstream
//     stream when the response headers already went out; it half-closes and
//     resets the ext_proc stream at once (ExternalProcessorStreamImpl::close),
//     and so does this client.
//  11. An empty ProcessingResponse or a streamed_immediate_response is
//     refused; override_message_timeout together with a reply is refused
//     (Envoy would ignore the whole message and the reply would be lost).
//  12. Destination: the final x-gateway-destination-endpoint header must hold
//     one value, a comma-separated ip:port list (IPv6 in brackets, port > 0);
//     envoy.lb dynamic metadata of the same key, when present, must be a
//     string with the same list. Either may be absent (Decision.Endpoints is
//     then empty: Envoy's ORIGINAL_DST would have no host).
//
// A stream that fails (gRPC error) or that the processor ends while replies
// are still due is a *StreamError; a clean end after the client half-closed
// is not.
//
// # Envoy behaviour applied silently (listed in Decision.Ignored / ResponseResult.Ignored)
//
//   - Sets of :authority, host, :method, :scheme and x-envoy-* headers, and
//     removal of pseudo headers, host and x-envoy-* headers, are ignored; an
//     append to a pseudo header is ignored; :status must be a number >= 200.
//   - A set_headers entry with only value (no raw_value) sets an empty value:
//     Envoy reads raw_value only.
//   - append_action is ignored; only append (default false: overwrite) counts.
//   - content-length is removed from request and response headers, and sets
//     of it skipped, because the body may change (Envoy then uses chunked
//     encoding); this one is not listed.
//   - clear_route_cache counts only on a request headers reply that also has
//     a header mutation; header_mutation and clear_route_cache on body
//     replies, CommonResponse.trailers, mode_override, request_drain and a
//     bare override_message_timeout are ignored.
//   - dynamic_metadata is merged per namespace, key by key, later wins.
//
// Close half-closes and waits DefaultCloseGrace for the processor to end the
// stream before cancelling it; Abort cancels at once, which the processor
// sees as codes.Canceled, as when Envoy's downstream client disconnects
// (Close after Abort or a failure only cancels, never half-closes first).
package extproc
