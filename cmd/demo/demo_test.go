package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// TestDemoEndToEnd builds the binaries, runs `demo` as `make run` does
// (with the shipped flow-control config, so a request also passes the
// EPP's queue), sends a completion through the gateway, checks the served
// endpoint, and stops everything with Ctrl-C (SIGINT).
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/...")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	base := freePorts(t, 8)
	var out bytes.Buffer
	demo := exec.Command(filepath.Join(bin, "demo"), "--bin", bin, "--port", fmt.Sprint(base),
		"--epp-port", fmt.Sprint(base+1), "--epp-health-port", fmt.Sprint(base+2), "--epp-metrics-port", fmt.Sprint(base+3),
		"--sim-port", fmt.Sprint(base+4), "--servers", "4", "--config", "../../config/flow-control.yaml")
	demo.Stdout, demo.Stderr = &out, &out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- demo.Wait() }()
	defer func() {
		if demo.ProcessState == nil {
			_ = demo.Process.Kill()
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	}()

	served := sendCompletion(t, fmt.Sprintf("http://127.0.0.1:%d/v1/completions", base))
	var simPorts []string
	for p := base + 4; p < base+8; p++ {
		simPorts = append(simPorts, fmt.Sprintf("127.0.0.1:%d", p))
	}
	if !strings.Contains(strings.Join(simPorts, ","), served) || served == "" {
		t.Errorf("served endpoint %q is not one of the simulated servers %v", served, simPorts)
	}

	_ = demo.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
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

// TestBadFlags: flags the demo cannot use stop it before anything starts.
func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--servers", "0"}, {"--config", "no/such/config.yaml"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
