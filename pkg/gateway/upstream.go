package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/openepp/openepp/pkg/extproc"
)

// hopHeaders are connection-specific headers (RFC 9110 §7.6.1) that an HTTP
// codec consumes and a proxy never forwards.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// cleanHeaders copies h without hop-by-hop headers, including those the
// Connection header names.
func cleanHeaders(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			out.Del(textproto.TrimString(name))
		}
	}
	for _, name := range hopHeaders {
		out.Del(name)
	}
	return out
}

// forward sends the request Envoy would send upstream to the first endpoint
// that accepts a connection, as Envoy's retries walk the fallback list.
// Other failures are final: the request may have reached the model server.
func (g *Gateway) forward(ctx context.Context, dec *extproc.Decision, endpoints []string) (*http.Response, string, error) {
	var refused []error
	for _, ep := range endpoints {
		req, err := upstreamRequest(ctx, dec, ep)
		if err != nil {
			return nil, "", err
		}
		resp, err := g.transport.RoundTrip(req)
		if err == nil {
			return resp, ep, nil
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			return nil, "", fmt.Errorf("upstream %s failed: %w", ep, err)
		}
		refused = append(refused, fmt.Errorf("%s: %w", ep, err))
	}
	return nil, "", fmt.Errorf("no destination endpoint accepted a connection: %w", errors.Join(refused...))
}

// upstreamRequest builds the request for one endpoint: the final pseudo
// headers, headers and body of the decision, the original authority as Host.
func upstreamRequest(ctx context.Context, dec *extproc.Decision, endpoint string) (*http.Request, error) {
	u, err := url.Parse("http://" + endpoint + dec.Path)
	if err != nil {
		return nil, fmt.Errorf("gateway: upstream URL for path %q: %w", dec.Path, err)
	}
	var body io.Reader = http.NoBody
	if len(dec.Body) > 0 || dec.Trailers != nil {
		body = bytes.NewReader(dec.Body)
	}
	req, err := http.NewRequestWithContext(ctx, dec.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("gateway: upstream request: %w", err)
	}
	req.Host = dec.Authority
	req.Header = cleanHeaders(dec.Headers)
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // Go would add its own; a proxy adds none
	}
	if dec.Trailers != nil {
		req.ContentLength = -1 // trailers need chunked encoding
		req.Trailer = dec.Trailers
	}
	return req, nil
}

// failOpen serves a request without the EPP, as an InferencePool in FailOpen
// mode does when the picker cannot be reached: the static endpoints, in
// order, and the response passed through untouched.
func (x *exchange) failOpen(ctx context.Context, cause error) {
	x.g.log.V(1).Info("endpoint picker unreachable, failing open", "requestID", x.requestID, "err", cause)
	body, err := io.ReadAll(x.r.Body)
	if err != nil {
		x.writeError(http.StatusBadRequest, "read request body: "+err.Error(), err)
		return
	}
	headers := cleanHeaders(x.r.Header)
	headers.Set("X-Request-Id", x.requestID)
	dec := &extproc.Decision{Method: x.r.Method, Path: x.r.URL.RequestURI(), Authority: x.r.Host, Headers: headers, Body: body}
	resp, endpoint, err := x.g.forward(ctx, dec, x.g.failOpen)
	if err != nil {
		x.writeError(http.StatusServiceUnavailable, err.Error(), err)
		return
	}
	defer resp.Body.Close()
	h := x.w.Header()
	for k, vs := range cleanHeaders(resp.Header) {
		h[k] = vs
	}
	h.Set(ServedHeader, endpoint)
	x.w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(x.w)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := x.w.Write(buf[:n]); werr != nil {
				x.abort("write to client", werr)
			}
			_ = rc.Flush() // the client may not support flushing
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			x.abort("upstream body", rerr)
		}
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
}
