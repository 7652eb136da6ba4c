package helmchart

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/openepp/openepp/pkg/certfile/certtest"
	"github.com/openepp/openepp/pkg/epp"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
	"github.com/openepp/openepp/test/kube"
)

const waitFor = 20 * time.Second

// runCase is an install whose EPP the test starts.
type runCase struct {
	name string
	in   install
	// engine is the model servers' metrics dialect (modelServerType).
	engine string
	// secrets are the Secrets the user creates before installing.
	secrets map[string]map[string][]byte
	// podEvents, when set, is the port the model server publishes its KV
	// events on (precisePrefixCache in discoverPods mode): the EPP must
	// connect to it.
	podEvents int
}

// TestEPPRunsWithTheRenderedPod is the chart's end-to-end check: for each
// install it applies the rendered objects for real, creates a model-server
// pod (a simulator speaking the engine's metrics) that the pool selects,
// and starts the EPP with exactly the epp container's args and environment,
// as the chart's service account (so its Role must be enough), its volumes
// laid out as the kubelet would. The EPP must become ready (leader included),
// scrape the pod with the engine's metric names and route a request to it.
func TestEPPRunsWithTheRenderedPod(t *testing.T) {
	t.Parallel()
	cert, key := certtest.NewCA(t, "helm-test-ca").Server(t, eppName)
	podEvents := freePort(t)
	for _, rc := range []runCase{
		{name: "upstream-line", in: install{set: upstreamLine}, engine: "vllm"},
		{name: "custom-config-istio", in: install{files: []string{customConfig}, set: []string{modelApp}}, engine: "sglang"},
		{name: "ha", in: install{set: []string{modelApp, "inferenceExtension.replicas=2"}}, engine: "vllm"},
		{name: "trtllm-serve", in: install{set: []string{modelApp, "inferencePool.modelServerType=trtllm-serve"}}, engine: "trtllm-serve"},
		{name: "discover-pools", in: install{set: []string{modelApp, "openepp.discoverPools=true"}}, engine: "vllm"},
		{name: "precise-prefix-cache", engine: "vllm", in: install{set: []string{modelApp, precise,
			"openepp.precisePrefixCache.port=" + strconv.Itoa(freePort(t))}}},
		{name: "active-active-tls", engine: "triton-tensorrt-llm",
			in: install{set: []string{modelApp, "inferenceExtension.replicas=2", "openepp.activeActive.enabled=true",
				"openepp.tls.secretName=epp-tls", "inferencePool.modelServerType=triton-tensorrt-llm"}},
			secrets: map[string]map[string][]byte{
				"epp-tls":                 {"tls.crt": cert, "tls.key": key},
				eppName + "-replica-sync": {"token": []byte("s3cret")},
			}},
		{name: "precise-prefix-cache-active-active", engine: "vllm", podEvents: podEvents,
			in: install{set: []string{modelApp, precise, activeActive, "inferenceExtension.replicas=2",
				"openepp.precisePrefixCache.port=" + strconv.Itoa(podEvents)}},
			secrets: map[string]map[string][]byte{eppName + "-replica-sync": {"token": []byte("s3cret")}}},
	} {
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			runEPP(t, rc)
		})
	}
}

func runEPP(t *testing.T, rc runCase) {
	ns := env.Namespace(t)
	rc.in.name, rc.in.namespace = release, ns
	objs := render(t, rc.in)
	applyAll(t, objs)
	ip := nextIP()
	simulator(t, ip, rc.engine)
	var eventsDialed <-chan struct{}
	if rc.podEvents != 0 {
		eventsDialed = acceptOne(t, net.JoinHostPort(ip, strconv.Itoa(rc.podEvents)))
	}
	pod := env.Pod(t, ns, "model-server-0", map[string]string{"app": release}, nil)
	env.SetPodStatus(t, pod, ip, true)

	dep, epc := deployment(t, objs)
	k := kubelet{namespace: ns, podName: eppName + "-0", nodeName: "node-1", podIP: "127.0.0.1", objs: objs, secrets: rc.secrets}
	c := k.run(t, dep, "epp")
	in, err := startEPP(t, c, serviceAccountKubeconfig(t, ns, eppName))
	if err != nil {
		t.Fatalf("the EPP refused the rendered pod: %v\nargs: %q", err, c.args)
	}
	waitServing(t, in)
	endpoint := fmt.Sprintf("%s:8000", ip)
	// A scraper's token: the EPP asks the API server about it, with the
	// chart's system:auth-delegator binding.
	env.AllowGet(t, ns, "scraper", "/debug/endpoints")
	waitScraped(t, in, endpoint, env.ServiceAccountToken(t, ns, "scraper"))
	d := pick(t, in, slices.Contains(c.args, "--secure-serving=false"))
	if d != endpoint {
		t.Errorf("routed to %q, want the pool's pod %s", d, endpoint)
	}
	if tlsSecret := rc.secrets["epp-tls"]; tlsSecret != nil {
		checkServedCert(t, in.addrs.GRPC, tlsSecret["tls.crt"])
	}
	if eventsDialed != nil {
		select {
		case <-eventsDialed:
		case <-time.After(waitFor):
			t.Errorf("the EPP did not connect to the model server's KV events port %d", rc.podEvents)
		}
	}
	for _, p := range portsNamed(epc.Ports, "kv-events") {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.ContainerPort)))
		eventually(t, "the EPP receiving KV events on the kv-events port", func() bool {
			conn, err := net.Dial("tcp", addr)
			if err == nil {
				_ = conn.Close()
			}
			return err == nil
		})
	}
}

