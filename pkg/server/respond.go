package server

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/attribute"

	"github.com/openepp/openepp/pkg/scheduler"
)

// respond lets a Responder plugin answer the request itself, on its
// headers; answered is false when none does (or none is configured: then
// it costs nothing). The whole pool is offered, not the subset the proxy
// allows: what a responder answers is not routed anywhere. An EPP serving
// several pools offers the pool a header or hint names, else every pool
// (GET /v1/models then lists them all).
func (x *exchange) respond() (answered bool, err error) {
	sched := x.srv.Scheduler()
	if !sched.Responds() {
		return false, nil
	}
	in := &scheduler.Inbound{Method: x.headers[":method"], Path: x.path(), Headers: x.headers}
	offered := x.srv.endpoints.Snapshot()
	if x.resolvePool("", true) == nil {
		offered = x.inPool(offered, offered)
	}
	reply, ok := sched.Respond(x.ctx, in, offered)
	if !ok {
		return false, nil
	}
	x.phase = finished
	x.answeredNow()
	if x.span != nil && x.span.IsRecording() {
		x.span.SetAttributes(attribute.Int("http.response.status_code", reply.Status), attribute.Bool("openepp.answered_by_epp", true))
	}
	x.srv.log.V(1).Info("answered by a plugin", "requestID", x.headers[RequestIDHeader], "path", in.Path, "status", reply.Status)
	return true, x.send(replyResponse(reply))
}

// replyResponse sends a plugin's reply to the client as an immediate
// response: its status, content type and body.
func replyResponse(r scheduler.Reply) *extprocv3.ProcessingResponse {
	var set []*corev3.HeaderValueOption
	if r.ContentType != "" {
		set = append(set, setHeader("content-type", r.ContentType))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: set},
			Body:    r.Body,
			Details: "openepp_answered_by_plugin",
		},
	}}
}
