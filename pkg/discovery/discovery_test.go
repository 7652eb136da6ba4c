package discovery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
)

func TestParseList(t *testing.T) {
	t.Parallel()
	got, err := ParseList(" 10.0.0.1:8000, [::1]:9000 ,")
	if err != nil {
		t.Fatal(err)
	}
	want := []endpoint.Spec{{Name: "10.0.0.1:8000", Address: "10.0.0.1", Port: 8000}, {Name: "[::1]:9000", Address: "::1", Port: 9000}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	for _, bad := range []string{"10.0.0.1", "host:80", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:1,10.0.0.1:1"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text string
		want       []string
		errs       []string
	}{
		{name: "list", text: "- address: 10.0.0.1\n  port: 8000\n  labels: {role: decode}\n- name: b\n  address: 10.0.0.2\n  port: 8001\n",
			want: []string{"10.0.0.1:8000", "b"}},
		{name: "object form", text: "endpoints:\n- {address: 10.0.0.1, port: 8000}\n", want: []string{"10.0.0.1:8000"}},
		{name: "all problems", text: "- {address: nope, port: 1}\n- {address: 10.0.0.1, port: 0}\n",
			errs: []string{"endpoints[0]", "not an IP", "endpoints[1]", "port 0"}},
		{name: "unknown key", text: "- {address: 10.0.0.1, port: 1, prot: 2}\n",
			errs: []string{`endpoints[0]: unknown field "prot" (known: name, namespace, address, port, metricsPort, metricsHost, node, nodeAddress, labels, pool)`}},
		{name: "node address not an IP", text: "- {name: a, address: 10.0.0.1, port: 1, nodeAddress: gpu-node-1}\n",
			errs: []string{`endpoints[0] (a): nodeAddress "gpu-node-1" is not an IP address`}},
		{name: "node not a string", text: "- {name: a, address: 10.0.0.1, port: 1, node: [n]}\n",
			errs: []string{"endpoints[0]: node: want string, got array"}},
		{name: "unknown top-level key", text: "endpoints: []\nendpoint: []\n", errs: []string{`unknown field "endpoint" (known: endpoints)`}},
		{name: "endpoints not a list", text: "endpoints: {name: a}\n", errs: []string{"endpoints: want a list, got object"}},
		{name: "entry not an object", text: "- 10.0.0.1:8000\n", errs: []string{"endpoints[0]: want an object of name, namespace, address, port"}},
		{name: "problems of one entry on its line", text: "- {name: a, address: nope, port: \"x\"}\n",
			errs: []string{`endpoints[0] (a): address "nope" is not an IP address (the proxy dials it directly); port "x" is not a number`}},
		{name: "not yaml", text: "::::\n\t-", errs: []string{"parse endpoints file"}},
		{name: "pools", text: "- {name: a, address: 10.0.0.1, port: 1, pool: llama}\n- {name: b, address: 10.0.0.2, port: 1, pool: qwen}\n",
			want: []string{"a", "b"}},
		{name: "pools on some entries only", text: "- {name: a, address: 10.0.0.1, port: 1, pool: llama}\n- {name: b, address: 10.0.0.2, port: 1}\n",
			errs: []string{"entries b name no pool while others do"}},
		{name: "llm-d string port", text: "endpoints:\n- {name: vllm-0, address: 10.0.0.1, port: \"8080\"}\n", want: []string{"vllm-0"}},
		{name: "every bad entry", text: `endpoints:
- {name: a, address: 10.0.0.1, port: "80x"}
- {name: b, address: 10.0.0.1, port: "70000"}
- {name: c, address: 10.0.0.1, port: 8.5}
- {name: d, address: 10.0.0.1, port: "1", metricsHost: "10.0.0.1"}
- {name: e, address: 10.0.0.1, port: "1", metricsHost: "10.0.0.2:9000"}
- {name: f, address: 10.0.0.1, port: "1", metricsHost: "10.0.0.1:0"}
- {name: g, address: 10.0.0.1, port: "1", metricsHost: "10.0.0.1:9000", metricsPort: 9001}
- {name: h, address: 10.0.0.1}
- {name: i, address: 10.0.0.1, port: "2", labels: [x]}
- {name: j, address: 10.0.0.1, port: "3"}
- {name: j, address: 10.0.0.2, port: "3"}
`, errs: []string{
			`endpoints[0] (a): port "80x" is not a number`,
			`endpoints[1] (b): port 70000 out of range 1-65535`,
			`endpoints[2] (c): port 8.5 is not a whole number or a numeric string`,
			`endpoints[3] (d): metricsHost "10.0.0.1": want host:port`,
			`endpoints[4] (e): metricsHost "10.0.0.2:9000": host "10.0.0.2" is not the address "10.0.0.1"`,
			`endpoints[5] (f): metricsHost "10.0.0.1:0": port "0" is not a number in 1-65535`,
			`endpoints[6] (g): metricsHost "10.0.0.1:9000" and metricsPort 9001 disagree`,
			`endpoints[7] (h): port is required`,
			`endpoints[8]: labels: want map[string]string, got array`,
			`endpoint name "j" is used twice`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "eps.yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			specs, err := LoadFile(path)
			for _, e := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), e) {
					t.Errorf("error %v does not mention %q", err, e)
				}
			}
			if len(tc.errs) > 0 {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range specs {
				got = append(got, s.Name)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestLoadFileNode: the optional node and nodeAddress keys (OpenEPP
// additions) reach the spec exactly as written; without them both are empty.
func TestLoadFileNode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "eps.yaml")
	text := "endpoints:\n- {name: a, address: 10.0.0.1, port: \"8000\", node: \" gpu-node-1 \", nodeAddress: 192.168.1.7, labels: {role: decode}}\n" +
		"- {name: b, address: 10.0.0.2, port: 8000}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []endpoint.Spec{
		{Name: "a", Node: " gpu-node-1 ", NodeAddress: "192.168.1.7", Address: "10.0.0.1", Port: 8000, Labels: map[string]string{"role": "decode"}},
		{Name: "b", Address: "10.0.0.2", Port: 8000},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFileReloadKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "eps.yaml")
	write := func(text string) {
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // how editors and ConfigMaps update
			t.Fatal(err)
		}
	}
	write("- {address: 10.0.0.1, port: 8000}\n")
	store := datastore.New()
	reg := prometheus.NewRegistry()
	f := NewFile(path, store, testr.New(t), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Start(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "initial load", func() bool { return len(store.Snapshot()) == 1 })
	write("- {address: 10.0.0.1, port: 8000}\n- {address: 10.0.0.2, port: 8000}\n")
	waitFor(t, "reload", func() bool { return len(store.Snapshot()) == 2 })
	write("- {address: 10.0.0.1, port: 8000, node: n1}\n- {address: 10.0.0.2, port: 8000}\n")
	waitFor(t, "node change applied", func() bool {
		e, ok := store.Get("10.0.0.1:8000")
		return ok && e.Node == "n1"
	})
	write("- {address: broken\n")
	waitFor(t, "rejected reload counted", func() bool { return testutil.ToFloat64(f.errors) == 1 })
	if n := len(store.Snapshot()); n != 2 {
		t.Errorf("broken file changed the endpoints: %d", n)
	}
	write("[]\n")
	waitFor(t, "emptied", func() bool { return len(store.Snapshot()) == 0 })
}

func TestFileStartFailsOnBrokenFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "eps.yaml")
	if err := os.WriteFile(path, []byte("- {address: 1.2.3.4}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := NewFile(path, datastore.New(), testr.New(t), nil).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "endpoints[0]: port is required") {
		t.Errorf("Start error = %v, want a port error", err)
	}
}
