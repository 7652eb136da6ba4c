package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/pickers"
	"github.com/openepp/openepp/pkg/poolroute"
	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scorers"
	"github.com/openepp/openepp/pkg/server"

	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the run when goroutines of this module outlive the tests:
// every server, stream and simulator a test starts must be gone after it.
func TestMain(m *testing.M) { leakcheck.Main(m, 5*time.Second, "openepp/pkg/") }

// testTimeout bounds every wait of a test.
const testTimeout = 10 * time.Second

// testModel is the model every test request asks for.
const testModel = "base-model"

// setup describes one server under test. The zero value is a plaintext
// server over three synced endpoints, with a queue-scorer and a max-score
// picker returning one endpoint.
type setup struct {
	// endpoints nil means threeEndpoints(); an empty non-nil slice is an
	// empty pool.
	endpoints []endpoint.Spec
	// unsynced leaves the datastore not ready (endpoints are still added).
	unsynced bool
	picker   scheduler.Picker
	scorers  []scheduler.WeightedScorer
	// plugins are added to the scheduler next to the recorder.
	plugins []scheduler.Plugin
	server  server.Options
	// grpc limits default to what pkg/epp derives from the body limit;
	// rawGRPC passes grpc as given, zero values included.
	grpc    server.GRPCOptions
	rawGRPC bool
	tls     bool
	// bare leaves the test recorder out of the scheduler (benchmarks).
	bare bool
}

// harness is a real Server behind a real gRPC listener on 127.0.0.1, with a
// real datastore and scheduler, and an Envoy-faithful client dialled to it.
type harness struct {
	srv    *server.Server
	store  *datastore.Store
	client *extproc.Client
	rec    *recorder
	reg    *prometheus.Registry
	addr   string
}

// endpointsAt returns n endpoint specs 10.0.<i/250>.<i%250+1>:8000.
func endpointsAt(n int) []endpoint.Spec {
	out := make([]endpoint.Spec, n)
	for i := range out {
		out[i] = endpoint.Spec{
			Name:    fmt.Sprintf("ep-%04d", i),
			Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1),
			Port:    8000,
		}
	}
	return out
}

func threeEndpoints() []endpoint.Spec { return endpointsAt(3) }

