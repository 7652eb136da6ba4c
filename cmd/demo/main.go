// Command demo runs the local OpenEPP demo with no cluster: simulated
// vLLM-compatible model servers, the EPP pointed at them, and a small gateway
// on localhost that asks the EPP where each request should go. `make run`
// builds the binaries and starts it; Ctrl-C stops everything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/p2psource"
)

type options struct {
	bin         string
	gatewayPort int
	simPort     int
	servers     int
	eppPort     int
	healthPort  int
	metricsPort int
	model       string
	config      string
	// objectives is the EPP's --objectives-file ("": none).
	objectives string
	// rewrites is the EPP's --model-rewrites-file ("": none).
	rewrites string
	// kvEventsPort is where the simulated servers send KV events; 0: none.
	kvEventsPort int
	// encodePerToken and encoderCacheTokens price the simulated servers'
	// multimodal encoder, so that image requests show what
	// config/multimodal-affinity.yaml saves.
	encodePerToken     time.Duration
	encoderCacheTokens int
	loras              string
	profile            string
	verbosity          int
	// prefill is how many of the servers are prefill-only; with any, the
	// others are decode servers behind the simulator's P/D sidecar.
	prefill int
	// endpointsFile holds the servers with their llm-d.ai/role labels
	// (P/D) or their pools (written by run).
	endpointsFile string
	// pools is 1, or 2: the servers are split into pool-a, serving model,
	// and pool-b, serving poolModel, behind one EPP.
	pools     int
	poolModel string
	// p2p is set when the config names P2P sources (p2p-source-producer):
	// the servers then sit behind the simulator's sidecar, which serves
	// the pulls.
	p2p bool
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	exe, _ := os.Executable()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", filepath.Dir(exe), "directory holding the sim, epp and gateway binaries")
	fs.IntVar(&o.gatewayPort, "port", 8080, "gateway port on localhost")
	fs.IntVar(&o.simPort, "sim-port", 8001, "port of the first simulated server (the others follow)")
	fs.IntVar(&o.servers, "servers", 4, "number of simulated model servers")
	fs.IntVar(&o.eppPort, "epp-port", 9002, "EPP ext_proc port")
	fs.IntVar(&o.healthPort, "epp-health-port", 9003, "EPP gRPC health port")
	fs.IntVar(&o.metricsPort, "epp-metrics-port", 9090, "EPP Prometheus metrics port")
	fs.StringVar(&o.model, "model", "meta-llama/Llama-3.1-8B-Instruct", "model the simulated servers serve")
	fs.StringVar(&o.loras, "lora-modules", "sql-lora,chat-lora", "LoRA adapters the simulated servers offer")
	fs.StringVar(&o.profile, "profile", "fast", "simulator latency profile")
	fs.IntVar(&o.verbosity, "v", 1, "EPP log verbosity (1 logs one line per decision)")
	fs.StringVar(&o.config, "config", "", "EndpointPickerConfig file for the EPP, reloaded when it changes (default: the upstream default config)")
	fs.StringVar(&o.objectives, "objectives", "", "InferenceObjective manifests giving requests priorities (x-gateway-inference-objective), e.g. manifests/examples/inferenceobjectives.yaml; reloaded when it changes")
	fs.StringVar(&o.rewrites, "model-rewrites", "", "InferenceModelRewrite manifests renaming or splitting models, e.g. manifests/examples/inferencemodelrewrites.yaml (\"llama\" for the served model); reloaded when it changes")
	fs.IntVar(&o.kvEventsPort, "kv-events-port", 5557, "the simulated servers publish their KV-cache events to 127.0.0.1 on this port, where config/precise-prefix-cache.yaml's producer binds (0: they publish none)")
	fs.DurationVar(&o.encodePerToken, "encode-time-per-token", 100*time.Microsecond, "the simulated servers' cost of encoding an image, per placeholder token (an image is 64), unless their prefix or encoder cache holds it (0: free)")
	fs.IntVar(&o.encoderCacheTokens, "encoder-cache-tokens", 1024, "each simulated server's encoder cache, in placeholder tokens (1024: 16 images)")
	fs.IntVar(&o.pools, "pools", 1, "1, or 2: the servers are split into two pools (pool-a serving --model, pool-b serving --pool-b-model) behind one EPP")
	fs.StringVar(&o.poolModel, "pool-b-model", "Qwen/Qwen3-8B", "model the servers of pool-b serve (--pools 2)")
	fs.IntVar(&o.prefill, "prefill", 0, "prefill/decode disaggregation: this many servers are labelled prefill, the rest decode (needs a P/D --config such as config/pd.yaml)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.servers < 1 {
		return nil, fmt.Errorf("--servers must be >= 1, got %d", o.servers)
	}
	if o.prefill < 0 || (o.prefill > 0 && o.prefill >= o.servers) {
		return nil, fmt.Errorf("--prefill must leave at least one decode server: got %d of %d servers", o.prefill, o.servers)
	}
	switch {
	case o.pools != 1 && o.pools != 2:
		return nil, fmt.Errorf("--pools must be 1 or 2, got %d", o.pools)
	case o.pools == 2 && o.servers < 2:
		return nil, fmt.Errorf("--pools 2 needs at least 2 servers, got %d", o.servers)
	case o.pools == 2 && o.prefill > 0:
		return nil, errors.New("--pools 2 and --prefill do not go together in the demo")
	}
	if o.prefill > 0 && o.config == "" {
		return nil, errors.New("--prefill needs a disaggregation --config, such as config/pd.yaml")
	}
	for _, file := range []struct {
		flag string
		path *string
	}{{"--objectives", &o.objectives}, {"--model-rewrites", &o.rewrites}} {
		if *file.path == "" {
			continue
		}
		abs, err := filepath.Abs(*file.path)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file.flag, err)
		}
		*file.path = abs
	}
	if o.config != "" {
		abs, err := filepath.Abs(o.config)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		o.config = abs
		p2p, err := namesP2PSources(abs)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		o.p2p = p2p
	}
	return o, nil
}

