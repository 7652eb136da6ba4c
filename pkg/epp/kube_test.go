package epp

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
)

// parseKubeFlags parses args as Run does and returns the flags and the
// validation error.
func parseKubeFlags(t *testing.T, args ...string) (*Flags, error) {
	t.Helper()
	var f Flags
	fs := flag.NewFlagSet("epp", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.bind(fs)
	if err := fs.Parse(args); err != nil {
		return &f, err
	}
	return &f, f.validate()
}

func TestKubeFlagValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // "" means valid
	}{
		{name: "pool", args: []string{"--pool-name", "p"}},
		{name: "selector", args: []string{"--endpoint-selector", "app in (a,b),!canary", "--endpoint-target-ports", "8000,8001", "--endpoint-target-ports", "8002"}},
		{name: "static", args: []string{"--endpoints", "127.0.0.1:8000"}},
		{name: "static and file", args: []string{"--endpoints", "127.0.0.1:8000", "--endpoints-file", "x.yaml"}},
		{name: "no source", want: "no endpoint source: give --endpoints or --endpoints-file (no Kubernetes), --pool-name or --endpoint-picker-service (InferencePools), " +
			"--endpoint-selector with --endpoint-target-ports, or a config file whose dataLayer.discovery names a file-discovery plugin"},
		{name: "config may name the source", args: []string{"--config-file", "epp.yaml"}},
		{name: "static and pool", args: []string{"--endpoints", "127.0.0.1:8000", "--pool-name", "p"},
			want: "endpoint sources are mutually exclusive, got --endpoints/--endpoints-file and --pool-name"},
		{name: "pool and selector", args: []string{"--pool-name", "p", "--endpoint-selector", "a=b", "--endpoint-target-ports", "1"},
			want: "endpoint sources are mutually exclusive, got --pool-name and --endpoint-selector"},
		{name: "picker service", args: []string{"--endpoint-picker-service", "epp"}},
		{name: "pool and picker service", args: []string{"--pool-name", "p", "--endpoint-picker-service", "epp"},
			want: "endpoint sources are mutually exclusive, got --pool-name and --endpoint-picker-service"},
		{name: "selector without ports", args: []string{"--endpoint-selector", "a=b"},
			want: "--endpoint-target-ports: need 1 to 8 target ports, got 0"},
		{name: "bad selector", args: []string{"--endpoint-selector", "a==(", "--endpoint-target-ports", "1"},
			want: "--endpoint-selector: "},
		{name: "duplicate port", args: []string{"--endpoint-selector", "a=b", "--endpoint-target-ports", "8000,8000"},
			want: "--endpoint-target-ports: target port 8000 is listed twice"},
		{name: "port range", args: []string{"--endpoint-selector", "a=b", "--endpoint-target-ports", "0"},
			want: "--endpoint-target-ports: target port 0 is out of range 1-65535"},
		{name: "too many ports", args: []string{"--endpoint-selector", "a=b", "--endpoint-target-ports", "1,2,3,4,5,6,7,8,9"},
			want: "--endpoint-target-ports: need 1 to 8 target ports, got 9"},
		{name: "port not a number", args: []string{"--endpoint-selector", "a=b", "--endpoint-target-ports", "80,http"},
			want: `invalid value "80,http" for flag -endpoint-target-ports: "http" is not a port number`},
		{name: "ports with pool", args: []string{"--pool-name", "p", "--endpoint-target-ports", "8000"},
			want: "--endpoint-target-ports needs --endpoint-selector (with --pool-name the pool's targetPorts apply)"},
		{name: "pool group", args: []string{"--pool-name", "p", "--pool-group", "inference.networking.x-k8s.io"},
			want: `--pool-group "inference.networking.x-k8s.io" is not supported, only "inference.networking.k8s.io"`},
		{name: "leader election without kubernetes", args: []string{"--endpoints", "127.0.0.1:8000", "--ha-enable-leader-election"},
			want: "--ha-enable-leader-election and --kubeconfig need Kubernetes mode (--pool-name or --endpoint-selector)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseKubeFlags(t, tc.args...)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
				t.Errorf("error = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKubeFlagValues(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "NAMESPACE" {
				return v
			}
			return ""
		}
	}
	f, err := parseKubeFlags(t, "--pool-name", "pool", "--ha-enable-leader-election")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"default":   f.Kube.namespace(env("")),
		"env":       f.Kube.namespace(env("from-env")),
		"lease":     f.Kube.leaseName("ns"),
		"poolGroup": f.Kube.PoolGroup,
	}
	f.Kube.PoolNamespace = "from-flag"
	got["flag"] = f.Kube.namespace(env("from-env"))
	sel, err := parseKubeFlags(t, "--endpoint-selector", "a=b", "--endpoint-target-ports", "8000, 8001")
	if err != nil {
		t.Fatal(err)
	}
	got["ports"] = sel.Kube.EndpointTargetPorts.String()
	got["selectorLease"] = sel.Kube.leaseName("ns")
	several, err := parseKubeFlags(t, "--pool-name", "qwen,llama")
	if err != nil {
		t.Fatal(err)
	}
	got["severalLease"] = several.Kube.leaseName("ns")
	picker, err := parseKubeFlags(t, "--endpoint-picker-service", "epp")
	if err != nil {
		t.Fatal(err)
	}
	got["pickerLease"] = picker.Kube.leaseName("ns")
	want := map[string]string{
		"severalLease": "epp-ns-llama-qwen.gateway-api-inference-extension.sigs.k8s.io",
		"pickerLease":  "epp-ns-service-epp.gateway-api-inference-extension.sigs.k8s.io",
		"default":      "default", "env": "from-env", "flag": "from-flag",
		"lease":         "epp-ns-pool.gateway-api-inference-extension.sigs.k8s.io",
		"poolGroup":     "inference.networking.k8s.io",
		"ports":         "8000,8001",
		"selectorLease": got["selectorLease"],
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got["selectorLease"], "epp-ns-selector-") {
		t.Errorf("selector lease = %q, want epp-ns-selector-<hash>...", got["selectorLease"])
	}
}

// TestKubeConfigErrors checks that Kubernetes mode without a reachable
// configuration fails at start with a clear error instead of hanging.
func TestKubeConfigErrors(t *testing.T) {
	t.Parallel()
	err := Run(context.Background(), []string{"--pool-name", "p", "--kubeconfig", "/nonexistent/kubeconfig", "--grpc-port", "0",
		"--grpc-health-port", "0", "--metrics-port", "0"}, WithLogger(logr.Discard()))
	if err == nil || !strings.HasPrefix(err.Error(), `--kubeconfig "/nonexistent/kubeconfig": `) {
		t.Errorf("error = %v, want a --kubeconfig error", err)
	}
}
