package server

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Tracing (Options.Tracer): each request is a span, gateway.request, from
// its headers to the end of its stream, continuing the trace the proxy sent
// (traceparent) if any; the scheduling decision is a child span,
// gateway.request_orchestration; and the routing answer carries the trace
// context on to the model server. The span names and the attributes
// target_model and request_prio are the upstream EPP's, so existing trace
// queries keep working; the rest follow OpenTelemetry's conventions.
//
// Without a tracer none of this runs. With one, a request that is not
// sampled still gets a span context (cheap, not recorded) so that the
// model server sees the sampling decision.

// serverSpan is made once: an option value escapes, one allocation per
// request otherwise.
var serverSpan = trace.WithSpanKind(trace.SpanKindServer)

// startTrace opens the request's span from the incoming headers.
func (x *exchange) startTrace() {
	t := x.srv.opts.Tracer
	if t == nil {
		return
	}
	ctx := x.srv.opts.Propagator.Extract(x.ctx, propagation.MapCarrier(x.headers))
	x.ctx, x.span = t.Start(ctx, "gateway.request", serverSpan)
	if x.span.IsRecording() {
		x.span.SetAttributes(
			attribute.String("http.request.method", x.headers[":method"]),
			attribute.String("url.path", x.path()),
			attribute.String("openepp.request_id", x.headers[RequestIDHeader]),
		)
	}
}

// traceHeaders is the trace context to send to the model server: the
// request span's, so the server's spans become its children.
func (x *exchange) traceHeaders() map[string]string {
	if x.span == nil || !x.span.SpanContext().IsValid() {
		return nil
	}
	c := make(propagation.MapCarrier, 1)
	x.srv.opts.Propagator.Inject(x.ctx, c)
	return c
}

// traceAdmission records how long flow control held the request.
func (x *exchange) traceAdmission(waited time.Duration) {
	if x.span == nil || !x.span.IsRecording() {
		return
	}
	x.span.SetAttributes(attribute.String("openepp.fairness_id", x.req.FairnessID),
		attribute.Float64("openepp.flow_control.wait_seconds", waited.Seconds()))
}

// traceSchedule runs the scheduler inside gateway.request_orchestration.
func (x *exchange) traceSchedule(run func(ctx context.Context) (*scheduler.Result, error), candidates int) (*scheduler.Result, error) {
	// A child of an unsampled span is unsampled under every standard
	// sampler (parent-based, or a trace-ID ratio that decides alike for the
	// whole trace), so it is not made at all.
	if x.span == nil || !x.span.IsRecording() {
		return run(x.ctx)
	}
	ctx, span := x.srv.opts.Tracer.Start(x.ctx, "gateway.request_orchestration")
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("target_model", x.req.Model),
			attribute.Int("request_prio", x.req.Priority),
			attribute.String("gen_ai.request.model", x.req.IncomingModel),
			attribute.Int("openepp.candidates", candidates),
		)
		if x.req.Objective != "" {
			span.SetAttributes(attribute.String("openepp.objective", x.req.Objective))
		}
		if x.pool != "" {
			span.SetAttributes(attribute.String("openepp.pool", x.pool))
		}
	}
	res, err := run(ctx)
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, err.Error())
	case span.IsRecording():
		span.SetAttributes(
			attribute.String("openepp.destination", joinTargets(res.Targets())),
			attribute.String("openepp.profile", res.Primary),
		)
	}
	return res, err
}

// traceRejected marks the request span with the status the client gets.
func (x *exchange) traceRejected(code int, err error) {
	if x.span == nil || !x.span.IsRecording() {
		return
	}
	x.span.SetAttributes(attribute.Int("http.response.status_code", code))
	x.span.SetStatus(otelcodes.Error, err.Error())
}

// endTrace closes the request span when the stream ends.
func (x *exchange) endTrace() {
	if x.span == nil {
		return
	}
	if x.span.IsRecording() && x.completed {
		if x.resp.StatusCode != 0 {
			x.span.SetAttributes(attribute.Int("http.response.status_code", x.resp.StatusCode))
		}
		if x.resp.Served != "" {
			x.span.SetAttributes(attribute.String("openepp.served", x.resp.Served))
		}
		if x.resp.UsageKnown {
			x.span.SetAttributes(
				attribute.Int("gen_ai.usage.input_tokens", x.resp.Usage.PromptTokens),
				attribute.Int("gen_ai.usage.output_tokens", x.resp.Usage.CompletionTokens),
			)
		}
		if x.resp.Cancelled {
			x.span.SetAttributes(attribute.Bool("openepp.cancelled", true))
		}
		if c := x.resp.Termination; c != scheduler.TerminationNone {
			x.span.SetAttributes(attribute.String("openepp.termination", c.String()))
		}
		if x.evicted.Load() {
			x.span.SetAttributes(attribute.Bool("openepp.evicted", true))
		}
	}
	x.span.End()
}