// start runs the server described by s until the test ends.
func start(t testing.TB, s setup) *harness {
	t.Helper()
	h := &harness{store: datastore.New(), rec: newRecorder(), reg: prometheus.NewRegistry()}
	specs := s.endpoints
	if specs == nil {
		specs = threeEndpoints()
	}
	if s.unsynced {
		for _, sp := range specs {
			h.store.Upsert("test", sp)
		}
	} else {
		h.store.Replace("test", specs)
	}
	plugins := s.plugins
	if !s.bare {
		plugins = append([]scheduler.Plugin{h.rec}, plugins...)
	}
	sched := newScheduler(t, s.picker, s.scorers, plugins...)
	opts := s.server
	if opts.Metrics == nil {
		opts.Metrics = server.NewMetrics(h.reg)
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	if opts.Pools == nil { // as the EPP always has one
		opts.Pools = poolroute.New(nil, "")
	}
	h.srv = server.New(h.store, sched, opts)
	g := h.srv.NewGRPCServer(grpcOptions(t, s))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	h.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, g, lis, time.Second) }()
	h.client = dial(t, h.addr, s.tls)
	t.Cleanup(func() {
		_ = h.client.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return h
}

func grpcOptions(t testing.TB, s setup) server.GRPCOptions {
	o := s.grpc
	if !s.rawGRPC {
		limit := max(4<<20, s.server.MaxRequestBodyBytes+(1<<20))
		if o.MaxRecvMsgSize == 0 {
			o.MaxRecvMsgSize = limit
		}
		if o.MaxSendMsgSize == 0 {
			o.MaxSendMsgSize = limit
		}
	}
	if s.tls {
		cfg, err := server.TLSConfig("", false, logr.Discard())
		if err != nil {
			t.Fatalf("tls config: %v", err)
		}
		o.TLS = cfg
	}
	return o
}

func dial(t testing.TB, addr string, withTLS bool) *extproc.Client {
	t.Helper()
	sec := extproc.WithPlaintext()
	if withTLS {
		sec = extproc.WithInsecureSkipVerify()
	}
	c, err := extproc.Dial(context.Background(), addr, sec)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

// newScheduler builds a single-profile scheduler from real plugins: picker
// defaults to max-score (one endpoint), scorers to a queue-scorer.
func newScheduler(t testing.TB, picker scheduler.Picker, ws []scheduler.WeightedScorer, extra ...scheduler.Plugin) *scheduler.Scheduler {
	t.Helper()
	if picker == nil {
		picker = maxScore(t, 1)
	}
	if ws == nil {
		ws = []scheduler.WeightedScorer{{Scorer: scorers.NewQueueDepth("queue-scorer"), Weight: 1}}
	}
	handler := profiles.NewSingle("single")
	plugins := []scheduler.Plugin{handler, picker}
	for _, w := range ws {
		plugins = append(plugins, w.Scorer)
	}
	sched, err := scheduler.New(scheduler.Options{
		Handler:  handler,
		Profiles: []*scheduler.Profile{{Name: "default", Scorers: ws, Picker: picker}},
		Plugins:  append(plugins, extra...),
	})
	if err != nil {
		t.Fatalf("scheduler: %v", err)
	}
	return sched
}

func maxScore(t testing.TB, n int) scheduler.Picker {
	t.Helper()
	p, err := pickers.NewMaxScore("max-score-picker", pickers.Params{MaxNumOfEndpoints: n})
	if err != nil {
		t.Fatalf("max-score picker: %v", err)
	}
	return p
}

func randomPicker(n int) scheduler.Picker {
	return pickers.NewRandom("random-picker", pickers.Params{MaxNumOfEndpoints: n})
}

// testCtx returns a context bounded by testTimeout and cancelled with the test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// open starts a stream that is closed, at the latest, when the test ends.
func (h *harness) open(t testing.TB, opts ...extproc.StreamOption) *extproc.Stream {
	t.Helper()
	s, err := h.client.Open(testCtx(t), opts...)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// exchange plays the request phase and returns Envoy's view of the answer,
// which may be an immediate response.
func (h *harness) exchange(t testing.TB, req extproc.Request, opts ...extproc.StreamOption) *extproc.Decision {
	t.Helper()
	d, err := h.client.RoundTrip(testCtx(t), req, opts...)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	return d
}

// route is exchange for a request that must be routed.
func (h *harness) route(t testing.TB, req extproc.Request, opts ...extproc.StreamOption) *extproc.Decision {
	t.Helper()
	d := h.exchange(t, req, opts...)
	if d.Immediate != nil {
		t.Fatalf("%s %s: want a routing answer, got immediate response %d %q", req.Method, req.Path, d.Immediate.Status, d.Immediate.Body)
	}
	if len(d.Endpoints) == 0 {
		t.Fatalf("%s %s: routing answer without a destination", req.Method, req.Path)
	}
	return d
}

// waitIdle waits until the server has no open stream, so every stream's
// end-of-exchange work (ResponseComplete, metrics) is done.
func (h *harness) waitIdle(t testing.TB) {
	t.Helper()
	eventually(t, "no open ext_proc stream", func() bool { return h.srv.InFlight() == 0 })
}

// eventually polls cond until it holds or testTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// post is a POST request with a JSON body and extra headers as name, value
// pairs.
func post(path string, body []byte, kv ...string) extproc.Request {
	req := extproc.Request{Method: http.MethodPost, Path: path, Body: body, Headers: http.Header{}}
	req.Headers.Set("content-type", "application/json")
	for i := 0; i+1 < len(kv); i += 2 {
		req.Headers.Add(kv[i], kv[i+1])
	}
	return req
}

// completion is a /v1/completions body for testModel.
func completion(prompt string) []byte {
	return mustJSON(map[string]any{"model": testModel, "prompt": prompt})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// requireImmediate checks an immediate response's status, dropped-reason
// header and that its body says what went wrong.
func requireImmediate(t testing.TB, d *extproc.Decision, status int, reason, bodyHas string) {
	t.Helper()
	if d.Immediate == nil {
		t.Fatalf("want immediate response %d, got a routing answer to %v", status, d.Endpoints)
	}
	imm := d.Immediate
	if imm.Status != status {
		t.Errorf("status = %d, want %d (body %q)", imm.Status, status, imm.Body)
	}
	if got := imm.Headers.Get(server.DroppedReasonHeader); got != reason {
		t.Errorf("%s = %q, want %q", server.DroppedReasonHeader, got, reason)
	}
	if !strings.Contains(string(imm.Body), bodyHas) {
		t.Errorf("body %q does not say %q", imm.Body, bodyHas)
	}
}

// recorder is a test plugin observing the request lifecycle hooks, keyed by
// request ID.
type recorder struct {
	mu        sync.Mutex
	requests  map[string]scheduler.Request
	pre       map[string]int
	completes map[string][]scheduler.Response
}

var (
	_ scheduler.PreRequest       = (*recorder)(nil)
	_ scheduler.ResponseComplete = (*recorder)(nil)
)

func newRecorder() *recorder {
	return &recorder{requests: map[string]scheduler.Request{}, pre: map[string]int{}, completes: map[string][]scheduler.Response{}}
}

func (r *recorder) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "test-recorder", Name: "recorder"}
}

func (r *recorder) PreRequest(_ context.Context, _ *scheduler.State, req *scheduler.Request, _ *scheduler.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests[req.ID] = *req
	r.pre[req.ID]++
}

func (r *recorder) ResponseComplete(_ context.Context, _ *scheduler.State, req *scheduler.Request, resp *scheduler.Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.completes[req.ID] = append(r.completes[req.ID], *resp)
}

// request returns what plugins saw of the request with id.
func (r *recorder) request(t testing.TB, id string) scheduler.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	req, ok := r.requests[id]
	if !ok {
		t.Fatalf("no request %q reached the plugins", id)
	}
	return req
}

// counts returns how often PreRequest and ResponseComplete ran for id.
func (r *recorder) counts(id string) (pre, completes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pre[id], len(r.completes[id])
}

// completed waits for the ResponseComplete of id and returns its response.
func (r *recorder) completed(t testing.TB, id string) scheduler.Response {
	t.Helper()
	eventually(t, "ResponseComplete of "+id, func() bool { _, n := r.counts(id); return n > 0 })
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.completes[id][0]
}
