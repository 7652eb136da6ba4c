package pdsidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"time"
)

// prefillParams ask the prefiller to keep the KV for a remote decoder, as
// llm-d's sidecar does for vLLM's NixlConnector.
var prefillParams = json.RawMessage(`{"do_remote_decode":true,"do_remote_prefill":false,` +
	`"remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null}`)

// prefillBody turns the client's request to path into the prefill request:
// one token, not streamed, with prefillParams, plus p2p when the prefiller
// is to pull from a KV cache source (nil for none).
func prefillBody(path string, fields map[string]json.RawMessage, p2p json.RawMessage) ([]byte, error) {
	one := json.RawMessage("1")
	out := maps.Clone(fields)
	if path == generatePath {
		out["sampling_params"] = oneToken(fields["sampling_params"])
	} else {
		out["max_tokens"] = one
		if _, ok := fields["max_completion_tokens"]; ok {
			out["max_completion_tokens"] = one
		}
	}
	out["stream"] = json.RawMessage("false")
	delete(out, "stream_options")
	out["kv_transfer_params"] = prefillParams
	if p2p != nil {
		kv, err := withP2P(prefillParams, p2p)
		if err != nil {
			return nil, err
		}
		out["kv_transfer_params"] = kv
	}
	return json.Marshal(out)
}

// oneToken returns a generate request's sampling parameters asking for one
// token, the others kept. Parameters that are not an object go as they
// are, for the server to refuse (the local fallback then answers its 400).
func oneToken(params json.RawMessage) json.RawMessage {
	sp := map[string]json.RawMessage{}
	if len(params) > 0 && json.Unmarshal(params, &sp) != nil {
		return params
	}
	if sp == nil { // "null"
		sp = map[string]json.RawMessage{}
	}
	sp["max_tokens"] = json.RawMessage("1")
	b, _ := json.Marshal(sp) // cannot fail: raw members of a decoded object
	return b
}

// prefill runs the prefill on rt.prefiller, pulling from rt.source unless
// it is the source, and returns the kv_transfer_params of its answer. On
// failure it returns a Fallback* reason, or outcomeCanceled when the
// client left.
func (h *Handler) prefill(r *http.Request, rt route, fields map[string]json.RawMessage) (json.RawMessage, string, error) {
	prefiller := rt.prefiller
	p2p := rt.source.pullFor(prefiller)
	body, err := prefillBody(r.URL.Path, fields, p2p)
	if err != nil { // cannot happen: fields came from json.Unmarshal
		return nil, FallbackErrorStatus, fmt.Errorf("encode prefill request: %w", err)
	}
	if p2p != nil {
		h.metrics.p2pPulls.WithLabelValues(legPrefill).Inc()
		h.log.V(1).Info("prefiller pulls from a KV cache source", "endpoint", rt.source.hostPort, "requestID", requestID(r))
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	u := "http://" + prefiller + r.URL.Path
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, FallbackUnreachable, fmt.Errorf("prefill request: %w", err)
	}
	copyHeaders(req.Header, r.Header)
	begin := time.Now()
	params, reason, err := h.callPrefiller(req)
	if r.Context().Err() != nil {
		h.metrics.calls.WithLabelValues(outcomeCanceled).Inc()
		return nil, outcomeCanceled, r.Context().Err()
	}
	h.metrics.duration.Observe(time.Since(begin).Seconds())
	if reason != "" {
		h.metrics.calls.WithLabelValues(outcomeFailure).Inc()
		return nil, reason, err
	}
	h.metrics.calls.WithLabelValues(outcomeSuccess).Inc()
	return params, "", nil
}

// callPrefiller sends req and extracts kv_transfer_params from the answer.
func (h *Handler) callPrefiller(req *http.Request) (json.RawMessage, string, error) {
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, transportReason(req.Context(), err), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, h.maxBody+1))
	switch {
	case err != nil:
		return nil, transportReason(req.Context(), err), fmt.Errorf("read prefill answer: %w", err)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, FallbackErrorStatus, fmt.Errorf("prefill answered %d: %s", resp.StatusCode, bytes.TrimSpace(b[:min(len(b), 200)]))
	case int64(len(b)) > h.maxBody:
		return nil, FallbackNoKVTransferParams, fmt.Errorf("prefill answer larger than %d bytes", h.maxBody)
	}
	var answer struct {
		KVTransferParams json.RawMessage `json:"kv_transfer_params"`
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		return nil, FallbackNoKVTransferParams, fmt.Errorf("prefill answer is not JSON: %w", err)
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(answer.KVTransferParams, &params) != nil || params == nil {
		return nil, FallbackNoKVTransferParams, errors.New("prefill answer has no kv_transfer_params object")
	}
	return answer.KVTransferParams, "", nil
}

// transportReason classifies a failed call: timeout when the deadline hit
// (or the network timed out), unreachable otherwise.
func transportReason(ctx context.Context, err error) string {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return FallbackTimeout
	}
	return FallbackUnreachable
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1), nor are the ones the
// prefill body changes.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Accept-Encoding": true,
}

// copyHeaders copies the client's end-to-end headers (authorization,
// x-request-id, …) to the prefill request.
func copyHeaders(dst, src http.Header) {
	for k, vs := range src {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			dst[k] = append([]string(nil), vs...)
		}
	}
	dst.Set("Content-Type", "application/json")
}