// acceptOne listens on addr, as a model server publishing its KV events,
// and reports the first connection to it.
func acceptOne(t *testing.T, addr string) <-chan struct{} {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan struct{})
	go func() {
		if conn, err := ln.Accept(); err == nil {
			_ = conn.Close()
			close(accepted)
		}
	}()
	return accepted
}

// TestEPPRejectsWhatItCannotRun proves the check above has teeth: a flag
// the EPP lacks, passed through inferenceExtension.flags, and a config
// naming a plugin it lacks stop the EPP at startup, naming the problem. It
// runs before the parallel tests, alone, so that the flag package's usage
// text can be kept off the test output.
func TestEPPRejectsWhatItCannotRun(t *testing.T) {
	quiet(t)
	badConfig := "inferenceExtension:\n  pluginsConfigFile: bad.yaml\n  pluginsCustomConfig:\n    bad.yaml: |\n" +
		"      apiVersion: inference.networking.x-k8s.io/v1alpha1\n      kind: EndpointPickerConfig\n" +
		"      plugins:\n      - type: no-such-scorer\n"
	for _, tc := range []struct {
		name string
		in   install
		want string
	}{
		{"unknown flag", install{set: []string{modelApp, "inferenceExtension.flags.no-such-flag=1"}}, "no-such-flag"},
		{"unknown plugin", install{files: []string{badConfig}, set: []string{modelApp}}, "no-such-scorer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.name, tc.in.namespace = release, "ns"
			objs := render(t, tc.in)
			dep, _ := deployment(t, objs)
			c := kubelet{namespace: "ns", podName: "p", objs: objs}.run(t, dep, "epp")
			in, err := startEPP(t, c, env.Kubeconfig)
			if err == nil {
				_ = in.stop()
				t.Fatalf("the EPP started; want an error naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %q: %v", tc.want, err)
			}
		})
	}
}

// quiet sends the process's standard error to /dev/null until t ends; only
// for tests that run alone.
func quiet(t *testing.T) {
	t.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = null
	t.Cleanup(func() { os.Stderr = saved; _ = null.Close() })
}

