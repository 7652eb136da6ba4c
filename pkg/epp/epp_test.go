package epp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
)

// logLines is a concurrency-safe sink for log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger(verbosity int) logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: verbosity})
}

func (l *logLines) find(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// running is one in-process EPP.
type running struct {
	addrs  Addrs
	client *extproc.Client
	log    *logLines
	// file is the endpoints file, entries its line per simulated server,
	// servers their addresses.
	file    string
	entries []string
	servers []string
	sims    []*sim.Instance
	// stop ends the EPP and returns Run's error (again on later calls).
	stop func() error
}

// startEPP runs the EPP with args against n simulated servers, whose
// addresses it writes into an endpoints file (labels idx=<i>).
func startEPP(t *testing.T, n int, verbosity int, args ...string) *running {
	t.Helper()
	return startEPPWith(t, n, verbosity, nil, args...)
}

// startEPPWith is startEPP with extra Run options.
func startEPPWith(t *testing.T, n int, verbosity int, opts []Option, args ...string) *running {
	t.Helper()
	return launchEPP(t, n, verbosity, opts, func(r *running) []string {
		return append([]string{"--endpoints-file", r.file}, args...)
	})
}

// launchEPP is startEPPWith with the arguments left to args, which is
// called once the servers run and the endpoints file is written, and
// returns Run's arguments other than the listeners'.
func launchEPP(t *testing.T, n int, verbosity int, opts []Option, args func(*running) []string) *running {
	t.Helper()
	return launchEPPSims(t, make([]sim.Config, n), verbosity, opts, args)
}

// launchEPPSims is launchEPP with one simulated server per config (its
// address defaults to 127.0.0.1).
func launchEPPSims(t *testing.T, sims []sim.Config, verbosity int, opts []Option, args func(*running) []string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{log: &logLines{}, file: filepath.Join(t.TempDir(), "endpoints.yaml")}
	for i, cfg := range sims {
		if cfg.Address == "" {
			cfg.Address = "127.0.0.1"
		}
		inst, err := sim.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(inst.HostPort())
		labels := fmt.Sprintf("idx: \"%d\"", i)
		if cfg.MetricsEngine != "" { // as a deployment labels its pods
			labels += ", llm-d.ai/engine-type: " + cfg.MetricsEngine
		}
		r.entries = append(r.entries, fmt.Sprintf("- {name: s%d, address: %s, port: %s, labels: {%s}}\n", i, host, port, labels))
		r.servers = append(r.servers, inst.HostPort())
		r.sims = append(r.sims, inst)
		t.Cleanup(func() { _ = inst.Close() })
	}
	r.writeEndpoints(t, r.entries...)
	addrs := make(chan Addrs, 1)
	done := make(chan error, 1)
	all := append([]string{"--bind-address", "127.0.0.1", "--grpc-port", "0",
		"--grpc-health-port", "0", "--metrics-port", "0", "--secure-serving=false"}, args(r)...)
	go func() {
		done <- Run(ctx, all, append([]Option{WithLogger(r.log.logger(verbosity)), WithReadyCallback(func(a Addrs) { addrs <- a })}, opts...)...)
	}()
	select {
	case r.addrs = <-addrs:
	case err := <-done:
		cancel()
		t.Fatalf("epp exited: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("epp did not start")
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := WaitReady(wctx, r.addrs.Health); err != nil {
		cancel()
		t.Fatal(err)
	}
	client, err := extproc.Dial(ctx, r.addrs.GRPC, extproc.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	r.client = client
	var once sync.Once
	var runErr error
	r.stop = func() error {
		once.Do(func() {
			client.Close()
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("epp: %v", err)
		}
	})
	return r
}

// writeEndpoints replaces the endpoints file's content with entries.
func (r *running) writeEndpoints(t *testing.T, entries ...string) {
	t.Helper()
	if err := os.WriteFile(r.file, []byte(strings.Join(entries, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (r *running) route(t *testing.T, body string) *extproc.Decision {
	t.Helper()
	d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/completions",
		Headers: map[string][]string{"content-type": {"application/json"}}, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Immediate != nil {
		t.Fatalf("immediate response %d: %s", d.Immediate.Status, d.Immediate.Body)
	}
	return d
}

func (r *running) metricsPage(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + r.addrs.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

func TestDecisionIsExplainedAndScoresEmitted(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 3, 1, "--emit-endpoint-scores")
	d := r.route(t, `{"model":"m","prompt":"explain me"}`)
	lines := r.log.find(`"scheduled request"`)
	if len(lines) != 1 {
		t.Fatalf("want one decision line at --v=1, got %d: %v", len(lines), lines)
	}
	for _, want := range []string{d.Endpoints[0], "queue-scorer=2×", "kv-cache-utilization-scorer=2×", "prefix-cache-scorer=3×", "total="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("decision line lacks %q: %s", want, lines[0])
		}
	}
	if strings.Contains(lines[0], "explain me") {
		t.Error("the prompt was logged")
	}
	scores, ok := d.DynamicMetadata["envoy.lb"]["x-gateway-destination-endpoint-scores"].(map[string]any)
	if !ok || len(scores) != 3 {
		t.Fatalf("scores metadata = %#v, want one score per endpoint", d.DynamicMetadata["envoy.lb"])
	}
	if _, ok := scores[d.Endpoints[0]]; !ok {
		t.Errorf("picked endpoint %s has no score in %v", d.Endpoints[0], scores)
	}
	// Upstream's names for the build and the decision are on the page.
	page := r.metricsPage(t)
	_, port, _ := net.SplitHostPort(d.Endpoints[0])
	for _, want := range []string{`inference_extension_info{build_ref="`,
		`inference_extension_scheduler_attempts_total{namespace="",pod_name="s`, `",port="` + port + `",status="success",target_model_name="m"} 1`,
		`inference_extension_plugin_duration_seconds_count{extension_point="Scorer",plugin_name="queue-scorer",plugin_type="queue-scorer"} 1`} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics page lacks %q", want)
		}
	}
}

// TestAttemptsOfDepartedEndpointsArePruned checks that the per-pod series of
// scheduler_attempts_total go away when the pod leaves the pool, so pod
// churn does not grow the metrics page without end.
func TestAttemptsOfDepartedEndpointsArePruned(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 2, 0, "--config-text", selectOnly(1))
	r.route(t, `{"model":"m","prompt":"to s1"}`)
	series := `inference_extension_scheduler_attempts_total{namespace="",pod_name="s1"`
	if page := r.metricsPage(t); !strings.Contains(page, series) {
		t.Fatalf("metrics page lacks %q after routing to s1", series)
	}
	r.writeEndpoints(t, r.entries[0]) // s1 leaves
	eventually(t, "s1's attempts series pruned", func() bool { return !strings.Contains(r.metricsPage(t), series) })
}

func TestNoDecisionLogsAtDefaultVerbosity(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 1, 0)
	d := r.route(t, `{"model":"m","prompt":"quiet"}`)
	if _, ok := d.DynamicMetadata["envoy.lb"]["x-gateway-destination-endpoint-scores"]; ok {
		t.Error("scores emitted without --emit-endpoint-scores")
	}
	if lines := r.log.find(`"scheduled request"`); len(lines) != 0 {
		t.Errorf("decision logged at --v=0: %v", lines)
	}
}

// selectOnly is a config that routes only to the endpoint labelled idx=i.
func selectOnly(i int) string {
	return fmt.Sprintf(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: label-selector-filter
  parameters: {matchLabels: {idx: "%d"}}
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: label-selector-filter
  - pluginRef: queue-scorer
`, i)
}

func TestConfigFileReload(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	write := func(text string) {
		tmp := cfg + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg); err != nil {
			t.Fatal(err)
		}
	}
	write(selectOnly(0))
	r := startEPP(t, 2, 0, "--config-file", cfg)
	first := r.route(t, `{"model":"m","prompt":"a"}`).Endpoints[0]
	write(selectOnly(1))
	eventually(t, "reload to take effect", func() bool { return r.route(t, `{"model":"m","prompt":"a"}`).Endpoints[0] != first })
	second := r.route(t, `{"model":"m","prompt":"a"}`).Endpoints[0]

	write("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: no-such-plugin\n")
	eventually(t, "failed reload to be counted", func() bool {
		return strings.Contains(r.metricsPage(t), `openepp_config_reloads_total{result="failure"} 1`)
	})
	if got := r.route(t, `{"model":"m","prompt":"a"}`).Endpoints[0]; got != second {
		t.Errorf("a broken config changed routing: %s, want %s", got, second)
	}
	if lines := r.log.find("no-such-plugin"); len(lines) == 0 {
		t.Error("the rejected config's problem was not logged")
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBadFlagsAndConfigAreClearErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no endpoints", args: nil, want: "no endpoint source"},
		{name: "both configs", args: []string{"--endpoints", "127.0.0.1:1", "--config-file", "x", "--config-text", "y"}, want: "mutually exclusive"},
		{name: "bad endpoint", args: []string{"--endpoints", "nope"}, want: "want ip:port"},
		{name: "missing config file", args: []string{"--endpoints", "127.0.0.1:1", "--config-file", "/does/not/exist"}, want: "read config file"},
		{name: "broken config", args: []string{"--endpoints", "127.0.0.1:1", "--config-text", "kind: Nope"}, want: "kind"},
		{name: "unknown flag", args: []string{"--bogus"}, want: "bogus"},
		{name: "pool named twice", args: []string{"--pool-name", "a,b,a"}, want: `pool "a" is named twice`},
		{name: "empty pool in the list", args: []string{"--pool-name", "a,,b"}, want: "empty pool name"},
		{name: "old TLS", args: []string{"--endpoints", "127.0.0.1:1", "--tls-min-version", "VersionTLS11"}, want: "--tls-min-version"},
		{name: "insecure cipher", args: []string{"--endpoints", "127.0.0.1:1", "--tls-cipher-suites", "TLS_RSA_WITH_RC4_128_SHA"}, want: "TLS_RSA_WITH_RC4_128_SHA"},
		{name: "client CA alone", args: []string{"--endpoints", "127.0.0.1:1", "--metrics-client-ca-file", "ca.pem"}, want: "--metrics-cert-dir"},
		{name: "no metrics certificate", args: []string{"--endpoints", "127.0.0.1:1", "--metrics-cert-dir", "/does/not/exist"}, want: "--metrics-cert-dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), append(tc.args, "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"),
				WithLogger(logr.Discard()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestUpstreamFlagsAreAccepted runs with the flags upstream's Helm chart
// passes, so a Deployment can switch images without editing its args.
func TestUpstreamFlagsAreAccepted(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 1, 0, "--tracing=false", "--metrics-endpoint-auth=false", "--refresh-prometheus-metrics-interval=5s",
		"--total-queued-requests-metric=vllm:num_requests_waiting", "--model-server-metrics-scheme=http",
		"--enable-pprof=true", "--health-checking=false")
	r.route(t, `{"model":"m","prompt":"x"}`)
	if len(r.log.find("has no effect")) == 0 {
		t.Error("ignored flags were not reported")
	}
}
