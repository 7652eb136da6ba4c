package epp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/gateway"
	"github.com/openepp/openepp/pkg/sim"
)

// pickerConfig is a config of the given apiVersion that picks at random.
func pickerConfig(apiVersion string) string {
	return "--config-text=apiVersion: " + apiVersion + `
kind: EndpointPickerConfig
plugins:
- type: random-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: random-picker}]
`
}

// TestEnginePriority runs the EPP over a vLLM and an SGLang server (told
// apart by their engine-type labels, as the metrics scraper tells them
// apart) and checks the priority member of the forwarded bodies: vLLM's
// negated, SGLang's as is; on by default only with an llm-d config.
func TestEnginePriority(t *testing.T) {
	tests := []struct {
		name string
		args []string
		on   bool
	}{
		{name: "llm-d config", args: []string{pickerConfig("llm-d.ai/v1alpha1")}, on: true},
		{name: "GIE config", args: []string{pickerConfig("inference.networking.x-k8s.io/v1alpha1")}},
		{name: "GIE config, on", args: []string{pickerConfig("inference.networking.x-k8s.io/v1alpha1"), "--engine-priority=on"}, on: true},
		{name: "llm-d config, off", args: []string{pickerConfig("llm-d.ai/v1"), "--engine-priority=off"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--objectives-file", objectivesFile(t)}, tc.args...)
			r := launchEPPSims(t, []sim.Config{{MetricsEngine: sim.EngineVLLM}, {MetricsEngine: sim.EngineSGLang}}, 0, nil,
				func(r *running) []string { return append([]string{"--endpoints-file", r.file}, args...) })
			want := map[string]string{r.servers[0]: "-3", r.servers[1]: "3"} // objective "critical" has priority 3
			seen := map[string]bool{}
			for range 30 {
				dest, got := forwardedPriority(t, r, "critical")
				wanted := ""
				if tc.on {
					wanted = want[dest]
				}
				if got != wanted {
					t.Fatalf("sent to %s with priority %q, want %q", dest, got, wanted)
				}
				seen[dest] = true
			}
			if len(seen) != 2 {
				t.Errorf("30 random picks reached only %v", seen)
			}
		})
	}
}

// TestEnginePriorityFlags checks that bad values are refused at start.
func TestEnginePriorityFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--engine-priority=maybe"},
		{"--engine-priority-order=vllm"},
		{"--engine-priority-order=vllm=sideways"},
	} {
		err := Run(context.Background(), append([]string{"--endpoints", "127.0.0.1:1"}, args...))
		if err == nil || !strings.Contains(err.Error(), "--engine-priority") {
			t.Errorf("Run(%v) = %v, want an --engine-priority error", args, err)
		}
	}
}

// TestEnginePriorityThroughTheServer runs the proxy, the EPP and a vLLM
// simulator seating one request at a time under --scheduling-policy
// priority: a low-priority request holds the seat, two more wait in the
// server's queue, and a critical one arrives last. With engine priority the server
// starts the critical request next; without, it waits behind both.
func TestEnginePriorityThroughTheServer(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			itl := 2 * time.Millisecond
			cfg := sim.Config{SchedulingPolicy: "priority", Capacity: sim.Capacity{MaxNumSeqs: 1},
				Latency: sim.Latency{InterTokenLatency: &itl}}
			// Not sheddable (priority >= 0), so legacy admission never sheds
			// the low class while the EPP's first scrape is pending.
			objectives := filepath.Join(t.TempDir(), "objectives.yaml")
			doc := "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: %s}\nspec: {priority: %d}\n"
			if err := os.WriteFile(objectives, []byte(fmt.Sprintf(doc, "low", 1)+"---\n"+fmt.Sprintf(doc, "critical", 3)), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"--objectives-file", objectives, "--engine-priority=" + map[bool]string{true: "on", false: "off"}[on]}
			r := launchEPPSims(t, []sim.Config{cfg}, 0, nil, func(r *running) []string { return append([]string{"--endpoints-file", r.file}, args...) })
			gw, err := gateway.New(gateway.Options{ExtProc: r.client})
			if err != nil {
				t.Fatal(err)
			}
			front := httptest.NewServer(gw)
			t.Cleanup(front.Close)
			t.Cleanup(gw.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			var mu sync.Mutex
			var order []string
			var wg sync.WaitGroup
			send := func(name, objective string, maxTokens int) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := fmt.Sprintf(`{"model":"sim-model","prompt":"%s","max_tokens":%d}`, name, maxTokens)
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, front.URL+"/v1/completions", strings.NewReader(body))
					req.Header.Set("content-type", "application/json")
					req.Header.Set("x-gateway-inference-objective", objective)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s: status %d", name, resp.StatusCode)
					}
					mu.Lock()
					order = append(order, name)
					mu.Unlock()
				}()
			}
			waiting := func(n int) {
				eventually(t, fmt.Sprintf("%d requests waiting in the server", n), func() bool { return r.sims[0].EngineMetrics().Waiting == n })
			}
			send("holder", "low", 1000) // 2 s: time to queue the others behind it
			eventually(t, "the holder to run", func() bool { return r.sims[0].EngineMetrics().Running == 1 })
			send("low-1", "low", 50)
			waiting(1)
			send("low-2", "low", 50)
			waiting(2)
			// Completions are ordered as the client sees them end, so each
			// request runs long enough (25 tokens: 50 ms) that a slow
			// response path cannot swap it with the one the server ran before.
			send("critical", "critical", 25)
			waiting(3)
			wg.Wait()
			want := []string{"holder", "low-1", "low-2", "critical"}
			if on {
				want = []string{"holder", "critical", "low-1", "low-2"}
			}
			if !slices.Equal(order, want) {
				t.Errorf("completion order %v, want %v", order, want)
			}
		})
	}
}

// TestEnginePriorityFollowsReload checks --engine-priority=auto across a
// config reload: a GIE file writes no priority, the same file rewritten as
// an llm-d one does, from the reload on.
func TestEnginePriorityFollowsReload(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	write := func(apiVersion string) {
		t.Helper()
		text := strings.TrimPrefix(pickerConfig(apiVersion), "--config-text=")
		if err := os.WriteFile(cfg+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".tmp", cfg); err != nil { // atomically, as a ConfigMap update
			t.Fatal(err)
		}
	}
	write("inference.networking.x-k8s.io/v1alpha1")
	objectives := objectivesFile(t)
	r := launchEPPSims(t, []sim.Config{{MetricsEngine: sim.EngineVLLM}}, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--objectives-file", objectives, "--config-file", cfg}
	})
	priority := func() string {
		_, p := forwardedPriority(t, r, "critical")
		return p
	}
	if got := priority(); got != "" {
		t.Fatalf("GIE config: priority %q written", got)
	}
	write("llm-d.ai/v1")
	eventually(t, "the llm-d config's engine priority", func() bool { return priority() == "-3" })
	write("inference.networking.x-k8s.io/v1alpha1")
	eventually(t, "the GIE config again", func() bool { return priority() == "" })
}

// forwardedPriority sends a request of objective through r and returns
// where it went and the raw "priority" member of the body forwarded there
// ("" when none).
func forwardedPriority(t *testing.T, r *running, objective string) (dest, priority string) {
	t.Helper()
	d, err := r.client.RoundTrip(context.Background(), objectiveRequest(objective))
	if err != nil || d.Immediate != nil {
		t.Fatalf("request not routed: %v %+v", err, d)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(d.Body, &body); err != nil {
		t.Fatalf("forwarded body %s: %v", d.Body, err)
	}
	return d.DestinationHeader, string(body["priority"])
}
