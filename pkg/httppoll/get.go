package httppoll

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/fetchfail"
)

// NewTransport is the transport of a source polling every interval, each
// poll bounded by timeout: it dials servers directly, keeps one idle
// connection per server for two intervals, and with https verifies and
// presents certificates as p says (it reads the files now, so that bad
// ones fail the config; log reports their reloads).
func NewTransport(p certfile.ClientParams, interval, timeout time.Duration, log logr.Logger) (*http.Transport, error) {
	t := &http.Transport{
		Proxy:               nil, // servers are reached directly, never through $HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     2 * interval,
	}
	if p.Scheme == "https" {
		cfg, err := p.Client().TLSConfig(log)
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig = cfg
	}
	return t, nil
}

// Request is one poll's GET.
type Request struct {
	URL string
	// Timeout bounds the whole poll: connect, send, the whole answer.
	Timeout time.Duration
	// MaxBytes caps the answer; a larger one fails with fetchfail.TooLarge.
	MaxBytes int64
	// Name names the answer in errors, such as "model list".
	Name string
	// Header, if set, sets the request's headers; its error fails the poll
	// with fetchfail.Connect.
	Header func(http.Header) error
}

// Get fetches r over t without following redirects and returns the body
// of a 200 answer, or why not: a fetchfail reason and the error.
func Get(ctx context.Context, t http.RoundTripper, r Request) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return nil, fetchfail.Connect, err
	}
	if r.Header != nil {
		if err := r.Header(req.Header); err != nil {
			return nil, fetchfail.Connect, err
		}
	}
	client := &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fetchfail.Classify(err, fetchfail.Connect), err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // so the connection can be reused
		return nil, fetchfail.Status, fmt.Errorf("GET %s: status %d", req.URL.Path, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.MaxBytes+1))
	if err != nil {
		return nil, fetchfail.Classify(err, fetchfail.Read), fmt.Errorf("read %s: %w", r.Name, err)
	}
	if int64(len(body)) > r.MaxBytes {
		return nil, fetchfail.TooLarge, fmt.Errorf("%s exceeds %d bytes", r.Name, r.MaxBytes)
	}
	return body, "", nil
}
