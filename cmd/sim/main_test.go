package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/pdsidecar"
	"github.com/openepp/openepp/pkg/sim"
)

// flagCase is one command line and what parsing it must give.
type flagCase struct {
	name    string
	args    []string
	check   func(t *testing.T, o options)
	wantErr string
}

// flagCases is the TestParseFlags table.
var flagCases = []flagCase{
	{name: "defaults", args: nil, check: func(t *testing.T, o options) {
		if o.base.Port != 8000 || o.base.Address != "127.0.0.1" || o.instances != 1 || o.base.Profile != "fast" ||
			o.base.SchedulingPolicy != "fcfs" {
			t.Fatalf("defaults = %+v", o.base)
		}
	}},
	{name: "lists and aliases", args: []string{
		"--served-model-name", "a,b", "--served-model-name=c",
		"--lora-modules", "x,y=/path", `--lora-modules={"name":"z","path":"/p"}`,
		"--kv-cache-size", "123", "--max-num-seqs", "7", "--max-loras", "3",
	}, check: func(t *testing.T, o options) {
		got := [][]string{o.base.ServedModelNames, o.base.LoRAs}
		if diff := cmp.Diff([][]string{{"a", "b", "c"}, {"x", "y", "z"}}, got); diff != "" {
			t.Fatalf("lists (-want +got):\n%s", diff)
		}
		if c := o.base.Capacity; c.KVCacheBlocks != 123 || c.MaxNumSeqs != 7 || c.MaxLoRAs != 3 {
			t.Fatalf("capacity = %+v", c)
		}
	}},
	{name: "latency units", args: []string{
		"--time-to-first-token", "100", "--inter-token-latency=12ms", "--prefill-time-per-token", "250us",
		"--time-factor-under-load", "2",
	}, check: func(t *testing.T, o options) {
		l := o.base.Latency
		got := []time.Duration{*l.TimeToFirstToken, *l.InterTokenLatency, *l.PrefillTimePerToken}
		want := []time.Duration{100 * time.Millisecond, 12 * time.Millisecond, 250 * time.Microsecond}
		if diff := cmp.Diff(want, got); diff != "" || *l.TimeFactorUnderLoad != 2 || l.PrefillOverhead != nil {
			t.Fatalf("latency (-want +got):\n%s", diff)
		}
	}},
	{name: "faults", args: []string{"--fault-metrics-delay", "1s", "--fault-refuse-for", "2s", "--fault-die-after-tokens", "5"},
		check: func(t *testing.T, o options) {
			want := sim.Faults{MetricsDelay: time.Second, RefuseConnections: true, RefuseFor: 2 * time.Second, DieAfterTokens: 5}
			if diff := cmp.Diff(want, o.base.Faults); diff != "" {
				t.Fatalf("faults (-want +got):\n%s", diff)
			}
		}},
	{name: "instances and ports", args: []string{"--instances", "3", "--port", "9000", "--seed", "5"},
		check: func(t *testing.T, o options) {
			var got [][2]uint64
			for _, c := range o.configs() {
				got = append(got, [2]uint64{uint64(c.Port), c.Seed})
			}
			if diff := cmp.Diff([][2]uint64{{9000, 5}, {9001, 6}, {9002, 7}}, got); diff != "" {
				t.Fatalf("ports and seeds (-want +got):\n%s", diff)
			}
		}},
	{name: "pd sidecar", args: []string{"--pd-sidecar", "--pd-allowed-prefillers", "10.0.0.0/8,127.0.0.1:8001",
		"--pd-prefill-timeout", "2s", "--kv-transfer-time-per-token", "3us", "--kv-transfer-overhead", "1"},
		check: func(t *testing.T, o options) {
			l := o.base.Latency
			if !o.pdSidecar || o.pd.PrefillTimeout != 2*time.Second || *l.KVTransferPerToken != 3*time.Microsecond ||
				*l.KVTransferOverhead != time.Millisecond {
				t.Fatalf("pd options = %v %+v, latency %v %v", o.pdSidecar, o.pd, *l.KVTransferPerToken, *l.KVTransferOverhead)
			}
			if diff := cmp.Diff([]string{"10.0.0.0/8", "127.0.0.1:8001"}, o.pd.AllowedPrefillers); diff != "" {
				t.Fatalf("allowlist (-want +got):\n%s", diff)
			}
		}},
	{name: "pd defaults off", args: nil, check: func(t *testing.T, o options) {
		if o.pdSidecar || o.base.Frontend != nil || o.base.Latency.KVTransferPerToken != nil {
			t.Fatalf("P/D on by default: %v %+v", o.pdSidecar, o.base.Latency)
		}
	}},
	{name: "pd flags need the sidecar", args: []string{"--pd-allowed-prefillers", "10.0.0.0/8"}, wantErr: "need --pd-sidecar"},
	{name: "p2p connector port", args: []string{"--pd-sidecar", "--p2p-connector-port", "7777"},
		check: func(t *testing.T, o options) {
			if o.pd.P2PConnectorPort != 7777 {
				t.Fatalf("P2P connector port = %d, want 7777", o.pd.P2PConnectorPort)
			}
		}},
	{name: "p2p connector port needs the sidecar", args: []string{"--p2p-connector-port", "7777"}, wantErr: "--p2p-connector-port need --pd-sidecar"},
	{name: "scheduling policy", args: []string{"--scheduling-policy", "priority"}, check: func(t *testing.T, o options) {
		if o.base.SchedulingPolicy != "priority" {
			t.Fatalf("scheduling policy = %q, want priority", o.base.SchedulingPolicy)
		}
	}},
	{name: "lora tiers", args: []string{
		"--lora-modules", "x,y", "--pinned-loras", "y", "--max-cpu-loras", "4", "--lora-activate-delay", "5",
	}, check: func(t *testing.T, o options) {
		if o.base.Capacity.MaxCPULoRAs != 4 || *o.base.Latency.LoRAActivateDelay != 5*time.Millisecond {
			t.Fatalf("capacity %+v, activate delay %v", o.base.Capacity, *o.base.Latency.LoRAActivateDelay)
		}
		if diff := cmp.Diff([]string{"y"}, o.base.PinnedLoRAs); diff != "" {
			t.Fatalf("pinned (-want +got):\n%s", diff)
		}
	}},
	{name: "bad duration", args: []string{"--inter-token-latency", "fast"}, wantErr: "neither milliseconds"},
	{name: "bad lora json", args: []string{"--lora-modules", `{"name":`}, wantErr: "lora module JSON"},
	{name: "zero instances", args: []string{"--instances", "0"}, wantErr: "--instances"},
	{name: "port overflow", args: []string{"--port", "65535", "--instances", "2"}, wantErr: "exceeds"},
	{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected arguments"},
	{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range flagCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of run.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runInstances runs the command with args until the test ends and returns
// its "listening" lines once n have been printed; stop cancels it and
// checks it returned cleanly.
func runInstances(t *testing.T, n int, args ...string) (lines []string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &stdout, &stderr) }()
	for deadline := time.Now().Add(5 * time.Second); len(lines) < n; {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no listening lines; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
		lines = strings.FieldsFunc(stdout.String(), func(r rune) bool { return r == '\n' })
	}
	return lines, func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("run did not stop")
		}
	}
}

