package epp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/dcgm"
	"github.com/openepp/openepp/pkg/sim"
)

// TestGPUUtilizationRouting runs llm-d's GPU-utilization config end to end:
// two simulated servers on one port of two loopback addresses serve
// DCGM_FI_DEV_GPU_UTIL beside their metrics, as a DCGM sidecar would on its
// port; dcgm-data-source polls them, dcgm-extractor publishes their
// GPUUtilization, and once one server is kept busy, the attribute filter
// sends every request to the other.
func TestGPUUtilizationRouting(t *testing.T) {
	port := freePort(t, "127.0.0.2")
	itl := time.Millisecond
	cfg := func(addr string) sim.Config {
		return sim.Config{Address: addr, Port: port, Latency: sim.Latency{InterTokenLatency: &itl}}
	}
	config := fmt.Sprintf(`--config-text=apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- {type: dcgm-data-source, name: dcgm, parameters: {port: %d}}
- {type: dcgm-extractor}
- type: endpoint-attribute-filter
  name: gpu-filter
  parameters:
    attribute: GPUUtilization
    producer: dcgm-extractor
    fallbackOnEmpty: true
    algorithm: {type: threshold, threshold: {operator: LessThan, value: 0.5}}
- {type: random-picker}
dataLayer:
  sources:
  - {pluginRef: dcgm, interval: 100ms, extractors: [{pluginRef: dcgm-extractor}]}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: gpu-filter}, {pluginRef: random-picker}]
`, port)
	r := launchEPPSims(t, []sim.Config{cfg("127.0.0.2"), cfg("127.0.0.3")}, 0, nil,
		func(r *running) []string { return []string{"--endpoints-file", r.file, config} })
	var eps []endpointState
	eventually(t, "both endpoints' GPU utilization published", func() bool {
		r.debugJSON(t, endpointsPath, &eps)
		n := 0
		for _, e := range eps {
			if _, ok := e.Attributes[dcgm.UtilizationKey]; ok {
				n++
			}
		}
		return n == 2
	})

	// Keep the first server busy: one long completion sent to it directly.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		body := `{"model":"sim-model","prompt":"busy","max_tokens":20000}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.servers[0]+"/v1/completions", strings.NewReader(body))
		req.Header.Set("content-type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	defer func() { cancel(); <-busy }()
	eventually(t, "the busy server's GPU utilization over 0.5", func() bool {
		r.debugJSON(t, endpointsPath, &eps)
		for _, e := range eps {
			if e.Address == r.servers[0] {
				return e.Attributes[dcgm.UtilizationKey] > 0.5
			}
		}
		return false
	})
	for range 20 {
		if d := r.route(t, `{"model":"sim-model","prompt":"hello"}`); d.DestinationHeader != r.servers[1] {
			t.Fatalf("routed to %s while %s is busy, want %s", d.DestinationHeader, r.servers[0], r.servers[1])
		}
	}
}

// freePort returns a port free on addr now.
func freePort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	port, _ := strconv.Atoi(p)
	return port
}
