package dcgm

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/certfile/certtest"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the run if goroutines of the project (the source's polls,
// simulators) outlive the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, 3*time.Second, "openepp/pkg/") }

// newSource builds a dcgm-data-source with params (JSON) polling eps, fed
// to a dcgm-extractor.
func newSource(t *testing.T, params string, eps ...*endpoint.Endpoint) *Source {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	h := &scheduler.Handle{Registerer: prometheus.NewRegistry(), Endpoints: func() []*endpoint.Endpoint { return eps }}
	p, err := SourceFactory("src", raw, h)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := ExtractorFactory("x", nil, h)
	s := p.(*Source)
	if err := s.AddExtractor(x); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.transport.CloseIdleConnections)
	return s
}

// rounds polls every exporter of a source at once, as if an interval had
// passed each time, and waits for the answers.
type rounds struct {
	p   *poller
	now time.Time
}

func newRounds(s *Source) *rounds { return &rounds{p: s.newPoller(), now: time.Unix(0, 0)} }

func (r *rounds) run() {
	r.now = r.now.Add(time.Hour)
	r.again()
}

// again dispatches without time passing: only exporters with an endpoint
// new to them are due.
func (r *rounds) again() {
	r.p.dispatch(context.Background(), r.now)
	r.p.wg.Wait()
}

// exporter is an httptest server on 127.0.0.1 counting its requests.
type exporter struct {
	*httptest.Server
	hits atomic.Int64
}

func serve(t *testing.T, h http.HandlerFunc) *exporter {
	t.Helper()
	e := &exporter{}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		h(w, r)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Listener = ln
	e.Start()
	t.Cleanup(e.Close)
	return e
}

func (e *exporter) port(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(e.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func writePage(text string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, text)
	}
}

func utilOf(ep *endpoint.Endpoint) (float64, bool) { return ep.Attribute(UtilizationKey) }

func TestSourceParams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile := certtest.Write(t, dir, "ca.crt", certtest.NewCA(t, "ca").PEM)
	tests := []struct {
		params  string
		wantErr []string
	}{
		{params: `{}`},
		{params: `{"scheme": "https", "path": "/metrics", "port": 9500, "insecureSkipVerify": false, "caCertPath": "` + caFile + `", "useNodeAddress": true, "interval": "2s", "timeout": "500ms"}`},
		{params: `{"address": "10.0.0.1"}`, wantErr: []string{`unknown field "address"`}},
		{params: `{"port": "9400"}`, wantErr: []string{"cannot unmarshal string"}},
		{params: `{"scheme": "grpc", "path": "metrics", "port": 0, "interval": "0s", "timeout": "soon", "clientCertPath": "/c.crt"}`, wantErr: []string{
			`scheme: must be http or https, got "grpc"`, `path: must start with /, got "metrics"`, "port: must be 1-65535, got 0",
			`interval: must be a positive duration such as 1s, got "0s"`, `timeout: must be a positive duration such as 1s, got "soon"`,
			"clientCertPath and clientKeyPath: set both or neither"}},
		{params: `{"port": 65536}`, wantErr: []string{"port: must be 1-65535, got 65536"}},
		{params: `{"scheme": "https", "caCertPath": "` + dir + `/missing.crt"}`, wantErr: []string{"CA bundle"}},
	}
	for _, tc := range tests {
		_, err := SourceFactory("s", json.RawMessage(tc.params), &scheduler.Handle{})
		if len(tc.wantErr) == 0 && err != nil {
			t.Errorf("%s: %v", tc.params, err)
		}
		for _, want := range tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v, want one containing %q", tc.params, err, want)
			}
		}
	}
	defaults := []struct {
		params        string
		interval, tmo time.Duration
		url           string
		useNode       bool
	}{
		{params: "", interval: DefaultInterval, tmo: DefaultTimeout, url: "http://10.0.0.1:9400/metrics"},
		{params: `{"interval": "500ms"}`, interval: 500 * time.Millisecond, tmo: 500 * time.Millisecond, url: "http://10.0.0.1:9400/metrics"},
		{params: `{"scheme": "https", "port": 9500, "path": "/m", "useNodeAddress": true, "interval": "5s", "timeout": "2s"}`,
			interval: 5 * time.Second, tmo: 2 * time.Second, url: "https://192.168.1.7:9500/m", useNode: true},
	}
	ep := endpoint.New(endpoint.Spec{Name: "e", Address: "10.0.0.1", Port: 8000, NodeAddress: "192.168.1.7"})
	for _, tc := range defaults {
		p, err := SourceFactory("s", json.RawMessage(tc.params), &scheduler.Handle{})
		if err != nil {
			t.Fatalf("%s: %v", tc.params, err)
		}
		s := p.(*Source)
		url := s.scheme + "://" + s.exporter(ep) + s.path
		if s.Interval != tc.interval || s.Timeout != tc.tmo || url != tc.url || s.useNode != tc.useNode {
			t.Errorf("%s: interval %s timeout %s url %s useNode %v", tc.params, s.Interval, s.Timeout, url, s.useNode)
		}
		if s.scheme == "https" && !s.transport.TLSClientConfig.InsecureSkipVerify {
			t.Errorf("%s: insecureSkipVerify defaults to false", tc.params)
		}
	}
}