func TestRunServesInstancesAndStops(t *testing.T) {
	t.Parallel()
	lines, stop := runInstances(t, 2, "--port", "0", "--instances", "2", "--metrics-engine", "sglang")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "listening" || !strings.Contains(line, "metrics=sglang:/metrics") {
			t.Fatalf("unexpected line %q", line)
		}
		resp, err := (&http.Client{Transport: tr}).Get(f[1] + "/health")
		if err != nil {
			t.Fatalf("health of %s: %v", f[1], err)
		}
		resp.Body.Close()
	}
	if lines[0] == lines[1] {
		t.Fatal("two instances share an address")
	}
	stop()
}

// TestRunPDSidecar runs two instances with sidecars and disaggregates one
// request: prefill on instance 1, decode on instance 0.
func TestRunPDSidecar(t *testing.T) {
	t.Parallel()
	lines, stop := runInstances(t, 2, "--port", "0", "--instances", "2", "--pd-sidecar", "--pd-allowed-prefillers", "127.0.0.0/8")
	decoder, prefiller := strings.Fields(lines[0])[1], strings.Fields(lines[1])[1]
	if !strings.HasSuffix(lines[0], " pd-sidecar=true") {
		t.Fatalf("listening line %q does not mention the sidecar", lines[0])
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, decoder+"/v1/completions", strings.NewReader(`{"prompt":"a b c d e f g h","max_tokens":2}`))
	req.Header.Set(pdsidecar.PrefillerHeader, strings.TrimPrefix(prefiller, "http://"))
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(pdsidecar.PrefilledByHeader) != strings.TrimPrefix(prefiller, "http://") {
		t.Fatalf("disaggregated request: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	stop()
}

// TestRunP2PPull runs two instances with sidecars: a request to instance 0
// naming instance 1 as its KV cache source pulls the prefix instance 1
// holds.
func TestRunP2PPull(t *testing.T) {
	t.Parallel()
	lines, stop := runInstances(t, 2, "--port", "0", "--instances", "2", "--pd-sidecar", "--pd-allowed-prefillers", "127.0.0.0/8")
	local, source := strings.Fields(lines[0])[1], strings.Fields(lines[1])[1]
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	prompt := strings.TrimSpace(strings.Repeat("p ", 64))
	for _, url := range []string{source, local} {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/completions", strings.NewReader(`{"prompt":"`+prompt+`","max_tokens":1}`))
		if url == local {
			req.Header.Set(pdsidecar.KVSourceHeader, strings.TrimPrefix(source, "http://"))
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", url, resp.StatusCode, body)
		}
		if url == local && !strings.Contains(string(body), `"cached_tokens":63`) {
			t.Fatalf("the pulled prefix is not cached: %s", body)
		}
	}
	stop()
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"--profile nope": `unknown profile "nope"`,
		"--pd-sidecar --pd-allowed-prefillers 10.0.0.0/8,nope!": `"nope!" is not a CIDR, an IP or host:port`,
		"--kv-transfer-time-per-token -1us":                     "kvTransferPerToken: must be ≥ 0",
		"--pd-sidecar --p2p-connector-port 70000":               "not in 0..65535",
		"--scheduling-policy lifo":                              `schedulingPolicy: unknown scheduling policy "lifo"`,
	} {
		err := run(context.Background(), append([]string{"--port", "0"}, strings.Fields(args)...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run %s: error = %v, want one containing %q", args, err, want)
		}
	}
}
