package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/openepp/openepp/examples/custom-epp/zoneaffinity"
	"github.com/openepp/openepp/pkg/epp"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
)

// TestCustomBinaryRoutesByZone runs the EPP exactly as main does (with the
// out-of-tree plugin) against three simulated servers in two zones and
// checks that requests follow the client's zone header.
func TestCustomBinaryRoutesByZone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	var entries string
	zones := map[string]string{}
	for i, zone := range []string{"east", "west", "west"} {
		inst, err := sim.Start(ctx, sim.Config{Address: "127.0.0.1", Port: 0})
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		host, port, _ := net.SplitHostPort(inst.HostPort())
		entries += fmt.Sprintf("- {name: s%d, address: %s, port: %s, labels: {zone: %s}}\n", i, host, port, zone)
		zones[inst.HostPort()] = zone
	}
	epsFile := filepath.Join(dir, "endpoints.yaml")
	if err := os.WriteFile(epsFile, []byte(entries), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan epp.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- epp.Run(ctx, []string{"--endpoints-file", epsFile, "--config-file", "config.yaml",
			"--bind-address", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0",
			"--secure-serving=false"},
			epp.WithPlugins(zoneaffinity.Registration()), epp.WithLogger(testr.New(t)),
			epp.WithReadyCallback(func(a epp.Addrs) { addrs <- a }))
	}()
	var a epp.Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("epp exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("epp did not start")
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := epp.WaitReady(wctx, a.Health); err != nil {
		t.Fatal(err)
	}
	client, err := extproc.Dial(ctx, a.GRPC, extproc.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for i, zone := range []string{"east", "west", "east", "west"} {
		d, err := client.RoundTrip(ctx, extproc.Request{Method: "POST", Path: "/v1/completions",
			Headers: map[string][]string{"content-type": {"application/json"}, "x-client-zone": {zone}},
			Body:    []byte(`{"model":"m","prompt":"hello ` + strconv.Itoa(i) + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if d.Immediate != nil {
			t.Fatalf("immediate response %d: %s", d.Immediate.Status, d.Immediate.Body)
		}
		if got := zones[d.Endpoints[0]]; got != zone {
			t.Errorf("request from %s routed to %s in zone %q", zone, d.Endpoints[0], got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("epp: %v", err)
	}
}

// TestCustomBinaryTimesItsConfig: `cost` (a subcommand of every binary
// built on epp.Main) times a config that uses the out-of-tree plugin.
func TestCustomBinaryTimesItsConfig(t *testing.T) {
	var out strings.Builder
	err := epp.Cost(context.Background(), []string{"--config", "config.yaml", "--endpoints", "10", "--duration", "40ms"}, &out,
		epp.WithPlugins(zoneaffinity.Registration()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "config.yaml") || !strings.Contains(out.String(), "× baseline") {
		t.Errorf("cost output:\n%s", out.String())
	}
}
