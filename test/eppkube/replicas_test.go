package eppkube_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/openepp/openepp/pkg/epp"
)

// prefixOnly routes by the prefix-cache index alone (ties at random), so
// where a prompt goes shows what the index holds.
const prefixOnly = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
`

// TestReplicasFindEachOtherAndShare runs two active-active replicas of one
// pool that learn each other's replica-sync address from the EndpointSlices
// of their peer Service, as in manifests/components/active-active. Each
// finds itself in the list and skips it; prompts routed by one are then
// routed by the other to the same pods (by chance: 1 in 6⁴).
func TestReplicasFindEachOtherAndShare(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	var pods []string
	for i := range 6 {
		ip := nextIP()
		simulator(t, ip, port)
		env.RunningPod(t, ns, fmt.Sprintf("p%d", i), ip, model)
		pods = append(pods, hostPort(ip, port))
	}
	flags := []string{"--pool-name", "pool", "--config-text", prefixOnly, "--replica-sync-port", "0",
		"--replica-sync-service", "epp-peers", "--replica-sync-interval", "5ms"}
	// EndpointSlices may not hold loopback addresses: the slices name the
	// replicas by documentation addresses (TEST-NET-1), which their dialer
	// maps back onto 127.0.0.1, the port telling the replicas apart.
	toLoopback := epp.WithReplicaSyncDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, p, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", p))
	})
	a, b := startEPPWith(t, ns, []epp.Option{toLoopback}, flags...), startEPPWith(t, ns, []epp.Option{toLoopback}, flags...)
	for i, in := range []*instance{a, b} {
		_, p, _ := net.SplitHostPort(in.addrs.ReplicaSync)
		n, _ := strconv.Atoi(p)
		env.Create(t, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("epp-peers-%d", i), Labels: map[string]string{discoveryv1.LabelServiceName: "epp-peers"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("192.0.2.%d", i+1)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("replica-sync"), Port: ptr.To(int32(n))}},
		})
	}
	for _, in := range []*instance{a, b} {
		in.waitRoutable(t, pods[5], true)
		eventually(t, "each replica to find itself among the two peers", func() bool { return hasLine(in.metricsPage(t), "openepp_replica_sync_peers 1") })
	}

	prompts := make([]string, 4)
	picks := make([]string, len(prompts))
	for i := range prompts {
		prompts[i] = fmt.Sprintf(`{"model":"sim-model","prompt":%q}`, strings.Repeat(fmt.Sprintf("thread %d asks again. ", i), 60))
		a.routePrompt(t, prompts[i])
		picks[i] = a.routePrompt(t, prompts[i]) // follows the first pick's record
	}
	eventually(t, "B to apply A's insertions", func() bool {
		return sumOf(b.metricsPage(t), "openepp_replica_sync_applied_insertions_total") >= float64(len(prompts))
	})
	for i, p := range prompts {
		if got := b.routePrompt(t, p); got != picks[i] {
			t.Errorf("prompt %d: B routed to %s, A to %s", i, got, picks[i])
		}
	}
}

func (in *instance) routePrompt(t *testing.T, body string) string {
	t.Helper()
	d, err := in.client.RoundTrip(context.Background(), completionRequest(body))
	if err != nil || d.Immediate != nil {
		t.Fatalf("request: %v %+v", err, d)
	}
	return d.Endpoints[0]
}

// sumOf adds up every series of the named family on a metrics page.
func sumOf(page, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}
