package pdsidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strconv"

	"github.com/google/uuid"
)

// P2P KV pulls, as llm-d's routing sidecar serves its p2p-source-producer:
// the EPP names a peer holding more of the prompt's prefix in its KV cache
// than the chosen server, and the server that computes the prompt is told
// to pull from it through kv_transfer_params.p2p. See the package doc.

// p2pSource is the peer a request's KVSourceHeader names.
type p2pSource struct {
	hostPort string // canonical header value
	host     string // canonical host, IPv6 without brackets
	// port is the p2p block's remote_port: the header's, or
	// Options.P2PConnectorPort.
	port int
	// byHost: the connector port is one per host, so a server is the
	// source when its host is the source's, whatever port names it.
	byHost bool
}

// newSource returns the source the canonical hostPort names.
func (h *Handler) newSource(hostPort string) *p2pSource {
	host, port, _ := net.SplitHostPort(hostPort)
	s := &p2pSource{hostPort: hostPort, host: host, byHost: h.connectorPort > 0}
	s.port, _ = strconv.Atoi(port)
	if s.byHost {
		s.port = h.connectorPort
	}
	return s
}

// is reports whether the server at the canonical hostPort is the source,
// which has nothing to pull from itself.
func (s *p2pSource) is(hostPort string) bool {
	if !s.byHost {
		return hostPort == s.hostPort
	}
	host, _, err := net.SplitHostPort(hostPort)
	return err == nil && host == s.host
}

// block is the p2p entry of kv_transfer_params, with a fresh transfer ID.
func (s *p2pSource) block() json.RawMessage {
	b, _ := json.Marshal(struct { // cannot fail: strings and an int
		KVRequestID string `json:"kv_request_id"`
		RemoteHost  string `json:"remote_host"`
		RemotePort  int    `json:"remote_port"`
	}{uuid.NewString(), s.host, s.port})
	return b
}

// pullFor returns the p2p block for the server at hostPort computing the
// prompt, or nil when it is the source (or no source is named).
func (s *p2pSource) pullFor(hostPort string) json.RawMessage {
	if s == nil || s.is(hostPort) {
		return nil
	}
	return s.block()
}

// selfAddr is the canonical address the request reached this sidecar at,
// the one the EPP names it by; "" when unknown.
func selfAddr(r *http.Request) string {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return ""
	}
	host, port, err := splitHostPort(a.String())
	if err != nil {
		return ""
	}
	return net.JoinHostPort(host, port)
}

// checkKVParams refuses a client's kv_transfer_params that is neither
// absent, null nor an object: the p2p block cannot be added to it.
func checkKVParams(fields map[string]json.RawMessage) error {
	raw, ok := fields["kv_transfer_params"]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(raw, &params) != nil || params == nil {
		return errors.New("kv_transfer_params must be an object to take a KV cache source")
	}
	return nil
}

// withP2P returns params (an object, null or nil; see checkKVParams) with
// its p2p entry set to block, or removed when block is nil: with a source
// named, the sidecar alone decides where the prompt is pulled from.
func withP2P(params, block json.RawMessage) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if len(params) > 0 {
		if err := json.Unmarshal(params, &fields); err != nil {
			return nil, fmt.Errorf("kv_transfer_params: %w", err)
		}
	}
	if fields == nil { // absent or null
		fields = map[string]json.RawMessage{}
	}
	delete(fields, "p2p")
	if block != nil {
		fields["p2p"] = block
	}
	return json.Marshal(fields)
}

// localBody is the body for the local server computing the prompt itself:
// with a p2p block naming src unless the local server is src. body comes
// back unchanged without a source (nil src), or when there is nothing to
// add or remove.
func (h *Handler) localBody(r *http.Request, src *p2pSource, body []byte, fields map[string]json.RawMessage) ([]byte, error) {
	if src == nil {
		return body, nil
	}
	block := src.pullFor(selfAddr(r))
	params := fields["kv_transfer_params"]
	if block == nil && !hasP2P(params) {
		return body, nil
	}
	kv, err := withP2P(params, block)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(fields)
	out["kv_transfer_params"] = kv
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode local request: %w", err)
	}
	if block != nil {
		h.metrics.p2pPulls.WithLabelValues(legLocal).Inc()
		h.log.V(1).Info("local pull from a KV cache source", "endpoint", src.hostPort, "requestID", requestID(r))
	}
	return b, nil
}

// hasP2P reports whether kv_transfer_params (an object or null) has a p2p
// entry.
func hasP2P(params json.RawMessage) bool {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(params, &fields)
	_, ok := fields["p2p"]
	return ok
}

// pullLocally serves a request naming a source but no prefiller: the local
// server computes the prompt, pulling from the source.
func (h *Handler) pullLocally(w http.ResponseWriter, r *http.Request, src *p2pSource, body []byte, fields map[string]json.RawMessage) {
	b, err := h.localBody(r, src, body, fields)
	if err != nil { // cannot happen: checkKVParams passed and fields came from json.Unmarshal
		h.reject(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	h.metrics.requests.WithLabelValues(resultPassthrough).Inc()
	setBody(r, b)
	h.local.ServeHTTP(w, r)
}
