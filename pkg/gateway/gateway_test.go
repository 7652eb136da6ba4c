package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/extproc"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// observed is what a curl user sees, plus what the upstream reported.
type observed struct {
	Status            int
	Body              string
	Served, EPPServed string
	SeenHost          string
	SeenPath          string
	SeenDest          string
	SeenRequestID     string
}

func do(t *testing.T, req *http.Request) observed {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return observed{
		Status: resp.StatusCode, Body: string(body),
		Served: resp.Header.Get(ServedHeader), EPPServed: resp.Header.Get("X-Epp-Saw-Served"),
		SeenHost: resp.Header.Get("X-Seen-Host"), SeenPath: resp.Header.Get("X-Seen-Path"),
		SeenDest: resp.Header.Get("X-Seen-Dest"), SeenRequestID: resp.Header.Get("X-Seen-Request-Id"),
	}
}

func TestProxy(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	gw := startGateway(t, serveEPP(t, newFakeEPP()), Options{ChunkSize: 1 << 10})
	big := strings.Repeat(`{"prompt":"hello"}`, 6000) // ~100 KiB, ~100 chunks
	tests := []struct {
		name    string
		method  string
		path    string
		body    io.Reader
		dest    string
		want    observed
		chunked bool
	}{
		{name: "json body", method: "POST", path: "/v1/completions", body: strings.NewReader(`{"model":"m"}`), dest: up,
			want: observed{Status: 200, Body: `echo:{"model":"m"}`}},
		{name: "bodyless", method: "GET", path: "/v1/models?x=1", dest: up,
			want: observed{Status: 200, Body: "echo:", SeenPath: "/v1/models?x=1"}},
		{name: "large body in many chunks", method: "POST", path: "/v1/completions", body: strings.NewReader(big), dest: up,
			want: observed{Status: 200, Body: "echo:" + big}},
		{name: "chunked client body", method: "POST", path: "/v1/completions", body: strings.NewReader(big), dest: up, chunked: true,
			want: observed{Status: 200, Body: "echo:" + big}},
		{name: "fallback after a refused connection", method: "POST", path: "/v1/completions", body: strings.NewReader("{}"),
			dest: closedAddr(t) + "," + up, want: observed{Status: 200, Body: "echo:{}"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := tc.body
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequestWithContext(testCtx(t), tc.method, gw+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "gw.example"
			req.Header.Set("X-Request-Id", "rid-7")
			req.Header.Set(hdrDest, tc.dest)
			want := tc.want
			want.Served, want.EPPServed, want.SeenHost, want.SeenDest, want.SeenRequestID = up, up, "gw.example", tc.dest, "rid-7"
			if want.SeenPath == "" {
				want.SeenPath = tc.path
			}
			if diff := cmp.Diff(want, do(t, req)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	epp := serveEPP(t, newFakeEPP())
	gw := startGateway(t, epp, Options{RequestTimeout: 500 * time.Millisecond})
	tests := []struct {
		name       string
		headers    map[string]string
		wantStatus int
		wantBody   string
	}{
		{name: "immediate response", headers: map[string]string{hdrImmediate: "429"}, wantStatus: 429, wantBody: "denied"},
		{name: "immediate response after routing", headers: map[string]string{hdrDest: echoUpstream(t), hdrLate: "503"}, wantStatus: 503, wantBody: "denied"},
		{name: "no destination", headers: map[string]string{}, wantStatus: 503, wantBody: "chose no destination endpoint"},
		{name: "every endpoint refuses", headers: map[string]string{hdrDest: closedAddr(t)}, wantStatus: 503, wantBody: "no destination endpoint accepted a connection"},
		{name: "protocol violation", headers: map[string]string{hdrDest: "127.0.0.1:1", hdrViolate: "1"}, wantStatus: 500, wantBody: "body_mutation.body is not allowed"},
		{name: "timeout", headers: map[string]string{hdrHang: "1"}, wantStatus: 504, wantBody: "request timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(testCtx(t), "POST", gw+"/v1/completions", strings.NewReader(`{"model":"m"}`))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			got := do(t, req)
			if got.Status != tc.wantStatus || !strings.Contains(got.Body, tc.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", got.Status, got.Body, tc.wantStatus, tc.wantBody)
			}
		})
	}
}

func TestImmediateResponseHeaders(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, serveEPP(t, newFakeEPP()), Options{})
	req, err := http.NewRequestWithContext(testCtx(t), "GET", gw+"/v1/models", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(hdrImmediate, "503")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Llm-D-Request-Dropped-Reason") != "rejected-saturated" || resp.Header.Get(ServedHeader) != "" {
		t.Errorf("got %d, headers %v", resp.StatusCode, resp.Header)
	}
}

func TestUnreachableEPP(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	tests := []struct {
		name       string
		opts       Options
		wantStatus int
		wantBody   string
		wantServed string
	}{
		{name: "fail closed", wantStatus: 503, wantBody: "endpoint picker unavailable"},
		{name: "fail open", opts: Options{FailOpenEndpoints: []string{closedAddr(t) + "," + up}}, wantStatus: 200, wantBody: "echo:{}", wantServed: up},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw := startGateway(t, closedAddr(t), tc.opts)
			req, err := http.NewRequestWithContext(testCtx(t), "POST", gw+"/v1/completions", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			got := do(t, req)
			if got.Status != tc.wantStatus || !strings.Contains(got.Body, tc.wantBody) || got.Served != tc.wantServed {
				t.Errorf("got %d %q served %q, want %d containing %q served %q", got.Status, got.Body, got.Served, tc.wantStatus, tc.wantBody, tc.wantServed)
			}
		})
	}
}

// TestSSEIsFlushed checks that each event reaches the client while the
// upstream is still streaming.
func TestSSEIsFlushed(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"n\":1}\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(up.Close)
	gw := startGateway(t, serveEPP(t, newFakeEPP()), Options{})
	req, err := http.NewRequestWithContext(testCtx(t), "POST", gw+"/v1/completions", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(hdrDest, up.Listener.Addr().String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := readEvent(br)
	if err != nil || first != "data: {\"n\":1}\n\n" {
		t.Fatalf("first event %q, %v: want it before the upstream finishes", first, err)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "data: [DONE]\n\n" {
		t.Errorf("rest %q, %v", rest, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content-type %q", ct)
	}
}

func readEvent(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\n" {
			return b.String(), err
		}
	}
}

func TestResponseTrailers(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Trailer", "X-Usage")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Usage", "42")
	}))
	t.Cleanup(up.Close)
	gw := startGateway(t, serveEPP(t, newFakeEPP()), Options{})
	req, err := http.NewRequestWithContext(testCtx(t), "GET", gw+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(hdrDest, up.Listener.Addr().String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "body" {
		t.Fatalf("body %q, %v", body, err)
	}
	want := http.Header{"X-Usage": {"42"}, "X-Epp-Trailer": {"1"}}
	if diff := cmp.Diff(want, resp.Trailer); diff != "" {
		t.Errorf("trailers (-want +got):\n%s", diff)
	}
}

// TestClientDisconnect checks that a client going away cancels both the
// ext_proc stream and the upstream request.
func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	arrived, upstreamDone := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // the server watches the connection once the body is read
		close(arrived)
		<-r.Context().Done()
		close(upstreamDone)
	}))
	t.Cleanup(up.Close)
	epp := newFakeEPP()
	gw := startGateway(t, serveEPP(t, epp), Options{})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", gw+"/v1/completions", bytes.NewReader([]byte("{}")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(hdrDest, up.Listener.Addr().String())
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, arrived, "the upstream to receive the request")
	cancel()
	waitFor(t, upstreamDone, "the upstream request to be cancelled")
	waitFor(t, epp.canceled, "the ext_proc stream to be cancelled")
	if err := <-errc; err == nil {
		t.Errorf("client request succeeded after cancellation")
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	c, err := extproc.Dial(context.Background(), "127.0.0.1:1", extproc.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no client", opts: Options{}, want: "client is required"},
		{name: "negative timeout", opts: Options{ExtProc: c, RequestTimeout: -1}, want: "negative option"},
		{name: "bad fail-open endpoint", opts: Options{ExtProc: c, FailOpenEndpoints: []string{"pod:80"}}, want: "fail-open endpoints"},
	}
	for _, tc := range tests {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// TestServedLineCarriesResponseMetadata: what the EPP reports with the last
// response chunk (request-attribute-reporter's cost) is in the request's
// log line, as an access log's %DYNAMIC_METADATA% would show it.
func TestServedLineCarriesResponseMetadata(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	var mu sync.Mutex
	var lines []string
	logger := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, args)
	}, funcr.Options{Verbosity: 1})
	gw := startGateway(t, serveEPP(t, newFakeEPP()), Options{Logger: logger})
	req, err := http.NewRequestWithContext(testCtx(t), "POST", gw+"/v1/completions", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(hdrDest, up)
	req.Header.Set(hdrCost, "42")
	if got := do(t, req); got.Status != 200 {
		t.Fatalf("status %d", got.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range lines {
		if strings.Contains(l, `"request served"`) {
			if !strings.Contains(l, `"metadata"={"envoy.lb"={"cost"=42}}`) {
				t.Errorf("served line %s lacks the reported cost", l)
			}
			return
		}
	}
	t.Errorf("no served line among %q", lines)
}
