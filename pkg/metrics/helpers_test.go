package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"

	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the package if any scrape loop or Start outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, 2*time.Second, "openepp/pkg/metrics.") }

// logEntry is one recorded log call.
type logEntry struct {
	Level int
	Msg   string
	Err   error
	KV    map[string]any
}

// recorder is a logr sink that keeps every entry, for asserting that state
// changes are logged exactly once.
type recorder struct {
	mu      sync.Mutex
	entries []logEntry
}

type recSink struct {
	r  *recorder
	kv []any
}

func (s *recSink) Init(logr.RuntimeInfo)        {}
func (s *recSink) Enabled(int) bool             { return true }
func (s *recSink) WithName(string) logr.LogSink { return s }
func (s *recSink) WithValues(kv ...any) logr.LogSink {
	return &recSink{r: s.r, kv: append(append([]any{}, s.kv...), kv...)}
}
func (s *recSink) Info(level int, msg string, kv ...any)  { s.r.add(level, msg, nil, s.kv, kv) }
func (s *recSink) Error(err error, msg string, kv ...any) { s.r.add(0, msg, err, s.kv, kv) }

func (r *recorder) add(level int, msg string, err error, kvs ...[]any) {
	e := logEntry{Level: level, Msg: msg, Err: err, KV: map[string]any{}}
	for _, kv := range kvs {
		for i := 0; i+1 < len(kv); i += 2 {
			e.KV[fmt.Sprint(kv[i])] = kv[i+1]
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

func (r *recorder) logger() logr.Logger { return logr.New(&recSink{r: r}) }

// count returns how many entries have msg and, if endpoint is not "", that
// endpoint.
func (r *recorder) count(msg, ep string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.entries {
		if e.Msg == msg && (ep == "" || e.KV["endpoint"] == ep) {
			n++
		}
	}
	return n
}

func (r *recorder) find(msg string) []logEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logEntry
	for _, e := range r.entries {
		if e.Msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// fakeClock is a settable Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// behavior is what a fake model server does with a metrics request.
type behavior int

const (
	serveOK behavior = iota
	serve500
	serveGarbage
	serveHang
	serveStall // half a page, then nothing
)

// modelServer is an httptest metrics page whose behavior can be switched.
type modelServer struct {
	*httptest.Server
	page     atomic.Pointer[[]byte]
	behavior atomic.Int32
	hits     atomic.Int64
	path     string
}

func newModelServer(t testing.TB, page []byte) *modelServer {
	return newModelServerAt(t, page, "/metrics")
}

func newModelServerAt(t testing.TB, page []byte, path string) *modelServer {
	t.Helper()
	ms := &modelServer{path: path}
	ms.page.Store(&page)
	ms.Server = httptest.NewServer(http.HandlerFunc(ms.serve))
	t.Cleanup(ms.Close)
	return ms
}

func (ms *modelServer) serve(w http.ResponseWriter, r *http.Request) {
	ms.hits.Add(1)
	if r.URL.Path != ms.path {
		http.NotFound(w, r)
		return
	}
	switch behavior(ms.behavior.Load()) {
	case serve500:
		http.Error(w, "engine dead", http.StatusInternalServerError)
	case serveGarbage:
		_, _ = w.Write([]byte("vllm:num_requests_waiting{oops 3\n<html>not metrics</html>\n"))
	case serveHang:
		<-r.Context().Done()
	case serveStall:
		page := *ms.page.Load()
		_, _ = w.Write(page[:len(page)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	default:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(*ms.page.Load())
	}
}

func (ms *modelServer) set(b behavior) { ms.behavior.Store(int32(b)) }

func (ms *modelServer) setPage(p []byte) { ms.page.Store(&p) }

// spec returns an endpoint spec pointing at the server.
func (ms *modelServer) spec(t testing.TB, name string, labels map[string]string) endpoint.Spec {
	t.Helper()
	return specFor(t, name, ms.Listener.Addr().String(), labels)
}

func specFor(t testing.TB, name, hostport string, labels map[string]string) endpoint.Spec {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return endpoint.Spec{Name: name, Address: host, Port: p, Labels: labels}
}

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func readPage(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handDriven builds a scraper with a fake clock and a log recorder, and the
// target of its one endpoint spec, for a test to scrape by hand (poll).
func handDriven(t testing.TB, spec endpoint.Spec) (*fakeClock, *recorder, *Scraper, *target) {
	t.Helper()
	clk, rec := newFakeClock(), &recorder{}
	st := newStoreWith(spec)
	s, err := New(st, Options{Clock: clk, Log: rec.logger()})
	if err != nil {
		t.Fatal(err)
	}
	return clk, rec, s, s.newTarget(st.Snapshot()[0])
}

// startScraper runs s until the test ends and waits for Start to return.
func startScraper(t testing.TB, s *Scraper) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
		if n := s.active.Load(); n != 0 {
			t.Errorf("%d scrape loops still running after Start returned", n)
		}
	})
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newStoreWith(specs ...endpoint.Spec) *datastore.Store {
	st := datastore.New()
	st.Replace("test", specs)
	return st
}

// metricValue reads a counter or gauge child directly.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

// gathered returns the value of the series name{labels} from g, or -1 when
// it is absent.
func gathered(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range fams {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsEqual(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func labelsEqual(pairs []*dto.LabelPair, want map[string]string) bool {
	if len(pairs) != len(want) {
		return false
	}
	for _, p := range pairs {
		if v, ok := want[p.GetName()]; !ok || v != p.GetValue() {
			return false
		}
	}
	return true
}
