package fleet

import (
	"fmt"
	"strings"
)

// The ordering study: two classes in one band, with different TTFT
// objectives, queue behind flow control under global-strict fairness, so
// the band is one queue and its ordering policy alone decides who goes
// first. edf-ordering-policy is not an arm: with no TTL the deadline it
// orders by is the client's timeout from arrival, which ranks requests as
// FCFS does (without retries).

// DefaultOrderingClasses is the ordering study's traffic: 20 % interactive
// with a 250 ms TTFT objective, 80 % batch with 10 s, at one priority.
const DefaultOrderingClasses = "interactive:0.2:0:250ms,batch:0.8:0:10s"

// OrderingPolicies are the ordering study's schemes: flow control at 96
// per server, one band under global-strict fairness, ordered by each
// ordering policy.
func OrderingPolicies() []Policy {
	policy := func(name, desc, typ string) Policy {
		return ConfigPolicy(name, desc, []byte(flowConfigWith(96, 0, "- type: global-strict-fairness-policy\n- type: "+typ+"\n",
			"  defaultPriorityBand: {fairnessPolicyRef: global-strict-fairness-policy, orderingPolicyRef: "+typ+"}\n")))
	}
	return []Policy{
		policy("fcfs", "fcfs-ordering-policy (the default): the band's oldest request goes first", "fcfs-ordering-policy"),
		policy("slo-deadline", "slo-deadline-ordering-policy: the request whose TTFT objective (x-slo-ttft-ms, from its arrival) "+
			"comes due first goes first", "slo-deadline-ordering-policy"),
	}
}

// writeOrdering renders the ordering study as a section of the report.
func writeOrdering(b *strings.Builder, p *PriorityReport) {
	if p == nil || len(p.Workload.Policies) == 0 {
		return
	}
	var cls []string
	for _, c := range p.Classes {
		cls = append(cls, fmt.Sprintf("%s %.0f %% (TTFT objective %s)", c.Name, 100*c.Share, secs(c.TTFTSLOMs)))
	}
	fmt.Fprintf(b, "### Ordering within a band\n\n")
	fmt.Fprintf(b, "`%s` with its traffic split into %s, each its own fairness ID at the same priority, each request "+
		"sending its class's objective as `x-slo-ttft-ms`; flow control holds the pool to 96 requests per server, and "+
		"global-strict fairness makes the band one queue, so the band's ordering policy alone chooses which request goes "+
		"next (%.0f s). `edf-ordering-policy` is not run: without a TTL its deadline is the client's timeout from "+
		"arrival, which orders requests as FCFS does. Success is the share of a class's requests that completed; TTFT "+
		"is over those; ≤ objective is the share of a class's requests whose first token came within its objective.\n\n",
		p.Workload.Name, strings.Join(cls, " and "), p.WallSeconds)
	writeClassTable(b, p)
}
