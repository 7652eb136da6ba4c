package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// queueLedP2P places by queue alone and names P2P sources, so requests
// sharing a prompt land on servers that lack it and pull it.
const queueLedP2P = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: p2p-source-producer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
`

// TestDemoP2PPulls runs the demo with a config naming P2P sources: the
// simulated servers sit behind their sidecars, and a long prompt sent
// again and again, landing on servers that have not computed it, is pulled
// from one that has (the servers' pull counters move).
func TestDemoP2PPulls(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "p2p.yaml")
	if err := os.WriteFile(cfg, []byte(queueLedP2P), 0o600); err != nil {
		t.Fatal(err)
	}
	const servers = 3
	d := startDemo(t, servers, "--config", cfg)
	url := d.url("/v1/completions")
	sendCompletion(t, url) // waits for the gateway
	long := strings.Repeat("Summarise the incident report for the on-call team. ", 40)
	served := map[string]bool{}
	for i := 0; i < 12 && (len(served) < servers || pulled(t, d, servers) == 0); i++ {
		resp, body := post(t, url, long+fmt.Sprintf(" Question %d.", i), "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		served[resp.Header.Get("x-gateway-destination-endpoint-served")] = true
	}
	if n := pulled(t, d, servers); len(served) < 2 || n == 0 {
		t.Fatalf("served by %v, %d tokens pulled: want the prompt on several servers and pulls between them", served, n)
	}
}

// pulled sums the simulated servers' openepp_sim_kv_p2p_pull_tokens_total.
func pulled(t *testing.T, d *demoRun, servers int) int {
	t.Helper()
	total := 0
	for i := range servers {
		resp, err := http.Get("http://" + d.server(i) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "openepp_sim_kv_p2p_pull_tokens_total"); ok {
				f := strings.Fields(rest)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				total += int(v)
			}
		}
	}
	return total
}