// applyAll applies every rendered object but the Deployment (its pod is
// the EPP this test runs) for real, as `helm install` would.
func applyAll(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := testContext(t)
	for _, o := range objs {
		if o.GetKind() == "Deployment" || slices.Contains(noCRD, o.GetAPIVersion()+"/"+o.GetKind()) {
			continue
		}
		if err := env.Apply(ctx, o); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// serviceAccountKubeconfig is a kubeconfig that authenticates as the
// service account ns/name with a fresh token, as the pod's mounted one.
func serviceAccountKubeconfig(t *testing.T, ns, name string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	hour := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(testContext(t), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos["epp"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["epp"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "epp", Namespace: ns}
	cfg.CurrentContext = "epp"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// instance is one running EPP.
type instance struct {
	addrs epp.Addrs
	stop  func() error
}

// startEPP runs the EPP in process with the container's args and
// environment. Only what a test process needs is added after them (later
// flags win): the kubeconfig, loopback listeners on free ports.
func startEPP(t *testing.T, c container, kubeconfig string) (*instance, error) {
	t.Helper()
	args := append(slices.Clone(c.args), "--kubeconfig="+kubeconfig, "--bind-address=127.0.0.1",
		"--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0")
	if slices.ContainsFunc(c.args, func(a string) bool { return strings.HasPrefix(a, "--replica-sync-port=") }) {
		args = append(args, "--replica-sync-port=0")
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan epp.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- epp.Run(ctx, args, epp.WithLogger(logger()), epp.WithEnv(func(k string) string { return c.env[k] }),
			epp.WithReadyCallback(func(a epp.Addrs) { addrs <- a }))
	}()
	in := &instance{}
	select {
	case in.addrs = <-addrs:
	case err := <-done:
		cancel()
		return nil, err
	case <-time.After(waitFor):
		cancel()
		t.Fatal("the EPP did not start")
	}
	var runErr error
	stopped := false
	in.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := in.stop(); err != nil {
			t.Errorf("epp: %v", err)
		}
	})
	return in, nil
}

// logger discards the EPP's logs unless OPENEPP_TEST_LOG is set.
func logger() logr.Logger {
	if os.Getenv("OPENEPP_TEST_LOG") == "" {
		return logr.Discard()
	}
	return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1})
}

// waitServing waits until the readiness service (the pod's readiness
// probe) is SERVING: the pool and its pods synced, the Lease held.
func waitServing(t *testing.T, in *instance) {
	t.Helper()
	conn, err := grpc.NewClient(in.addrs.Health, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	eventually(t, "readiness SERVING", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "readiness"})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
}

// waitScraped waits until the EPP has read the endpoint's metrics with the
// engine's names (fresh, no scrape failure, cache geometry known).
func waitScraped(t *testing.T, in *instance, endpoint, token string) {
	t.Helper()
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last /debug/endpoints: %s", last)
		}
	})
	eventually(t, "the model server scraped with its engine's metric names", func() bool {
		req, err := http.NewRequest(http.MethodGet, "http://"+in.addrs.Metrics+"/debug/endpoints", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = resp.Status
			return false
		}
		var eps []struct {
			Address        string `json:"address"`
			Stale          bool   `json:"stale"`
			CacheBlockSize int    `json:"cacheBlockSize"`
			ScrapeFailing  any    `json:"scrapeFailing"`
		}
		if json.NewDecoder(resp.Body).Decode(&eps) != nil {
			return false
		}
		b, _ := json.Marshal(eps)
		last = string(b)
		return len(eps) == 1 && eps[0].Address == endpoint && !eps[0].Stale && eps[0].ScrapeFailing == nil && eps[0].CacheBlockSize > 0
	})
	t.Logf("endpoints: %s", last)
}

// pick sends one completion through ext_proc (over TLS unless the EPP
// serves plaintext) and returns the endpoint chosen.
func pick(t *testing.T, in *instance, plaintext bool) string {
	t.Helper()
	opt := extproc.WithInsecureSkipVerify()
	if plaintext {
		opt = extproc.WithPlaintext()
	}
	c, err := extproc.Dial(context.Background(), in.addrs.GRPC, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := extproc.Request{Method: http.MethodPost, Path: "/v1/completions", Headers: http.Header{},
		Body: []byte(`{"model":"sim-model","prompt":"hello","max_tokens":1}`)}
	req.Headers.Set("content-type", "application/json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.RoundTrip(ctx, req)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if d.Immediate != nil || len(d.Endpoints) == 0 {
		t.Fatalf("no endpoint picked: %+v", d.Immediate)
	}
	return d.Endpoints[0]
}

// checkServedCert: ext_proc presents the certificate of the mounted Secret.
func checkServedCert(t *testing.T, addr string, want []byte) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // reading the served certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	block, _ := pem.Decode(want)
	if got := conn.ConnectionState().PeerCertificates[0].Raw; !slices.Equal(got, block.Bytes) {
		t.Error("ext_proc does not serve the certificate of openepp.tls.secretName")
	}
}

var ipCount atomic.Int32

// nextIP hands out distinct loopback addresses so that parallel tests'
// model servers can all listen on the pool's port 8000.
func nextIP() string {
	n := ipCount.Add(1)
	return fmt.Sprintf("127.89.%d.%d", n/250, n%250+1)
}

// simulator runs a model server with the engine's metrics on ip:8000.
func simulator(t *testing.T, ip, engine string) {
	t.Helper()
	inst, err := sim.Start(context.Background(), sim.Config{Address: ip, Port: 8000, MetricsEngine: engine})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Close() })
}

// eventually polls cond until it holds, failing after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	kube.Eventually(t, waitFor, 20*time.Millisecond, what, cond)
}
