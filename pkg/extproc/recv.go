package extproc

import (
	"net/http"
	"strconv"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// handle validates one reply against the stream state and applies it.
func (s *Stream) handle(resp *extprocv3.ProcessingResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record(Message{Direction: Received, Response: resp})
	if s.err != nil || s.immediate != nil {
		return // Envoy ignores messages once processing is complete
	}
	if err := s.dispatch(resp); err != nil {
		s.fail(err)
		return
	}
	s.broadcast()
}

func (s *Stream) dispatch(resp *extprocv3.ProcessingResponse) error {
	kind := responseKind(resp)
	if resp.GetOverrideMessageTimeout() != nil {
		if resp.GetResponse() != nil {
			return protoErr(kind, "override_message_timeout is set: Envoy ignores every other field of this message, so the reply would be lost")
		}
		s.current().log.ignore("override_message_timeout: no message timer runs in FULL_DUPLEX_STREAMED mode")
		return nil
	}
	if resp.GetModeOverride() != nil {
		s.current().log.ignore("mode_override: ignored when a body mode is FULL_DUPLEX_STREAMED")
	}
	if resp.GetRequestDrain() {
		s.current().log.ignore("request_drain: not implemented by Envoy")
	}
	switch r := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return s.onHeaders(&s.req, kind, r.RequestHeaders, resp)
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return s.onHeaders(&s.resp, kind, r.ResponseHeaders, resp)
	case *extprocv3.ProcessingResponse_RequestBody:
		return s.onBody(&s.req, kind, r.RequestBody, resp)
	case *extprocv3.ProcessingResponse_ResponseBody:
		return s.onBody(&s.resp, kind, r.ResponseBody, resp)
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return s.onTrailers(&s.req, kind, r.RequestTrailers, resp)
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return s.onTrailers(&s.resp, kind, r.ResponseTrailers, resp)
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return s.onImmediate(r.ImmediateResponse, resp)
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		return protoErr(kind, "streamed_immediate_response is not supported by the modelled Envoy")
	}
	return protoErr(kind, "ProcessingResponse has no response set")
}

// current is the direction being processed: the response once it started.
func (s *Stream) current() *phase {
	if s.resp.headersSent {
		return &s.resp
	}
	return &s.req
}

// checkPhase enforces that a reply answers a message of its direction that
// was sent and is still open.
func (s *Stream) checkPhase(p *phase, kind string) error {
	if !p.headersSent {
		if p == &s.resp && s.req.headersSent && !s.req.complete {
			return protoErr(kind, "reply for the response direction while the request phase is still in progress")
		}
		return protoErr(kind, "reply for the %s direction, whose headers were not sent", p.name)
	}
	if p.complete {
		return protoErr(kind, "spurious message: the %s phase already received every reply", p.name)
	}
	return nil
}

func (s *Stream) onHeaders(p *phase, kind string, hr *extprocv3.HeadersResponse, resp *extprocv3.ProcessingResponse) error {
	if err := s.checkPhase(p, kind); err != nil {
		return err
	}
	mergeMetadata(p.dynamic, resp.GetDynamicMetadata(), &p.log)
	if p.headersReplied {
		return protoErr(kind, "second headers reply")
	}
	cr := hr.GetResponse()
	if cr.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
		return protoErr(kind, "CONTINUE_AND_REPLACE is not allowed with FULL_DUPLEX_STREAMED bodies")
	}
	if cr.GetBodyMutation() != nil {
		return protoErr(kind, "headers reply carries a body_mutation; in FULL_DUPLEX_STREAMED the body comes back as body streamed_response replies")
	}
	if cr.GetTrailers() != nil {
		p.log.ignore("%s: CommonResponse.trailers is not implemented by Envoy", kind)
	}
	if err := applyMutation(p.headers, cr.GetHeaderMutation(), targetHeaders, &p.log); err != nil {
		return protoErr(kind, "%v", err)
	}
	s.noteClearRouteCache(p, kind, cr)
	p.headersReplied = true
	return s.advance(p)
}

func (s *Stream) noteClearRouteCache(p *phase, kind string, cr *extprocv3.CommonResponse) {
	switch {
	case !cr.GetClearRouteCache():
	case p == &s.resp:
		p.log.ignore("%s: clear_route_cache is ignored in the response direction", kind)
	case cr.GetHeaderMutation() == nil:
		p.log.ignore("%s: clear_route_cache without a header_mutation is ignored", kind)
	default:
		p.clearRC = true
	}
}

func (s *Stream) onBody(p *phase, kind string, br *extprocv3.BodyResponse, resp *extprocv3.ProcessingResponse) error {
	if err := s.checkPhase(p, kind); err != nil {
		return err
	}
	mergeMetadata(p.dynamic, resp.GetDynamicMetadata(), &p.log)
	switch {
	case !p.headersReplied:
		return protoErr(kind, "body reply before the headers reply; Envoy accepts body replies only after the headers reply")
	case p.headersEOS:
		return protoErr(kind, "body reply but the %s had no body", p.name)
	case p.chunksSent == 0:
		return protoErr(kind, "body reply before any body chunk was sent")
	case p.bodyDone:
		return protoErr(kind, "body reply after the streamed_response carrying end_of_stream")
	}
	cr := br.GetResponse()
	if cr.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
		return protoErr(kind, "CONTINUE_AND_REPLACE is not allowed with FULL_DUPLEX_STREAMED bodies")
	}
	sr, err := streamedBody(kind, cr.GetBodyMutation())
	if err != nil {
		return err
	}
	if sr.GetEndOfStream() && !p.bodyEOSSent {
		if p.trailersSent {
			return protoErr(kind, "streamed_response end_of_stream while the %s continues with trailers", p.name)
		}
		return protoErr(kind, "streamed_response end_of_stream before the client sent end_of_stream")
	}
	if cr.GetHeaderMutation() != nil {
		p.log.ignore("%s: header_mutation on a body reply is ignored, headers were already forwarded", kind)
	}
	if cr.GetClearRouteCache() {
		p.log.ignore("%s: clear_route_cache on a body reply is ignored", kind)
	}
	if sr.GetEndOfStreamWithoutMessage() || sr.GetGrpcMessageCompressed() {
		p.log.ignore("%s: GRPC body mode fields are ignored in FULL_DUPLEX_STREAMED", kind)
	}
	if len(sr.GetBody()) > 0 {
		p.chunks = append(p.chunks, sr.GetBody())
	}
	p.bodyDone = sr.GetEndOfStream()
	return s.advance(p)
}

