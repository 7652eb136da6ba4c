package eppkube_test

import (
	"context"
	"maps"
	"testing"
)

// alwaysPD disaggregates every request: decode picks the destination among
// decode pods, prefill picks a prefill pod for x-prefiller-host-port.
const alwaysPD = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: disagg-profile-handler
  parameters: {deciders: {prefill: always-disagg-pd-decider}}
- type: always-disagg-pd-decider
- type: decode-filter
- type: prefill-filter
- type: queue-scorer
schedulingProfiles:
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}]
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}]
`

// TestDisaggregationByPodRole: the llm-d.ai/role labels of the pool's pods
// decide which pod decodes and which prefills, and relabelling a pod moves
// it between the roles without restarting anything.
func TestDisaggregationByPodRole(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	pIP, dIP := nextIP(), nextIP()
	simulator(t, pIP, port)
	simulator(t, dIP, port)
	withRole := func(role string) map[string]string {
		l := maps.Clone(model)
		l["llm-d.ai/role"] = role
		return l
	}
	prefillPod := env.RunningPod(t, ns, "prefill", pIP, withRole("prefill"))
	env.RunningPod(t, ns, "decode", dIP, withRole("decode"))
	in := startEPP(t, ns, "--pool-name", "pool", "--config-text", alwaysPD)
	in.waitRoutable(t, hostPort(dIP, port), true)

	route := func() (dest, prefiller string) {
		d, err := in.client.RoundTrip(context.Background(),
			completionRequest(`{"model":"sim-model","prompt":"hi"}`, "x-prefiller-host-port", "203.0.113.7:80"))
		if err != nil || d.Immediate != nil {
			t.Fatalf("request: %v %+v", err, d)
		}
		return d.DestinationHeader, d.Headers.Get("x-prefiller-host-port")
	}
	eventually(t, "the prefill pod to prefill for the decode pod", func() bool {
		dest, prefiller := route()
		return dest == hostPort(dIP, port) && prefiller == hostPort(pIP, port)
	})

	// Relabelled as a decoder, the former prefill pod decodes; with no
	// prefill pod left, requests are decode-only and the client's own
	// prefiller header is stripped.
	env.Update(t, prefillPod, func() { prefillPod.Labels = withRole("decode") })
	seen := map[string]bool{}
	eventually(t, "both pods to decode, decode-only", func() bool {
		dest, prefiller := route()
		if prefiller != "" {
			return false
		}
		seen[dest] = true
		return seen[hostPort(pIP, port)] && seen[hostPort(dIP, port)]
	})
}
