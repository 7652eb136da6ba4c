// Package eppkube_test runs the real EPP (epp.Run, in process) in Kubernetes
// mode against a real kube-apiserver and etcd, with real simulators as the
// pods' model servers, and checks what Envoy would observe through the
// Envoy-faithful ext_proc client: which endpoint is picked, the status of
// immediate responses, gRPC health, and the metrics page.
package eppkube_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openepp/openepp/pkg/epp"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
	"github.com/openepp/openepp/test/kube"
)

var env *kube.Env

func TestMain(m *testing.M) {
	os.Exit(kube.RunTests(m, kube.Options{}, &env))
}

const (
	waitFor = 15 * time.Second
	// port is every simulated pod's model-server port; rank 1 uses port+1.
	port = 18000
)

// randomConfig picks uniformly at random, so every endpoint in the
// datastore gets picks and a missing one is noticed quickly.
const randomConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: random-picker
`

// logger discards the EPP's logs unless OPENEPP_TEST_LOG is set. It must
// not be bound to a test: controller-runtime's and client-go's global
// loggers keep the first EPP's logger for the whole process.
func logger() logr.Logger {
	if os.Getenv("OPENEPP_TEST_LOG") == "" {
		return logr.Discard()
	}
	return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1})
}

// instance is one running EPP.
type instance struct {
	addrs  epp.Addrs
	client *extproc.Client
	health healthpb.HealthClient
	stop   func() error
}

// startEPP runs the EPP for namespace ns with the extra flags until the
// test ends (or stop is called).
func startEPP(t *testing.T, ns string, flags ...string) *instance {
	t.Helper()
	return startEPPWith(t, ns, nil, flags...)
}

// startEPPWith is startEPP with extra Run options.
func startEPPWith(t *testing.T, ns string, opts []epp.Option, flags ...string) *instance {
	t.Helper()
	args := append([]string{"--pool-namespace", ns, "--kubeconfig", env.Kubeconfig, "--bind-address", "127.0.0.1",
		"--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0", "--secure-serving=false",
		"--config-text", randomConfig, "--drain-timeout", "2s"}, flags...)
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan epp.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- epp.Run(ctx, args, append([]epp.Option{epp.WithLogger(logger()), epp.WithReadyCallback(func(a epp.Addrs) { addrs <- a })}, opts...)...)
	}()
	in := &instance{}
	select {
	case in.addrs = <-addrs:
	case err := <-done:
		cancel()
		t.Fatalf("epp exited: %v", err)
	case <-time.After(waitFor):
		cancel()
		t.Fatal("epp did not start")
	}
	in.client = dialExtProc(t, in.addrs.GRPC)
	in.health = dialHealth(t, in.addrs.Health)
	var once sync.Once
	var runErr error
	in.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := in.stop(); err != nil {
			t.Errorf("epp: %v", err)
		}
	})
	return in
}

func dialExtProc(t *testing.T, addr string) *extproc.Client {
	t.Helper()
	c, err := extproc.Dial(context.Background(), addr, extproc.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func dialHealth(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// serving reports the readiness service's status.
func (in *instance) serving(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := in.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "readiness"})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// pick sends a completion request, restricted to the subset when given,
// and returns the chosen endpoint, or the immediate response's status.
func (in *instance) pick(t *testing.T, subset ...string) (string, int) {
	t.Helper()
	req := completionRequest(`{"model":"sim-model","prompt":"hello"}`)
	if len(subset) > 0 {
		list := make([]any, len(subset))
		for i, s := range subset {
			list[i] = s
		}
		req.FilterMetadata = map[string]map[string]any{extproc.SubsetNamespace: {extproc.SubsetKey: list}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := in.client.RoundTrip(ctx, req)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if d.Immediate != nil {
		return "", d.Immediate.Status
	}
	return d.Endpoints[0], 200
}

// picks sends n requests and counts the endpoints chosen ("" counts
// immediate responses).
func (in *instance) picks(t *testing.T, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		ep, _ := in.pick(t)
		out[ep]++
	}
	return out
}

// waitRoutable waits until ep can be picked (or, with want false, until it
// cannot), probing with a subset hint naming only ep, and returns how long
// that took.
func (in *instance) waitRoutable(t *testing.T, ep string, want bool) time.Duration {
	t.Helper()
	return in.waitRoutableFor(t, ep, want, waitFor)
}

// waitRoutableFor is waitRoutable with its own time limit.
func (in *instance) waitRoutableFor(t *testing.T, ep string, want bool, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, _ := in.pick(t, ep)
		if (got == ep) == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s routable = %v after %s, want %v", ep, !want, limit, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricsPage reads the EPP's /metrics as an authorized scraper would.
func (in *instance) metricsPage(t *testing.T) string {
	t.Helper()
	code, page := in.getMetrics(t, "/metrics", readerToken(t))
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, page)
	}
	return page
}

// getMetrics GETs path on the metrics port, with token as a bearer token
// unless it is empty.
func (in *instance) getMetrics(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+in.addrs.Metrics+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// readerNamespace holds the service account every test scrapes with.
const readerNamespace = "openepp-metrics-readers"

var (
	readerOnce     sync.Once
	readerTokenVal string
)

// readerToken is a token of a service account allowed to read /metrics
// and pprof, created once per test binary.
func readerToken(t *testing.T) string {
	t.Helper()
	readerOnce.Do(func() {
		env.Create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: readerNamespace}})
		readerTokenVal = env.ServiceAccountToken(t, readerNamespace, "prometheus")
		env.AllowGet(t, readerNamespace, "prometheus", "/metrics", "/debug/pprof/*")
	})
	if readerTokenVal == "" {
		t.Fatal("no metrics reader token (its creation failed in an earlier test)")
	}
	return readerTokenVal
}

func completionRequest(body string, headers ...string) extproc.Request {
	req := extproc.Request{Method: http.MethodPost, Path: "/v1/completions", Body: []byte(body), Headers: http.Header{}}
	req.Headers.Set("content-type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Headers.Set(headers[i], headers[i+1])
	}
	return req
}

// ipCount hands out distinct loopback addresses (127.88.x.y) so that
// parallel tests' simulators never collide.
var ipCount atomic.Int32

func nextIP() string {
	n := ipCount.Add(1)
	return fmt.Sprintf("127.88.%d.%d", n/250, n%250+1)
}

// simulator starts a model server on ip:p until the test ends.
func simulator(t *testing.T, ip string, p int) *sim.Instance {
	t.Helper()
	return simulatorWith(t, sim.Config{Address: ip, Port: p})
}

// simulatorWith starts a simulator configured by cfg until the test ends.
func simulatorWith(t *testing.T, cfg sim.Config) *sim.Instance {
	t.Helper()
	inst, err := sim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Close() })
	return inst
}

// hostPort is ip:p.
func hostPort(ip string, p int) string { return fmt.Sprintf("%s:%d", ip, p) }

// eventually polls cond until it holds, failing after waitFor, and returns
// how long it took.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	return kube.Eventually(t, waitFor, 10*time.Millisecond, what, cond)
}

// hasLine reports whether the metrics page has a line starting with prefix.
func hasLine(page, prefix string) bool {
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
