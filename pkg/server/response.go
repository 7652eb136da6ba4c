package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// maxUsageBuffer bounds how much of a non-streamed response body is kept to
// read its usage; larger responses pass through without token accounting.
const maxUsageBuffer = 8 << 20

func (x *exchange) onResponseHeaders(h *extprocv3.HttpHeaders, md map[string]*structpb.Struct) (bool, error) {
	if x.phase != routed {
		return false, outOfOrder("response headers", x.phase)
	}
	hdrs := headerMap(h.GetHeaders())
	x.resp.Headers = hdrs
	x.resp.StatusCode, _ = strconv.Atoi(hdrs[":status"])
	x.resp.Streaming = strings.Contains(hdrs["content-type"], "text/event-stream")
	x.resp.Served = filterMetadataString(md, LBNamespace, ServedKey)
	if x.hooked {
		x.sched.ResponseHeaders(x.ctx, x.state, x.req, &x.resp)
	}
	x.phase = readingResponseBody
	common := &extprocv3.CommonResponse{}
	if len(x.resp.AddHeaders) > 0 {
		set := make([]*corev3.HeaderValueOption, 0, len(x.resp.AddHeaders))
		for k, v := range x.resp.AddHeaders {
			set = append(set, setHeader(k, v))
		}
		common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: set}
	}
	if !x.resp.Streaming {
		x.strip = nil // an error body, not the stream asked for
	}
	x.modelBack.dropLength(common, hdrs)
	x.strip.dropLength(common, hdrs)
	reply := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: common},
	}}
	eos := h.GetEndOfStream() // a response without body (e.g. 204) ends here
	if eos {
		x.resp.EndOfStream = true
		reply.DynamicMetadata = x.report()
	}
	if err := x.send(reply); err != nil {
		return false, err
	}
	if eos {
		x.complete()
		return true, nil
	}
	return false, nil
}

// onResponseBody forwards each chunk at once (no buffering, so streamed
// tokens reach the client without added latency) and accounts for it.
func (x *exchange) onResponseBody(b *extprocv3.HttpBody, md map[string]*structpb.Struct, now time.Time) (bool, error) {
	if x.phase != readingResponseBody {
		return false, outOfOrder("response body", x.phase)
	}
	chunk, eos := b.GetBody(), b.GetEndOfStream()
	if served := filterMetadataString(md, LBNamespace, ServedKey); served != "" {
		x.resp.Served = served
	}
	if eos {
		// The last chunk is read before it is answered, so that reporters
		// see the whole usage and their metadata rides on the answer.
		x.account(chunk)
		x.resp.EndOfStream = true
		out, _ := x.transform(chunk, true)
		reply := streamedBody(out, true, false)
		reply.DynamicMetadata = x.report()
		if err := x.send(reply); err != nil {
			return false, err
		}
		x.timeChunk(len(chunk), now)
		x.complete()
		return true, nil
	}
	if out, ok := x.transform(chunk, false); ok {
		if err := x.send(streamedBody(out, false, false)); err != nil {
			return false, err
		}
	}
	x.account(chunk)
	x.timeChunk(len(chunk), now)
	return false, nil
}

// transform is what to forward for a response chunk: the client's model
// name restored, an added usage event removed; ok is false when nothing is
// to be sent yet.
func (x *exchange) transform(chunk []byte, final bool) ([]byte, bool) {
	out, ok := x.modelBack.rewrite(chunk, final)
	if !ok {
		return nil, false
	}
	return x.strip.rewrite(out, final)
}

func (x *exchange) onResponseTrailers() (bool, error) {
	if x.phase != readingResponseBody && x.phase != routed {
		return false, outOfOrder("response trailers", x.phase)
	}
	if rest, _ := x.strip.rewrite(x.modelBack.flush(), true); len(rest) > 0 {
		if err := x.send(streamedBody(rest, false, false)); err != nil {
			return false, err
		}
	}
	x.resp.EndOfStream = true
	reply := trailersResponse(false)
	reply.DynamicMetadata = x.report()
	if err := x.send(reply); err != nil {
		return false, err
	}
	x.complete()
	return true, nil
}

