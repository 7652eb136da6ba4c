package pdsidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Headers.
const (
	// PrefillerHeader (request) names the prefill endpoint, set by the EPP.
	PrefillerHeader = "x-prefiller-host-port"
	// KVSourceHeader (request) names a peer holding more of the prompt's
	// prefix in its KV cache, to pull from; set by the EPP's
	// p2p-source-producer.
	KVSourceHeader = "x-kv-cache-source-host-port"
	// PrefilledByHeader (response) names the prefiller whose KV was used.
	PrefilledByHeader = "x-openepp-prefilled-by"
	// FallbackHeader (response) gives the reason the request was decoded
	// with a local prefill although a prefiller was named.
	FallbackHeader = "x-openepp-pd-fallback"
)

// Fallback reasons: FallbackHeader values and the fallbacks metric's labels.
const (
	FallbackUnreachable        = "unreachable"
	FallbackTimeout            = "timeout"
	FallbackErrorStatus        = "error-status"
	FallbackNoKVTransferParams = "no-kv-transfer-params"
	FallbackUnsupportedPath    = "unsupported-path"
)

// Defaults of Options.
const (
	DefaultPrefillTimeout = 60 * time.Second
	DefaultMaxBodyBytes   = 32 << 20 // as the simulator's request limit
)

// disaggregatedPaths are the APIs whose prefill can run elsewhere. vLLM's
// Anthropic Messages endpoint takes and answers kv_transfer_params as its
// chat endpoint does, so the same prefill request works for it; its
// token-in generate endpoint too, with max_tokens in sampling_params.
var disaggregatedPaths = []string{"/v1/completions", "/v1/chat/completions", messagesPath, generatePath}

// generatePath is vLLM's token-in, token-out endpoint.
const generatePath = "/inference/v1/generate"

// undisaggregatedPaths are APIs llm-d disaggregates and this sidecar does
// not: the Responses API, and SGLang's /generate, whose P/D is SGLang's own
// bootstrap protocol, not NIXL's kv_transfer_params.
var undisaggregatedPaths = []string{"/v1/responses", "/generate"}

// Options configure a Handler.
type Options struct {
	// Local is the decode model server: an in-process handler, or
	// LocalURL(base) for one reached over HTTP. Required.
	Local http.Handler
	// AllowedPrefillers limits the prefillers and KV cache sources a
	// request may name (the pool's endpoints): CIDRs ("10.0.0.0/8"), IPs
	// (any port) or exact host:port entries. Empty allows all. CIDR and IP
	// entries match IP literals only; a host name must be listed as
	// host:port.
	AllowedPrefillers []string
	// P2PConnectorPort, when > 0, is the remote_port of every p2p block
	// (the peers' KV connector port, llm-d's --p2p-connector-port), and a
	// server is a source's own when their hosts match. 0 keeps the port of
	// KVSourceHeader, for peers sharing a host, as the simulator's do.
	P2PConnectorPort int
	// PrefillTimeout bounds a prefill call; default DefaultPrefillTimeout.
	PrefillTimeout time.Duration
	// MaxBodyBytes bounds the request body and the prefill answer read;
	// default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Transport makes the prefill calls; default a transport of its own
	// that ignores proxy environment variables.
	Transport http.RoundTripper
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Logger receives fallbacks (V(0)) and decisions (V(1)).
	Logger logr.Logger
}

// Handler is a decode sidecar; see the package doc. It is safe for
// concurrent use.
type Handler struct {
	local         http.Handler
	allow         allowlist
	connectorPort int // Options.P2PConnectorPort
	timeout       time.Duration
	maxBody       int64
	client        *http.Client
	metrics       *metrics
	log           logr.Logger
}

var _ http.Handler = (*Handler)(nil)

// New validates o and returns a Handler.
func New(o Options) (*Handler, error) {
	if o.Local == nil {
		return nil, errors.New("pd sidecar: Local is required")
	}
	if o.PrefillTimeout < 0 || o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("pd sidecar: prefill timeout %s and max body bytes %d must be ≥ 0", o.PrefillTimeout, o.MaxBodyBytes)
	}
	if o.P2PConnectorPort < 0 || o.P2PConnectorPort > 65535 {
		return nil, fmt.Errorf("pd sidecar: P2P connector port %d is not in 0..65535", o.P2PConnectorPort)
	}
	allow, err := parseAllowlist(o.AllowedPrefillers)
	if err != nil {
		return nil, fmt.Errorf("pd sidecar: allowed prefillers: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("pd sidecar: %w", err)
	}
	h := &Handler{
		local: o.Local, allow: allow, connectorPort: o.P2PConnectorPort, timeout: o.PrefillTimeout,
		maxBody: o.MaxBodyBytes, metrics: m, log: o.Logger,
	}
	if h.timeout == 0 {
		h.timeout = DefaultPrefillTimeout
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	rt := o.Transport
	if rt == nil {
		rt = newTransport()
	}
	// Redirects are not followed: a prefiller must not send the prefill
	// (and its headers) to an address the allowlist never saw.
	h.client = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return h, nil
}

// Wrap returns a sidecar with o's settings in front of local, registering
// its metrics on reg; it has the shape of sim.Config.Frontend.
func (o Options) Wrap(local http.Handler, reg prometheus.Registerer) (http.Handler, error) {
	o.Local, o.Registerer = local, reg
	return New(o)
}

// CloseIdleConnections closes the prefill transport's idle connections.
func (h *Handler) CloseIdleConnections() { h.client.CloseIdleConnections() }

func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}

