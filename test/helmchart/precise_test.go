package helmchart

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/plugins"
	"github.com/openepp/openepp/test/policy"
)

const precise = "openepp.precisePrefixCache.enabled=true"

// shippedPrecise is config/precise-prefix-cache.yaml without its comments,
// as the chart writes it.
func shippedPrecise(t *testing.T) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "precise-prefix-cache.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return withoutComments(string(shipped))
}

// checkDefaultProfile checks that the rendered default-plugins.yaml is
// want (described by what) and builds with the real plugins.
func checkDefaultProfile(t *testing.T, objs []*unstructured.Unstructured, want, what string) {
	t.Helper()
	text := policy.Typed[corev1.ConfigMap](t, find(t, objs, "ConfigMap", eppName)).Data["default-plugins.yaml"]
	if diff := cmp.Diff(want, text); diff != "" {
		t.Errorf("default-plugins.yaml is not %s (-want +got):\n%s", what, diff)
	}
	buildsWithRealPlugins(t, text)
}

// buildsWithRealPlugins fails t unless the config text loads and builds
// with the EPP's own plugins.
func buildsWithRealPlugins(t *testing.T, text string) {
	t.Helper()
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg}); err != nil {
		t.Fatalf("the rendered default profile does not build: %v", err)
	}
}

// TestPrecisePrefixCacheProfile: precisePrefixCache.enabled makes
// default-plugins.yaml config/precise-prefix-cache.yaml (binding the chart's
// port), which the EPP builds, and exposes that port as kv-events on the
// epp container and the Service, which NOTES.txt tells vLLM to publish to.
func TestPrecisePrefixCacheProfile(t *testing.T) {
	t.Parallel()
	shipped := shippedPrecise(t)
	for _, tc := range []struct {
		name string
		set  []string
		port int32
	}{
		{name: "default port", set: []string{precise}, port: 5557},
		{name: "own port", set: []string{precise, "openepp.precisePrefixCache.port=5600"}, port: 5600},
		{name: "explicit bind", set: []string{precise, "openepp.precisePrefixCache.mode=bind"}, port: 5557},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := install{name: release, namespace: "ns", set: append([]string{modelApp}, tc.set...)}
			objs := render(t, in)
			checkDefaultProfile(t, objs, strings.ReplaceAll(shipped, "tcp://*:5557", "tcp://*:"+strconv.Itoa(int(tc.port))),
				"config/precise-prefix-cache.yaml on port "+strconv.Itoa(int(tc.port)))

			_, c := deployment(t, objs)
			wantPort := corev1.ContainerPort{Name: "kv-events", ContainerPort: tc.port, Protocol: corev1.ProtocolTCP}
			if diff := cmp.Diff([]corev1.ContainerPort{wantPort}, portsNamed(c.Ports, "kv-events")); diff != "" {
				t.Errorf("epp container kv-events port (-want +got):\n%s", diff)
			}
			svc := policy.Typed[corev1.Service](t, find(t, objs, "Service", eppName))
			wantSvc := corev1.ServicePort{Name: "kv-events", Port: tc.port, TargetPort: intstr.FromString("kv-events"), Protocol: corev1.ProtocolTCP}
			if diff := cmp.Diff([]corev1.ServicePort{wantSvc}, servicePortsNamed(svc.Spec.Ports, "kv-events")); diff != "" {
				t.Errorf("Service kv-events port (-want +got):\n%s", diff)
			}
			endpoint := "tcp://" + eppName + ".ns:" + strconv.Itoa(int(tc.port))
			if n := notes(t, in); !strings.Contains(n, "--kv-events-config") || !strings.Contains(n, endpoint) {
				t.Errorf("NOTES.txt does not point vLLM's --kv-events-config at %s:\n%s", endpoint, n)
			}
		})
	}
	if n := notes(t, install{name: release, namespace: "ns", set: []string{modelApp}}); strings.Contains(n, "kv-events") {
		t.Errorf("NOTES.txt mentions kv-events with precisePrefixCache off:\n%s", n)
	}
}