// report runs the ResponseReporter hooks on the finished response and
// returns the dynamic metadata they asked for, nil when none.
func (x *exchange) report() *structpb.Struct {
	if !x.hooked || x.completed || !x.sched.WantsReports() {
		return nil
	}
	x.finishUsage()
	x.sched.ReportResponse(x.ctx, x.state, x.req, &x.resp)
	if len(x.resp.Metadata) == 0 {
		return nil
	}
	md, err := metadataStruct(x.resp.Metadata)
	if err != nil {
		x.srv.opts.Log.Error(err, "Dropping response metadata a plugin set", "requestID", x.req.ID)
		return nil
	}
	return md
}

// metadataStruct converts plugins' metadata to the ext_proc form.
func metadataStruct(m map[string]map[string]any) (*structpb.Struct, error) {
	out := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(m))}
	for ns, fields := range m {
		s, err := structpb.NewStruct(fields)
		if err != nil {
			return nil, fmt.Errorf("metadata namespace %q: %w", ns, err)
		}
		out.Fields[ns] = structpb.NewStructValue(s)
	}
	return out, nil
}

// account feeds a response chunk to usage parsing and the chunk hooks.
func (x *exchange) account(chunk []byte) {
	x.resp.BodyBytes += len(chunk)
	if !x.hooked {
		return
	}
	if x.resp.Streaming {
		x.sse.Write(chunk)
		if u, ok := x.sse.Usage(); ok {
			x.resp.Usage, x.resp.UsageKnown = u, true
		}
	} else if len(x.respBody)+len(chunk) <= maxUsageBuffer {
		x.respBody = append(x.respBody, chunk...)
	}
	if x.sched.WantsResponseChunks() {
		x.sched.ResponseChunk(x.ctx, x.state, x.req, &x.resp, chunk)
	}
}

// complete ends the exchange normally: final usage, hooks, metrics.
func (x *exchange) complete() {
	x.phase = finished
	if !x.hooked || x.completed {
		return
	}
	x.finishUsage()
	x.completed = true
	x.resp.Termination = scheduler.TerminationNatural
	x.sched.ResponseComplete(x.ctx, x.state, x.req, &x.resp)
}

// finishUsage reads the usage of a response whose last byte has been
// accounted: the stream's final event, or the buffered JSON body.
func (x *exchange) finishUsage() {
	if x.usageFinal {
		return
	}
	x.usageFinal = true
	if x.resp.Streaming {
		x.sse.Flush()
		if u, ok := x.sse.Usage(); ok {
			x.resp.Usage, x.resp.UsageKnown = u, true
		}
	} else if u, ok := request.ParseUsage(x.respBody); ok {
		x.resp.Usage, x.resp.UsageKnown = u, true
	}
}

// timeChunk records time to first token and inter-token gaps of a streamed
// response from its non-empty chunks (Envoy may end a stream with an empty
// one).
func (x *exchange) timeChunk(n int, now time.Time) {
	if n == 0 || !x.hooked {
		return
	}
	if x.ttft == 0 {
		x.ttft = max(now.Sub(x.start), 1)
		if x.resp.Streaming {
			x.obs.firstByte(x.ttft)
		}
	} else if x.resp.Streaming {
		x.obs.interToken(now.Sub(x.lastChunk))
	}
	x.lastChunk = now
}

// finish runs when the stream ends for any reason: a scheduled request that
// never completed (client gone, proxy reset) still releases what its plugins
// hold. err is the stream's error, nil when the proxy ended it.
func (x *exchange) finish(err error) {
	x.sendMu.Lock()
	x.over = true // an eviction from now on has no stream to answer on
	x.sendMu.Unlock()
	evicted := x.evicted.Load()
	if evicted {
		x.srv.opts.Metrics.requestError(x.req, "", http.StatusTooManyRequests)
	}
	if x.hooked && !x.completed {
		x.resp.Cancelled = true
		x.resp.Termination = scheduler.TerminationClientDisconnect
		switch {
		case evicted:
			x.resp.Termination = scheduler.TerminationEvicted
		case err != nil:
			x.resp.Termination = scheduler.TerminationError
		}
		x.completed = true
		x.sched.ResponseComplete(x.ctx, x.state, x.req, &x.resp)
	}
	if x.hooked {
		x.srv.opts.Metrics.requestDone(x.obs, &x.resp, x.srv.now().Sub(x.start), x.ttft, x.respBusy)
	}
	x.released()
	x.endTrace()
}
