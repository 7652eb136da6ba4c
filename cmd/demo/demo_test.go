package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePorts returns n free consecutive loopback ports.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	// Below Linux's ephemeral range (32768 and up by default): a port there
	// can be taken by any outgoing connection between this check and the
	// demo's bind, as parallel tests make many.
	const low, span = 10000, 22000 // ports 10000 … 31999
	start := os.Getpid() % span
	for i := 0; i < span; i += n + 7 {
		base := low + (start+i)%span
		if base+n > low+span {
			continue
		}
		ok := true
		var ls []net.Listener
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}

// demoRun is one running `demo` process.
type demoRun struct {
	base   int // gateway port; the EPP's three ports follow, then the servers'
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
}

// startDemo builds the binaries and runs `demo` as `make run` does, on free
// ports, with args added; the demo is killed at cleanup if still running.
func startDemo(t *testing.T, servers int, args ...string) *demoRun {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/...")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	d := &demoRun{base: freePorts(t, 4+servers), exited: make(chan struct{})}
	var out bytes.Buffer
	d.cmd = exec.Command(filepath.Join(bin, "demo"), append([]string{"--bin", bin, "--port", fmt.Sprint(d.base),
		"--epp-port", fmt.Sprint(d.base + 1), "--epp-health-port", fmt.Sprint(d.base + 2), "--epp-metrics-port", fmt.Sprint(d.base + 3),
		"--sim-port", fmt.Sprint(d.base + 4), "--servers", fmt.Sprint(servers)}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = &out, &out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	return d
}

// url is the gateway's URL for path.
func (d *demoRun) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", d.base, path) }

// server is the address of simulated server i.
func (d *demoRun) server(i int) string { return fmt.Sprintf("127.0.0.1:%d", d.base+4+i) }

// TestDemoEndToEnd runs `demo` as `make run` does (with the shipped
// flow-control config, so a request also passes the EPP's queue, and the
// example objectives and model alias), sends a completion through the
// gateway, checks the served endpoint, and stops everything with Ctrl-C
// (SIGINT).
func TestDemoEndToEnd(t *testing.T) {
	d := startDemo(t, 4, "--config", "../../config/flow-control.yaml", "--objectives", "../../manifests/examples/inferenceobjectives.yaml",
		"--model-rewrites", "../../manifests/examples/inferencemodelrewrites.yaml")
	served := sendCompletion(t, d.url("/v1/completions"))
	var simPorts []string
	for i := range 4 {
		simPorts = append(simPorts, d.server(i))
	}
	if !strings.Contains(strings.Join(simPorts, ","), served) || served == "" {
		t.Errorf("served endpoint %q is not one of the simulated servers %v", served, simPorts)
	}
	checkAgentConversation(t, d)
	checkObjective(t, d)
	checkAlias(t, d)

	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15s of Ctrl-C")
	}
	for _, p := range simPorts {
		if c, err := net.DialTimeout("tcp", p, 200*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("simulated server %s still listening after the demo stopped", p)
		}
	}
}

// TestDemoDisaggregated runs the P/D demo (one prefill and two decode
// servers behind the simulator's sidecar, config/pd.yaml): a long prompt is
// prefilled on the prefill server and decoded on a decode server; a short
// one, and the same long one again (now cached on its decode server), stay
// decode-only.
func TestDemoDisaggregated(t *testing.T) {
	d := startDemo(t, 3, "--prefill", "1", "--config", "../../config/pd.yaml")
	url := d.url("/v1/completions")
	sendCompletion(t, url) // waits for the gateway
	prefill := d.server(0)
	long := strings.Repeat("Tell me about disaggregated serving. ", 60) // ~2,200 bytes, ~550 tokens
	cases := []struct {
		name, prompt, prefilledBy, spoof string
	}{
		{name: "long prompt", prompt: long, prefilledBy: prefill},
		// The EPP strips a prefiller the client names itself: no prefill
		// call, so no fallback either.
		{name: "short prompt naming its own prefiller", prompt: "Write a haiku about load balancing", spoof: "127.0.0.1:1"},
		{name: "long prompt again, cached on its decode server", prompt: long},
	}
	for _, tc := range cases {
		resp, body := post(t, url, tc.prompt, tc.spoof)
		served := resp.Header.Get("x-gateway-destination-endpoint-served")
		if served == "" || served == prefill {
			t.Errorf("%s: served by %q, want a decode server", tc.name, served)
		}
		if got, fb := resp.Header.Get("x-openepp-prefilled-by"), resp.Header.Get("x-openepp-pd-fallback"); got != tc.prefilledBy || fb != "" {
			t.Errorf("%s: prefilled by %q, want %q (fallback %q); body %s", tc.name, got, tc.prefilledBy, fb, body)
		}
	}
}

// post sends one completion, with prefiller as the client's own
// x-prefiller-host-port unless empty, and returns the response with its
// body read.
func post(t *testing.T, url, prompt, prefiller string) (*http.Response, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":%q,"max_tokens":5}`, prompt)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	if prefiller != "" {
		req.Header.Set("x-prefiller-host-port", prefiller)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	return resp, string(data)
}

// checkObjective sends a request naming the Kubernetes example's
// interactive objective and finds its priority on the EPP's metrics page.
func checkObjective(t *testing.T, d *demoRun) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.url("/v1/completions"),
		strings.NewReader(`{"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"urgent","max_tokens":2}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-gateway-inference-objective", "interactive")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("interactive request: status %d", resp.StatusCode)
	}
	page := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", d.base+3))
	if !strings.Contains(page, `priority="10"`) {
		t.Errorf("no series of the interactive objective's priority 10 on the EPP's metrics page")
	}
}

// checkAlias asks for "llama", the example InferenceModelRewrite's alias:
// the server is sent the model it serves, and the client reads back the
// name it asked for.
func checkAlias(t *testing.T, d *demoRun) {
	t.Helper()
	resp, err := http.Post(d.url("/v1/completions"), "application/json",
		strings.NewReader(`{"model":"llama","prompt":"alias","max_tokens":2}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"model":"llama"`) {
		t.Errorf("model llama: status %d, body %s", resp.StatusCode, body)
	}
	page := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", d.base+3))
	if !strings.Contains(page, `inference_extension_model_rewrite_decisions_total{model_name="llama",model_rewrite_name="llama-alias",target_model="meta-llama/Llama-3.1-8B-Instruct"} 1`) {
		t.Errorf("no rewrite of llama by llama-alias counted on the EPP's metrics page")
	}
}

// sendCompletion waits for the gateway and returns the served endpoint.
func sendCompletion(t *testing.T, url string) string {
	t.Helper()
	body := `{"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"Write a haiku about load balancing","max_tokens":5}`
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, data)
			}
			if !strings.Contains(string(data), `"usage"`) {
				t.Errorf("completion has no usage: %s", data)
			}
			return resp.Header.Get("x-gateway-destination-endpoint-served")
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway never answered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAgentConversation plays a three-turn Anthropic Messages
// conversation through the gateway as Claude Code sends it (a billing block
// with a new hash in every request's system prompt, the last turn
// streamed): every turn is answered in Anthropic's format, and the later
// turns follow the first to the server holding its prefix.
func checkAgentConversation(t *testing.T, d *demoRun) {
	t.Helper()
	type turn struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	convo := []turn{{"user", strings.Repeat("Refactor the scheduler package and explain each step. ", 30)}}
	var first string
	for i := range 3 {
		body, _ := json.Marshal(map[string]any{
			"model": "meta-llama/Llama-3.1-8B-Instruct", "max_tokens": 5, "stream": i == 2, "messages": convo,
			"system": []map[string]string{
				{"type": "text", "text": fmt.Sprintf("x-anthropic-billing-header: cc_version=2.1.7; cch=%05d;", 7919*(i+1))},
				{"type": "text", "text": "You are an interactive coding agent."},
			},
		})
		resp, err := http.Post(d.url("/v1/messages"), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := `"type":"message"`
		if i == 2 {
			want = "event: message_stop"
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), want) {
			t.Fatalf("turn %d: status %d: %s", i, resp.StatusCode, data)
		}
		served := resp.Header.Get("x-gateway-destination-endpoint-served")
		if i == 0 {
			first = served
		} else if served != first {
			t.Errorf("turn %d served by %s, the conversation's first turn by %s", i, served, first)
		}
		convo = append(convo, turn{"assistant", "Done."}, turn{"user", fmt.Sprintf("Now step %d.", i+2)})
	}
}

// TestBadFlags: flags the demo cannot use stop it before anything starts.
// TestDemoTwoPools runs `demo --pools 2`: a request for each pool's model
// is served by that pool's servers; a model of neither is a 404 naming
// the pools.
func TestDemoTwoPools(t *testing.T) {
	d := startDemo(t, 4, "--pools", "2")
	send := func(model string) (int, string, string) {
		body := `{"model":"` + model + `","prompt":"hi","max_tokens":3}`
		resp, err := http.Post(d.url("/v1/completions"), "application/json", strings.NewReader(body))
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("x-gateway-destination-endpoint-served"), string(data)
	}
	want := map[string][]string{"meta-llama/Llama-3.1-8B-Instruct": {d.server(0), d.server(1)}, "Qwen/Qwen3-8B": {d.server(2), d.server(3)}}
	deadline := time.Now().Add(60 * time.Second)
	for model, servers := range want {
		for {
			status, served, body := send(model)
			if status == http.StatusOK {
				if !slices.Contains(servers, served) {
					t.Errorf("%s served by %q, want one of %v", model, served, servers)
				}
				break
			}
			if time.Now().After(deadline) { // until the gateway is up and the model lists are polled
				t.Fatalf("%s: status %d %s", model, status, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if status, _, body := send("gpt-4"); status != http.StatusNotFound || !strings.Contains(body, "pool-a, pool-b") {
		t.Errorf("a model of neither pool: %d %s, want 404 naming the pools", status, body)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--servers", "0"}, {"--config", "no/such/config.yaml"},
		{"--servers", "2", "--prefill", "2", "--config", "../../config/pd.yaml"}, {"--prefill", "1"},
		{"--pools", "3"}, {"--servers", "1", "--pools", "2"}, {"--pools", "2", "--prefill", "1", "--config", "../../config/pd.yaml"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestDemoPreciseRouting runs the demo with config/precise-prefix-cache.yaml
// (its events socket moved to a free loopback port): the simulated servers
// publish their KV events, the EPP tokenizes on them, and a prompt sent
// directly to one server, without the EPP, is then routed there.
func TestDemoPreciseRouting(t *testing.T) {
	// startDemo takes the first 7 free ports from where freePorts starts:
	// the events socket takes the 8th.
	ports := freePorts(t, 8) + 7
	text, err := os.ReadFile("../../config/precise-prefix-cache.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "precise.yaml")
	text = bytes.ReplaceAll(text, []byte("tcp://*:5557"), []byte(fmt.Sprintf("tcp://127.0.0.1:%d", ports)))
	if err := os.WriteFile(cfg, text, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDemo(t, 3, "--config", cfg, "--kv-events-port", fmt.Sprint(ports))
	sendCompletion(t, d.url("/v1/completions")) // waits for the gateway
	holder := d.server(2)
	system := strings.Repeat("You route requests to the server that holds their prefix. ", 40)
	chat := func(base, question string) string {
		body, _ := json.Marshal(map[string]any{"model": "meta-llama/Llama-3.1-8B-Instruct", "max_tokens": 2,
			"messages": []map[string]string{{"role": "system", "content": system}, {"role": "user", "content": question}}})
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chat via %s: status %d", base, resp.StatusCode)
		}
		return resp.Header.Get("x-gateway-destination-endpoint-served")
	}
	// The servers' first events go before their sockets connect: warm the
	// holder directly (new questions, same system prompt) until the EPP
	// has its blocks; nothing goes through the gateway before.
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", d.base+3)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; !strings.Contains(get(t, metrics), `openepp_precise_prefix_events_total{outcome="stored"`); i++ {
		if time.Now().After(deadline) {
			t.Fatal("the EPP never received KV events")
		}
		chat("http://"+holder, fmt.Sprintf("warm-up %d", i))
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 3 {
		if got := chat(d.url(""), fmt.Sprintf("question %d", i)); got != holder {
			t.Fatalf("request %d served by %s, want %s, which holds its prefix", i, got, holder)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}