// namesP2PSources reports whether the config at path lists a
// p2p-source-producer.
func namesP2PSources(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	cfg, err := config.Load(data)
	if err != nil {
		return false, err
	}
	for _, p := range cfg.Plugins {
		if p.Type == p2psource.Type {
			return true, nil
		}
	}
	return false, nil
}

// run starts the three processes in dependency order, waits until each is
// usable, prints how to try it, and stops everything when ctx ends or any
// process exits.
func run(ctx context.Context, o *options) error {
	var procs group
	defer procs.stop(5 * time.Second)
	if o.prefill > 0 || o.pools == 2 {
		dir, err := os.MkdirTemp("", "openepp-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.endpointsFile = filepath.Join(dir, "endpoints.yaml")
		if err := os.WriteFile(o.endpointsFile, []byte(o.fileEndpoints()), 0o600); err != nil {
			return err
		}
	}

	sims := []struct {
		name string
		args []string
		n    int
	}{{"sim", o.simArgs(o.firstPool(), o.simPort, o.model, o.loras), o.firstPool()}}
	if o.pools == 2 {
		n := o.servers - o.firstPool()
		sims[0].name = "sim-a"
		sims = append(sims, struct {
			name string
			args []string
			n    int
		}{"sim-b", o.simArgs(n, o.simPort+o.firstPool(), o.poolModel, ""), n})
	}
	for _, sc := range sims {
		sim, err := procs.start(ctx, sc.name, filepath.Join(o.bin, "sim"), sc.args...)
		if err != nil {
			return err
		}
		if err := sim.waitForLines(ctx, "listening ", sc.n, 20*time.Second); err != nil {
			return err
		}
	}
	// The demo has no trace collector: keep the EPP's trace context but
	// export nothing, unless the caller points it at one.
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	if _, err := procs.start(ctx, "epp", filepath.Join(o.bin, "epp"), o.eppArgs()...); err != nil {
		return err
	}
	if err := waitHealthy(ctx, fmt.Sprintf("127.0.0.1:%d", o.healthPort), 20*time.Second); err != nil {
		return fmt.Errorf("epp did not become ready: %w", err)
	}
	if _, err := procs.start(ctx, "gateway", filepath.Join(o.bin, "gateway"), o.gatewayArgs()...); err != nil {
		return err
	}
	if err := waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", o.gatewayPort), 20*time.Second); err != nil {
		return fmt.Errorf("gateway did not start: %w", err)
	}
	o.printWelcome()
	return procs.wait(ctx)
}

// firstPool is how many servers the first sim process runs: all, or
// pool-a's half (rounded up) with two pools.
func (o *options) firstPool() int {
	if o.pools == 2 {
		return (o.servers + 1) / 2
	}
	return o.servers
}

// simArgs are the arguments of a sim process running n servers of model
// from port on.
func (o *options) simArgs(n, port int, model, loras string) []string {
	args := []string{"--instances", strconv.Itoa(n), "--port", strconv.Itoa(port),
		"--model", model, "--lora-modules", loras, "--max-loras", "1", "--profile", o.profile}
	if n := len(strings.Split(loras, ",")); loras != "" && n > 1 {
		// vLLM loads its static adapters into the host cache at start; one
		// GPU slot makes where each adapter lives matter (lora-load-state).
		args = append(args, "--max-cpu-loras", strconv.Itoa(n))
	}
	if o.prefill > 0 || o.p2p {
		args = append(args, "--pd-sidecar")
	}
	if o.kvEventsPort > 0 {
		args = append(args, "--kv-events-endpoint", fmt.Sprintf("tcp://127.0.0.1:%d", o.kvEventsPort))
	}
	if o.encodePerToken > 0 {
		args = append(args, "--encode-time-per-token", o.encodePerToken.String(), "--encoder-cache-tokens", strconv.Itoa(o.encoderCacheTokens))
	}
	if o.objectives != "" { // the servers order their queues by the priority the EPP writes
		args = append(args, "--scheduling-policy", "priority")
	}
	return args
}

