package epp

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// discoveryConfig is an llm-d config whose only endpoint source is a
// file-discovery plugin reading path.
func discoveryConfig(path string, watch bool) string {
	return fmt.Sprintf(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: file-discovery
  parameters:
    path: %q
    watchFile: %v
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
dataLayer:
  discovery:
    pluginRef: file-discovery
`, path, watch)
}

// llmdEndpoints is an endpoints file in llm-d's format (string ports,
// metricsHost) listing the given servers of r.
func llmdEndpoints(r *running, servers ...int) string {
	var b strings.Builder
	b.WriteString("endpoints:\n")
	for _, i := range servers {
		host, port, _ := net.SplitHostPort(r.servers[i])
		fmt.Fprintf(&b, "  - name: vllm-%d\n    address: %s\n    port: %q\n    metricsHost: %s\n    labels:\n      llm-d.ai/role: decode\n",
			i, host, port, r.servers[i])
	}
	return b.String()
}

// TestFileDiscoveryRoutes runs an EPP given only --config-file, whose
// file-discovery plugin lists the endpoints: requests go to the servers the
// file lists, a rewrite of the file moves them, and a config reload that
// changes the plugin keeps the running source.
func TestFileDiscoveryRoutes(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "epp.yaml")
	r := launchEPP(t, 2, 0, nil, func(r *running) []string {
		r.writeEndpoints(t, llmdEndpoints(r, 1))
		writeConfig(t, cfg, discoveryConfig(r.file, true))
		return []string{"--config-file", cfg}
	})
	route := func() string { return r.route(t, `{"model":"m","prompt":"hello"}`).Endpoints[0] }
	if got := route(); got != r.servers[1] {
		t.Fatalf("routed to %s, want %s, the one endpoint in the file", got, r.servers[1])
	}
	r.writeEndpoints(t, llmdEndpoints(r, 0)) // vllm-0 arrives, vllm-1 leaves
	eventually(t, "the endpoints file to be reloaded", func() bool { return route() == r.servers[0] })

	writeConfig(t, cfg, discoveryConfig(r.file, false))
	eventually(t, "the discovery change to be refused", func() bool {
		return len(r.log.find("keeping the running endpoint source")) > 0
	})
	if lines := r.log.find("keeping the running endpoint source"); !strings.Contains(lines[0], `plugin \"file-discovery\" has new parameters`) {
		t.Errorf("refusal does not say what changed: %s", lines[0])
	}
	r.writeEndpoints(t, llmdEndpoints(r, 1)) // still watched: watchFile=false waits for a restart
	eventually(t, "the running source to keep watching", func() bool { return route() == r.servers[1] })
}

// writeConfig replaces path by rename, as the config watcher expects.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestFileDiscoveryStartupErrors: a discovery plugin is the only endpoint
// source, so a flag naming another is refused, naming the flag; a config
// naming none still needs a flag; a broken file stops the EPP.
func TestFileDiscoveryStartupErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("endpoints:\n  - {name: a, address: 10.0.0.1, port: \"http\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eps := filepath.Join(dir, "eps.yaml")
	withFile := discoveryConfig(eps, false)
	conflict := `conflicts with the config's dataLayer.discovery.pluginRef "file-discovery": a discovery plugin is the only endpoint source`
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "--endpoints", args: []string{"--config-text", withFile, "--endpoints", "127.0.0.1:1"}, want: "--endpoints " + conflict},
		{name: "--endpoints-file", args: []string{"--config-text", withFile, "--endpoints-file", broken}, want: "--endpoints-file " + conflict},
		{name: "--pool-name", args: []string{"--config-text", withFile, "--pool-name", "p"}, want: "--pool-name " + conflict},
		{name: "--endpoint-selector", args: []string{"--config-text", withFile, "--endpoint-selector", "a=b", "--endpoint-target-ports", "8000"},
			want: "--endpoint-selector " + conflict},
		{name: "config without discovery", args: []string{"--config-text", selectOnly(0)}, want: "no endpoint source"},
		{name: "unknown parameter", args: []string{"--config-text", strings.Replace(withFile, "path:", "pth:", 1)},
			want: `plugins[1]: plugin "file-discovery" of type "file-discovery": parameters: json: unknown field "pth"`},
		{name: "no path", args: []string{"--config-text", strings.Replace(withFile, fmt.Sprintf("    path: %q\n", eps), "", 1)},
			want: `plugins[1]: plugin "file-discovery" of type "file-discovery": path: required`},
		{name: "broken file", args: []string{"--config-text", discoveryConfig(broken, true)},
			want: `dataLayer.discovery plugin "file-discovery": endpoints file "` + broken + `": endpoints[0] (a): port "http" is not a number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Run(context.Background(), append(tc.args, "--bind-address", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0",
				"--metrics-port", "0", "--tracing=false"), WithLogger(logr.Discard()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