func TestAddExtractorRefusesOtherPlugins(t *testing.T) {
	t.Parallel()
	p, err := SourceFactory("s", nil, &scheduler.Handle{})
	if err != nil {
		t.Fatal(err)
	}
	other := struct{ scheduler.Plugin }{&Source{name: scheduler.TypedName{Type: SourceType, Name: "other"}}}
	if err := p.(*Source).AddExtractor(other); err == nil || !strings.Contains(err.Error(), `"other" cannot extract from dcgm-data-source`) {
		t.Errorf("AddExtractor: %v", err)
	}
	if r := SourceRegistration(); r.Type != SourceType || r.Factory == nil {
		t.Errorf("registration %+v", r)
	}
}

// TestSidecarMode polls each endpoint's own address at the configured
// port and path.
func TestSidecarMode(t *testing.T) {
	t.Parallel()
	var gotPath, gotAccept atomic.Value
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath.Store(r.URL.Path)
		gotAccept.Store(r.Header.Get("Accept"))
		writePage("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-0\"} 42\n")(w, r)
	})
	// A static endpoint (no pod, no node address) whose sidecar answers.
	ep := endpoint.New(endpoint.Spec{Name: "127.0.0.1:8000", Address: "127.0.0.1", Port: 8000})
	s := newSource(t, `{"port": `+strconv.Itoa(srv.port(t))+`, "path": "/dcgm/metrics"}`, ep)
	newRounds(s).run()
	if v, ok := utilOf(ep); !ok || !approx(v, 0.42) {
		t.Fatalf("utilization %v (present %v), want 0.42", v, ok)
	}
	if gotPath.Load() != "/dcgm/metrics" || !strings.HasPrefix(gotAccept.Load().(string), "text/plain") {
		t.Errorf("request: path %v accept %v", gotPath.Load(), gotAccept.Load())
	}
	if got := testutil.ToFloat64(s.tel.polls); got != 1 {
		t.Errorf("polls_total = %v", got)
	}
}

// TestNodeMode: endpoints on one node share its exporter, fetched once a
// round; each gets its own pod's GPUs. An endpoint without a node address
// is skipped, counted once.
func TestNodeMode(t *testing.T) {
	t.Parallel()
	srv := serve(t, writePage(page))
	a := endpoint.New(endpoint.Spec{Name: "pod-a-rank-0", Pod: "pod-a", Address: "10.255.0.1", Port: 8000, NodeAddress: "127.0.0.1"})
	b := endpoint.New(endpoint.Spec{Name: "pod-b-rank-0", Pod: "pod-b", Address: "10.255.0.2", Port: 8000, NodeAddress: "127.0.0.1"})
	static := endpoint.New(endpoint.Spec{Name: "static", Address: "127.0.0.1", Port: 8000})
	s := newSource(t, `{"useNodeAddress": true, "port": `+strconv.Itoa(srv.port(t))+`}`, a, b, static)
	r := newRounds(s)
	for round := int64(1); round <= 2; round++ {
		r.run()
		if got := srv.hits.Load(); got != round {
			t.Fatalf("after %d rounds the node's exporter was fetched %d times", round, got)
		}
	}
	got := map[string]float64{}
	for _, ep := range []*endpoint.Endpoint{a, b, static} {
		if v, ok := utilOf(ep); ok {
			got[ep.Name] = v
		}
	}
	if diff := cmp.Diff(map[string]float64{"pod-a-rank-0": 0.64, "pod-b-rank-0": 0.90}, got, cmp.Comparer(approx)); diff != "" {
		t.Errorf("utilization (-want +got):\n%s", diff)
	}
	if n := testutil.ToFloat64(s.tel.skipped); n != 1 {
		t.Errorf("skipped_endpoints_total = %v after two rounds, want 1", n)
	}
}

// TestNewEndpointIsPolledAtOnce: an endpoint joining a node already
// polled this interval gets its value at the next tick, not an interval
// later.
func TestNewEndpointIsPolledAtOnce(t *testing.T) {
	t.Parallel()
	srv := serve(t, writePage(page))
	a := endpoint.New(endpoint.Spec{Name: "a", Pod: "pod-a", Address: "10.255.0.1", NodeAddress: "127.0.0.1"})
	b := endpoint.New(endpoint.Spec{Name: "b", Pod: "pod-b", Address: "10.255.0.2", NodeAddress: "127.0.0.1"})
	pool := []*endpoint.Endpoint{a}
	s := newSource(t, `{"useNodeAddress": true, "port": `+strconv.Itoa(srv.port(t))+`}`)
	s.endpoints = func() []*endpoint.Endpoint { return pool }
	r := newRounds(s)
	r.run()
	r.again() // nothing due
	if srv.hits.Load() != 1 {
		t.Fatalf("%d fetches, want 1", srv.hits.Load())
	}
	pool = []*endpoint.Endpoint{a, b}
	r.again()
	if v, ok := utilOf(b); !ok || !approx(v, 0.9) || srv.hits.Load() != 2 {
		t.Errorf("joined endpoint: %v (present %v) after %d fetches", v, ok, srv.hits.Load())
	}
	pool = nil
	r.again()
	if len(r.p.targets) != 0 {
		t.Errorf("exporters of a departed pool kept: %v", r.p.targets)
	}
}

func TestHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(writePage("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 7\n"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ep := endpoint.New(endpoint.Spec{Name: "e", Address: "127.0.0.1"})
	s := newSource(t, `{"scheme": "https", "port": `+port+`}`, ep) // insecureSkipVerify defaults to true
	newRounds(s).run()
	if v, ok := utilOf(ep); !ok || !approx(v, 0.07) {
		t.Errorf("utilization over https: %v (present %v)", v, ok)
	}
}