func streamedBody(kind string, bm *extprocv3.BodyMutation) (*extprocv3.StreamedBodyResponse, error) {
	switch m := bm.GetMutation().(type) {
	case *extprocv3.BodyMutation_StreamedResponse:
		return m.StreamedResponse, nil
	case *extprocv3.BodyMutation_Body:
		return nil, protoErr(kind, "body_mutation.body is not allowed in FULL_DUPLEX_STREAMED mode; use streamed_response")
	case *extprocv3.BodyMutation_ClearBody:
		return nil, protoErr(kind, "body_mutation.clear_body is not allowed in FULL_DUPLEX_STREAMED mode; use streamed_response")
	}
	return nil, protoErr(kind, "body reply without body_mutation.streamed_response (Envoy: normal body mutation response in FULL_DUPLEX_STREAMED mode)")
}

func (s *Stream) onTrailers(p *phase, kind string, tr *extprocv3.TrailersResponse, resp *extprocv3.ProcessingResponse) error {
	if err := s.checkPhase(p, kind); err != nil {
		return err
	}
	mergeMetadata(p.dynamic, resp.GetDynamicMetadata(), &p.log)
	switch {
	case !p.trailersSent:
		return protoErr(kind, "trailers reply but no %s trailers were sent", p.name)
	case p.trailersReplied:
		return protoErr(kind, "second trailers reply")
	case !p.headersReplied:
		return protoErr(kind, "trailers reply before the headers reply; Envoy would treat the later headers reply as spurious")
	}
	if err := applyMutation(p.trailers, tr.GetHeaderMutation(), targetTrailers, &p.log); err != nil {
		return protoErr(kind, "%v", err)
	}
	p.trailersReplied = true
	return s.advance(p)
}

// advance completes a direction once every reply arrived; the request phase
// then yields its Decision.
func (s *Stream) advance(p *phase) error {
	if !p.done() {
		return nil
	}
	p.complete = true
	if p != &s.req {
		return nil
	}
	d := s.snapshotDecision()
	if err := resolveDestination(d, p.headers); err != nil {
		return protoErr("request_headers", "%v", err)
	}
	s.decision = d
	return nil
}

// snapshotDecision copies the request state into a Decision; s.mu must be held.
func (s *Stream) snapshotDecision() *Decision {
	p := &s.req
	d := &Decision{
		Method:          p.headers.first(":method"),
		Path:            p.headers.first(":path"),
		Authority:       p.headers.first(":authority"),
		Scheme:          p.headers.first(":scheme"),
		Headers:         p.headers.httpHeader(),
		SetHeaders:      append([]HeaderValue(nil), p.log.set...),
		RemovedHeaders:  append([]string(nil), p.log.removed...),
		Ignored:         append([]string(nil), p.log.ignored...),
		ClearRouteCache: p.clearRC,
		DynamicMetadata: copyMetadata(p.dynamic),
	}
	d.Headers.Del("Content-Length") // Envoy removes it in FULL_DUPLEX_STREAMED mode
	for _, c := range p.chunks {
		d.Body = append(d.Body, c...)
	}
	if p.trailersSent {
		d.Trailers = p.trailers.httpHeader()
	}
	return d
}

func (s *Stream) onImmediate(ir *extprocv3.ImmediateResponse, resp *extprocv3.ProcessingResponse) error {
	if !s.req.headersSent {
		return protoErr("immediate_response", "immediate response before any request headers were sent")
	}
	mergeMetadata(s.req.dynamic, resp.GetDynamicMetadata(), &s.req.log)
	p := s.current()
	imm := &ImmediateResponse{
		Status:  int(ir.GetStatus().GetCode()),
		Body:    ir.GetBody(),
		Details: ir.GetDetails(),
		Phase:   p.name,
	}
	if imm.Status < 200 {
		if ir.GetStatus() != nil {
			p.log.ignore("immediate_response: status %d is invalid, Envoy sends 200", imm.Status)
		}
		imm.Status = http.StatusOK
	}
	base := []header{{":status", strconv.Itoa(imm.Status)}}
	if len(imm.Body) > 0 {
		base = append(base, header{"content-type", "text/plain"})
	}
	m := &headerMap{entries: base}
	_ = applyMutation(m, ir.GetHeaders(), targetLocalReply, &p.log) // local reply mutation errors are only logged by Envoy
	if code, err := strconv.Atoi(m.first(":status")); err == nil {
		imm.Status = code
	}
	imm.Headers = m.httpHeader()
	s.immediate = imm
	// Envoy stops processing and closes the stream at once: a half-close
	// and then a reset (ExternalProcessorStreamImpl::close), so the processor
	// sees its end (an EPP that evicted the request knows the proxy acted).
	go s.endAfterImmediate()
	if s.decision == nil {
		s.decision = s.snapshotDecision()
		s.decision.Immediate = imm
	}
	return nil
}
