package epp

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/disagg"
)

// pdTopology disaggregates every request and keeps its prefill in the
// decode pick's slice (the label that stands for a shared NVLink domain).
const pdTopology = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: disagg-profile-handler
  parameters:
    deciders:
      prefill: always-disagg-pd-decider
- type: always-disagg-pd-decider
- type: decode-filter
- type: prefill-filter
- type: queue-scorer
- type: topology-extractor
  parameters:
    hostname: slice
- type: topology-affinity-filter
schedulingProfiles:
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: queue-scorer
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: topology-affinity-filter
  - pluginRef: queue-scorer
`

// TestTopologyPairsPrefillWithDecode runs P/D over six simulated servers,
// three prefill and three decode, paired by slice: every request's
// prefill goes to the prefill server in its decode server's slice (by
// chance, twenty requests all pairing so is a 1 in 3²⁰ event); and with
// prefill-first, its decode to the decode server in its prefill's slice.
func TestTopologyPairsPrefillWithDecode(t *testing.T) {
	t.Parallel()
	prefillFirst := strings.NewReplacer("      prefill: always-disagg-pd-decider\n",
		"      prefill: always-disagg-pd-decider\n    stageOrder: prefill-first\n",
		"  - pluginRef: decode-filter\n", "  - pluginRef: decode-filter\n  - pluginRef: topology-affinity-filter\n",
		"  - pluginRef: prefill-filter\n  - pluginRef: topology-affinity-filter\n", "  - pluginRef: prefill-filter\n").Replace(pdTopology)
	for name, cfg := range map[string]string{"decode first": pdTopology, "prefill first": prefillFirst} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pairs(t, cfg)
		})
	}
}

// pairs checks that every request's prefill and decode servers share a
// slice under cfg.
func pairs(t *testing.T, cfg string) {
	slice := map[string]string{}
	r := launchEPP(t, 6, 0, nil, func(r *running) []string {
		var entries []string
		for i, addr := range r.servers {
			host, port, _ := net.SplitHostPort(addr)
			role := "prefill"
			if i >= 3 {
				role = "decode"
			}
			slice[addr] = fmt.Sprintf("s%d", i%3)
			entries = append(entries, fmt.Sprintf("- {name: s%d, address: %s, port: %s, labels: {llm-d.ai/role: %s, slice: %s}}\n",
				i, host, port, role, slice[addr]))
		}
		r.writeEndpoints(t, entries...)
		return []string{"--endpoints-file", r.file, "--config-text", cfg}
	})
	decodes := map[string]bool{}
	for i := range 20 {
		d := r.route(t, fmt.Sprintf(`{"model":%q,"prompt":"request %d","max_tokens":2}`, r.sims[0].Model(), i))
		prefill := d.Headers.Get(disagg.PrefillerHeader)
		if len(d.Endpoints) == 0 || prefill == "" {
			t.Fatalf("request %d: decode %v, prefill %q; want both", i, d.Endpoints, prefill)
		}
		decode := d.Endpoints[0]
		decodes[decode] = true
		if slice[prefill] != slice[decode] {
			t.Errorf("request %d: decode %s in %s, prefill %s in %s", i, decode, slice[decode], prefill, slice[prefill])
		}
	}
	if len(decodes) < 2 {
		t.Errorf("every request decoded on %v; the pairing was not exercised", decodes)
	}
}