// fileEndpoints is the endpoints file of a P/D demo (the first o.prefill
// servers prefill, the others decode) or of a two-pool one.
func (o *options) fileEndpoints() string {
	var b strings.Builder
	for i := range o.servers {
		if o.pools == 2 {
			pool := "pool-a"
			if i >= o.firstPool() {
				pool = "pool-b"
			}
			fmt.Fprintf(&b, "- {name: %s-%d, address: 127.0.0.1, port: %d, pool: %s}\n", pool, i, o.simPort+i, pool)
			continue
		}
		role := "decode"
		if i < o.prefill {
			role = "prefill"
		}
		fmt.Fprintf(&b, "- {name: %s-%d, address: 127.0.0.1, port: %d, labels: {llm-d.ai/role: %s}}\n", role, i, o.simPort+i, role)
	}
	return b.String()
}

func (o *options) endpoints() string {
	eps := make([]string, o.servers)
	for i := range eps {
		eps[i] = fmt.Sprintf("127.0.0.1:%d", o.simPort+i)
	}
	return strings.Join(eps, ",")
}

func (o *options) eppArgs() []string {
	source := []string{"--endpoints", o.endpoints()}
	if o.endpointsFile != "" {
		source = []string{"--endpoints-file", o.endpointsFile}
	}
	args := append(source, "--bind-address", "127.0.0.1",
		"--grpc-port", strconv.Itoa(o.eppPort), "--grpc-health-port", strconv.Itoa(o.healthPort),
		"--metrics-port", strconv.Itoa(o.metricsPort), "--v", strconv.Itoa(o.verbosity), "--zap-encoder", "console")
	if o.config != "" {
		args = append(args, "--config-file", o.config)
	}
	if o.objectives != "" {
		args = append(args, "--objectives-file", o.objectives, "--engine-priority=on")
	}
	if o.rewrites != "" {
		args = append(args, "--model-rewrites-file", o.rewrites)
	}
	return args
}

func (o *options) gatewayArgs() []string {
	return []string{"--listen", fmt.Sprintf("127.0.0.1:%d", o.gatewayPort), "--epp", fmt.Sprintf("127.0.0.1:%d", o.eppPort)}
}

func (o *options) printWelcome() {
	fmt.Printf(`
OpenEPP demo is up: %d simulated servers (%s), EPP on :%d, gateway on localhost:%d.

Try:
  curl -si localhost:%d/v1/completions -H 'content-type: application/json' \
    -d '{"model":"%s","prompt":"Write a haiku about load balancing","max_tokens":20}'

  curl -sN localhost:%d/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"%s","messages":[{"role":"user","content":"hi"}],"stream":true}'

The x-gateway-destination-endpoint-served response header names the server that answered;
EPP metrics: http://localhost:%d/metrics. Press Ctrl-C to stop.

`, o.servers, o.endpoints(), o.eppPort, o.gatewayPort, o.gatewayPort, o.model, o.gatewayPort, o.model, o.metricsPort)
	if o.objectives != "" {
		fmt.Printf(`Objectives from %s: add -H 'x-gateway-inference-objective: <name>' to a request to give it that
objective's priority (per-priority series on the metrics page). The EPP writes it into the body and the
servers schedule by it (--engine-priority, vLLM's --scheduling-policy priority).

`, o.objectives)
	}
	if o.rewrites != "" {
		fmt.Printf(`Model rewrites from %s: a request for a model a rule matches is sent as the rule's target
(inference_extension_model_rewrite_decisions_total counts them); the client reads back the name it asked for.

`, o.rewrites)
	}
	if o.pools == 2 {
		fmt.Printf(`Two pools behind one EPP: pool-a (the first %d servers) serves %s and pool-b (the others) %s.
Each request goes to the pool serving its model (the EPP polls every server's /v1/models), or to the
pool a header names (a gateway filter can set it):
  curl -si localhost:%d/v1/completions -H 'content-type: application/json' \
    -d '{"model":"%s","prompt":"hi","max_tokens":5}'
  curl -si localhost:%d/v1/completions -H 'content-type: application/json' -H 'x-openepp-pool: pool-a' \
    -d '{"model":"%s","prompt":"hi","max_tokens":5}'
A model neither pool serves gets a 404 naming the pools.

`, o.firstPool(), o.model, o.poolModel, o.gatewayPort, o.poolModel, o.gatewayPort, o.model)
	}
	if o.prefill > 0 {
		fmt.Printf(`Prefill/decode: the first %d server(s) prefill, the others decode behind the simulator's P/D sidecar.
A prompt of more than about 1,000 characters not yet cached on the decode server is prefilled remotely:
the response header x-openepp-prefilled-by names the prefill server.

`, o.prefill)
	}
	if o.p2p {
		fmt.Print(`P2P KV-cache sharing: every server sits behind the simulator's sidecar. When the EPP sends a request
away from the server holding its prompt's prefix, it names that server in x-kv-cache-source-host-port
and the chosen server pulls the blocks instead of computing them (its usage reports them as cached;
the sim's openepp_sim_kv_p2p_pull_tokens_total counts them).

`)
	}
}