// ServeHTTP serves one request; see the package doc.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	named, source := r.Header.Values(PrefillerHeader), r.Header.Values(KVSourceHeader)
	generate := r.Method == http.MethodPost && slices.Contains(disaggregatedPaths, r.URL.Path)
	if len(named)+len(source) > 0 {
		r = withoutRoutingHeaders(r)
	}
	switch {
	case !generate && len(named) > 0 && r.Method == http.MethodPost && slices.Contains(undisaggregatedPaths, r.URL.Path):
		h.fallback(w, r, "", FallbackUnsupportedPath, nil)
		return
	case !generate || len(named)+len(source) == 0:
		if generate {
			h.metrics.requests.WithLabelValues(resultPassthrough).Inc()
		}
		h.local.ServeHTTP(w, r)
		return
	}
	rt, status, err := h.route(named, source)
	if err != nil {
		h.reject(w, r, status, err.Error())
		return
	}
	body, fields, status, err := h.readBody(w, r)
	if err == nil && rt.source != nil {
		status, err = http.StatusBadRequest, checkKVParams(fields)
	}
	switch {
	case err != nil:
		h.reject(w, r, status, err.Error())
	case rt.prefiller == "":
		h.pullLocally(w, r, rt.source, body, fields)
	default:
		h.disaggregate(w, r, rt, body, fields)
	}
}

// route is where a request's prompt is computed: on prefiller ("" for
// locally), pulling from source (nil for none).
type route struct {
	prefiller string
	source    *p2pSource
}

// route validates the routing headers: each one host:port (else 400)
// within the allowlist (else 403).
func (h *Handler) route(named, source []string) (route, int, error) {
	var rt route
	if len(named) > 0 {
		p, status, err := h.endpoint(PrefillerHeader, "prefiller", named)
		if err != nil {
			return rt, status, err
		}
		rt.prefiller = p
	}
	if len(source) > 0 {
		s, status, err := h.endpoint(KVSourceHeader, "KV cache source", source)
		if err != nil {
			return rt, status, err
		}
		rt.source = h.newSource(s)
	}
	return rt, 0, nil
}

// endpoint validates the values of a header naming a pool endpoint (what
// it is called in errors): its canonical host:port, or an error with its
// status.
func (h *Handler) endpoint(header, what string, values []string) (string, int, error) {
	hp, err := parseHostPort(header, values)
	if err != nil {
		return "", http.StatusBadRequest, err
	}
	if !h.allow.permits(hp) {
		return "", http.StatusForbidden, fmt.Errorf("%s %q is not allowed", what, hp)
	}
	return hp, 0, nil
}

// disaggregate runs the prefill on rt.prefiller, then the decode locally;
// a failed prefill falls back to a local prefill, pulling from rt.source.
func (h *Handler) disaggregate(w http.ResponseWriter, r *http.Request, rt route, body []byte, fields map[string]json.RawMessage) {
	params, reason, err := h.prefill(r, rt, fields)
	switch {
	case reason == outcomeCanceled:
		h.metrics.requests.WithLabelValues(resultCanceled).Inc()
		h.log.V(1).Info("client left during the prefill", "endpoint", rt.prefiller, "requestID", requestID(r))
		return
	case reason != "":
		local, lerr := h.localBody(r, rt.source, body, fields)
		if lerr != nil { // cannot happen: checkKVParams passed and fields came from json.Unmarshal
			h.reject(w, r, http.StatusInternalServerError, lerr.Error())
			return
		}
		setBody(r, local)
		h.fallback(w, r, rt.prefiller, reason, err)
		return
	}
	fields["kv_transfer_params"] = params
	decode, err := json.Marshal(fields)
	if err != nil { // cannot happen: fields came from json.Unmarshal
		h.reject(w, r, http.StatusInternalServerError, fmt.Sprintf("encode decode request: %v", err))
		return
	}
	h.metrics.requests.WithLabelValues(resultDisaggregated).Inc()
	h.log.V(1).Info("prefilled remotely", "endpoint", rt.prefiller, "requestID", requestID(r))
	w.Header().Set(PrefilledByHeader, rt.prefiller)
	setBody(r, decode)
	h.local.ServeHTTP(w, r)
}

// setBody replaces the (already read) body of r, our own clone.
func setBody(r *http.Request, b []byte) {
	r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	r.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// fallback decodes r locally with its own prefill, marked with reason.
func (h *Handler) fallback(w http.ResponseWriter, r *http.Request, prefiller, reason string, err error) {
	h.metrics.requests.WithLabelValues(resultFallback).Inc()
	h.metrics.fallbacks.WithLabelValues(reason).Inc()
	// A failed prefill is an operational problem (V(0)); an API the
	// sidecar does not disaggregate is a per-request decision (V(1)).
	log := h.log
	if reason == FallbackUnsupportedPath {
		log = log.V(1)
	}
	log.Info("prefill skipped, decoding with a local prefill", "endpoint", prefiller, "reason", reason,
		"requestID", requestID(r), "err", err)
	w.Header().Set(FallbackHeader, reason)
	h.local.ServeHTTP(w, r)
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.metrics.requests.WithLabelValues(resultRejected).Inc()
	h.log.V(1).Info("request rejected", "status", status, "reason", msg, "requestID", requestID(r))
	writeError(w, r, status, msg)
}

// withoutRoutingHeaders returns r without the prefiller and KV cache
// source headers, which must not reach a model server.
func withoutRoutingHeaders(r *http.Request) *http.Request {
	r = r.Clone(r.Context())
	r.Header.Del(PrefillerHeader)
	r.Header.Del(KVSourceHeader)
	return r
}

func requestID(r *http.Request) string { return r.Header.Get("x-request-id") }

// readBody reads r's body, bounded, and decodes it as a JSON object.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, map[string]json.RawMessage, int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", h.maxBody)
		}
		return nil, nil, http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, nil, http.StatusBadRequest, errors.New("a request naming a prefiller or a KV cache source needs a JSON object body")
	}
	return body, fields, 0, nil
}