// TestPrecisePrefixCacheWithOwnConfig: with a config file of the user's,
// the toggle still exposes the port, which that file binds; the EPP reads
// the user's file.
func TestPrecisePrefixCacheWithOwnConfig(t *testing.T) {
	t.Parallel()
	own := ownPreciseConfig("")
	objs := render(t, install{name: release, namespace: "ns", files: []string{own}, set: []string{modelApp, precise}})
	_, c := deployment(t, objs)
	if v, _ := policy.FlagValue(c.Args, "--config-file"); v != "/config/mine.yaml" {
		t.Errorf("--config-file=%s, want the user's /config/mine.yaml", v)
	}
	svc := policy.Typed[corev1.Service](t, find(t, objs, "Service", eppName))
	if len(portsNamed(c.Ports, "kv-events")) != 1 || len(servicePortsNamed(svc.Spec.Ports, "kv-events")) != 1 {
		t.Errorf("container ports %+v, Service ports %+v: want kv-events on both", c.Ports, svc.Spec.Ports)
	}
}

// TestPrecisePrefixCacheIstio: Istio originates no TLS to the kv-events port
// (vLLM speaks plain ZeroMQ there), unless the user's own port-level
// settings name it; without TLS to the EPP there is nothing to undo.
func TestPrecisePrefixCacheIstio(t *testing.T) {
	t.Parallel()
	disable := []any{map[string]any{"port": map[string]any{"number": int64(5557)}, "tls": map[string]any{"mode": "DISABLE"}}}
	mine := []any{map[string]any{"port": map[string]any{"number": int64(5557)}, "tls": map[string]any{"mode": "SIMPLE"}}}
	for _, tc := range []struct {
		name  string
		files []string
		set   []string
		want  []any
	}{
		{name: "chart's TLS", want: disable},
		{name: "user's TLS", files: []string{"provider:\n  istio:\n    destinationRule:\n      trafficPolicy:\n        tls: {mode: SIMPLE}\n"}, want: disable},
		{name: "user's port-level settings", want: mine,
			files: []string{"provider:\n  istio:\n    destinationRule:\n      trafficPolicy:\n        portLevelSettings:\n" +
				"        - {port: {number: 5557}, tls: {mode: SIMPLE}}\n"}},
		{name: "plaintext ext_proc", set: []string{"inferenceExtension.flags.secure-serving=false"}},
		// The EPP dials the model servers: no kv-events port on its Service.
		{name: "discoverPods", set: []string{discoverPods}},
	} {
		objs := render(t, install{name: release, namespace: "ns", files: tc.files,
			set: append([]string{modelApp, precise, "provider.name=istio"}, tc.set...)})
		got, _, _ := unstructured.NestedSlice(find(t, objs, "DestinationRule", eppName).Object, "spec", "trafficPolicy", "portLevelSettings")
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: portLevelSettings (-want +got):\n%s", tc.name, diff)
		}
	}
}

// ownPreciseConfig is a values file naming a config file of the user's,
// mine.yaml, on the precise pipeline; kvEvents is its producer's
// kvEventsConfig as a YAML flow map, "" for none (the defaults).
func ownPreciseConfig(kvEvents string) string {
	producer := "      - type: precise-prefix-cache-producer\n"
	if kvEvents != "" {
		producer += "        parameters: {kvEventsConfig: " + kvEvents + "}\n"
	}
	return "inferenceExtension:\n  pluginsConfigFile: mine.yaml\n  pluginsCustomConfig:\n    mine.yaml: |\n" +
		"      apiVersion: inference.networking.x-k8s.io/v1alpha1\n      kind: EndpointPickerConfig\n      plugins:\n" +
		"      - type: token-producer\n        parameters: {backend: vllm, vllm: {endpointDiscovery: {}}}\n" +
		producer + "      - type: queue-scorer\n" +
		"      - type: prefix-cache-scorer\n        parameters: {prefixMatchInfoProducerName: precise-prefix-cache-producer}\n"
}

// withoutComments drops a config file's leading comment block.
func withoutComments(text string) string {
	for strings.HasPrefix(text, "#") {
		_, text, _ = strings.Cut(text, "\n")
	}
	return text
}

func portsNamed(ports []corev1.ContainerPort, name string) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, p := range ports {
		if p.Name == name {
			out = append(out, p)
		}
	}
	return out
}

func servicePortsNamed(ports []corev1.ServicePort, name string) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range ports {
		if p.Name == name {
			out = append(out, p)
		}
	}
	return out
}

// freePort is a TCP port nothing listens on now, on any address.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
