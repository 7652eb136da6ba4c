package helmchart

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/openepp/openepp/test/policy"
)

const (
	discoverPods = "openepp.precisePrefixCache.mode=discoverPods"
	activeActive = "openepp.activeActive.enabled=true"
)

// TestPrecisePrefixCacheDiscoverPods: in discoverPods mode (the default with
// active-active, where every replica routes and so must hear every server)
// default-plugins.yaml is config/precise-prefix-cache.yaml with the producer
// connecting to every model server at the chart's port instead of binding
// it, which the EPP builds; the EPP exposes no kv-events port, and NOTES.txt
// tells vLLM to bind it. The EPP's own ports do not clash with it: it is on
// the model servers.
func TestPrecisePrefixCacheDiscoverPods(t *testing.T) {
	t.Parallel()
	shipped := shippedPrecise(t)
	for _, tc := range []struct {
		name string
		set  []string
		port int
	}{
		{name: "active-active", set: []string{precise, activeActive, "inferenceExtension.replicas=3"}, port: 5557},
		{name: "explicit mode", set: []string{precise, discoverPods, "openepp.precisePrefixCache.port=5600"}, port: 5600},
		{name: "port the EPP also uses", set: []string{precise, discoverPods, "openepp.precisePrefixCache.port=9090"}, port: 9090},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := install{name: release, namespace: "ns", set: append([]string{modelApp}, tc.set...)}
			objs := render(t, in)
			port := strconv.Itoa(tc.port)
			checkDefaultProfile(t, objs, strings.Replace(shipped, "      zmqEndpoint: tcp://*:5557\n",
				"      discoverPods: true\n      podDiscoveryConfig:\n        socketPort: "+port+"\n", 1),
				"config/precise-prefix-cache.yaml discovering pods on port "+port)

			dep, c := deployment(t, objs)
			if got := portsNamed(c.Ports, "kv-events"); len(got) != 0 {
				t.Errorf("epp container ports %+v: want no kv-events port, the EPP dials out", got)
			}
			// Exactly ext_proc, health and metrics: no kv-events port.
			policy.ServicePorts(t, policy.Typed[corev1.Service](t, find(t, objs, "Service", eppName)), dep, c)

			n := notes(t, in)
			for _, s := range []string{`"endpoint":"tcp://*:` + port + `"`, "each EPP replica connects to every model server pod on port " + port} {
				if !strings.Contains(n, s) {
					t.Errorf("NOTES.txt does not say %s:\n%s", s, n)
				}
			}
			if strings.Contains(n, eppName+".ns:") {
				t.Errorf("NOTES.txt points vLLM at the EPP Service:\n%s", n)
			}
		})
	}
}

// TestPrecisePrefixCacheDiscoverPodsWithOwnConfig: in discoverPods mode a
// config file of the user's that discovers pods at the chart's port (or at
// the default one, when the chart's is 5557) is accepted and read, with no
// kv-events port; fail_test.go has the files refused.
func TestPrecisePrefixCacheDiscoverPodsWithOwnConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		kvEvents string
		set      []string
	}{
		{name: "default socketPort", kvEvents: "{discoverPods: true}", set: []string{activeActive}},
		{name: "chart's port", kvEvents: "{discoverPods: true, podDiscoveryConfig: {socketPort: 5600}}",
			set: []string{discoverPods, "openepp.precisePrefixCache.port=5600"}},
	} {
		objs := render(t, install{name: release, namespace: "ns", files: []string{ownPreciseConfig(tc.kvEvents)},
			set: append([]string{modelApp, precise}, tc.set...)})
		dep, c := deployment(t, objs)
		if v, _ := policy.FlagValue(c.Args, "--config-file"); v != "/config/mine.yaml" {
			t.Errorf("%s: --config-file=%s, want the user's /config/mine.yaml", tc.name, v)
		}
		policy.ServicePorts(t, policy.Typed[corev1.Service](t, find(t, objs, "Service", eppName)), dep, c)
	}
}
