package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// lineLog is a V(1) logger that keeps its lines for the test.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) logger() logr.Logger {
	return funcr.New(func(_, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{Verbosity: 1})
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// has reports whether a line carries every one of parts.
func (l *lineLog) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// blockingUpstream is a model server still queueing or prefilling: it takes
// the request, then answers 200 only if nobody cancels it within answerAfter.
func blockingUpstream(t *testing.T, answerAfter time.Duration) (addr string, arrived, canceled <-chan struct{}) {
	t.Helper()
	in, out := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // the server watches the connection once the body is read
		close(in)
		select {
		case <-r.Context().Done():
			close(out)
		case <-time.After(answerAfter):
			_, _ = io.WriteString(w, "too late")
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), in, out
}

// TestEvictWhileUpstreamWaits: an immediate response after dispatch, before
// the upstream answered, cancels the upstream request and reaches the client
// at once, as Envoy's local reply does.
func TestEvictWhileUpstreamWaits(t *testing.T) {
	t.Parallel()
	up, arrived, canceled := blockingUpstream(t, 4*time.Second)
	epp := newFakeEPP()
	epp.evict = arrived
	var log lineLog
	gw := startGateway(t, serveEPP(t, epp), Options{Logger: log.logger()})
	req, err := http.NewRequestWithContext(testCtx(t), "POST", gw+"/v1/completions", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "rid-wait")
	req.Header.Set(hdrDest, up)
	req.Header.Set(hdrEvict, "1")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); resp.StatusCode != http.StatusTooManyRequests || string(body) != "evicted" || elapsed > 2*time.Second {
		t.Errorf("got %d %q after %v, want 429 \"evicted\" well before the upstream answers", resp.StatusCode, body, elapsed)
	}
	if got := resp.Header.Get("X-Llm-D-Request-Dropped-Reason"); got != "evicted" || resp.Header.Get(ServedHeader) != "" {
		t.Errorf("headers %v, want the drop reason and no served endpoint", resp.Header)
	}
	waitFor(t, canceled, "the upstream request to be cancelled")
	if !log.has(`"immediate response"`, `"requestID"="rid-wait"`, `"stage"="upstream"`, `"status"=429`) {
		t.Errorf("no eviction line among:\n%s", &log)
	}
}

// sseUpstream streams an event every interval until its request is
// cancelled, or for at most max events.
func sseUpstream(t *testing.T, interval time.Duration, max int) (addr string, canceled <-chan struct{}) {
	t.Helper()
	out := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range max {
			_, _ = fmt.Fprintf(w, "data: {\"n\":%d}\n\n", i)
			_ = rc.Flush()
			select {
			case <-r.Context().Done():
				close(out)
				return
			case <-time.After(interval):
			}
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), out
}

// TestEvictMidStream: an immediate response while the body streams resets
// the client connection (the status is gone already) and the upstream
// request, as Envoy resets both streams.
func TestEvictMidStream(t *testing.T) {
	t.Parallel()
	up, canceled := sseUpstream(t, 10*time.Millisecond, 400)
	gotFirst := make(chan struct{})
	epp := newFakeEPP()
	epp.evict = gotFirst
	var log lineLog
	gw := startGateway(t, serveEPP(t, epp), Options{Logger: log.logger()})
	req, err := http.NewRequestWithContext(testCtx(t), "POST", gw+"/v1/completions", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "rid-stream")
	req.Header.Set(hdrDest, up)
	req.Header.Set(hdrEvict, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(ServedHeader) != up {
		t.Fatalf("got %d, headers %v; want the streaming 200", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	if first, err := readEvent(br); err != nil || first != "data: {\"n\":0}\n\n" {
		t.Fatalf("first event %q, %v", first, err)
	}
	close(gotFirst)
	rest, err := io.ReadAll(br)
	if err == nil || strings.Contains(string(rest), "[DONE]") {
		t.Errorf("rest %q, %v: want the connection reset before the stream ends", rest, err)
	}
	waitFor(t, canceled, "the upstream request to be cancelled")
	waitFor(t, epp.ended, "the ext_proc stream to end (Envoy half-closes it after an immediate response, then resets it)")
	if !log.has(`"immediate response, client connection reset"`, `"requestID"="rid-stream"`, `"status"=429`) {
		t.Errorf("no eviction line among:\n%s", &log)
	}
}
