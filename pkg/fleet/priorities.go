package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/config"
)

// The priority study: one workload with its traffic split into a critical
// and a sheddable class, past capacity, under upstream's legacy admission
// (shed the sheddable class while saturated) and under flow control at two
// settings. It shows what each admission scheme buys each class, and what
// it costs, on every `make bench-fleet`.

// DefaultPriorityClasses is the study's traffic: 20 % critical at priority
// 3, 80 % sheddable batch at -1.
const DefaultPriorityClasses = "critical:0.2:3,batch:0.8:-1"

// flowConfigText is the upstream default scoring with flow control gated by
// concurrency-detector at perServer requests in flight per server (and
// kvTarget of projected KV usage, 0 for none), and negative priorities held
// at batchCeiling of the pool.
func flowConfigText(perServer int, kvTarget, batchCeiling float64) string {
	return flowConfigWith(perServer, kvTarget, fmt.Sprintf(`- type: static-usage-limit-policy
  parameters: {priorityThresholds: {"-1": %g}}
`, batchCeiling), "")
}

// flowConfigWith is flowConfigText's config with other flow-control
// plugins (YAML list items) and flowControl section (indented lines).
func flowConfigWith(perServer int, kvTarget float64, plugins, flowControl string) string {
	text := fmt.Sprintf(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: concurrency-detector
  parameters: {maxConcurrency: %d, kvCacheTarget: %g}
%sschedulingProfiles:
- name: default
  plugins:
  - {pluginRef: queue-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 2}
  - {pluginRef: prefix-cache-scorer, weight: 3}
saturationDetector: {pluginRef: concurrency-detector}
`, perServer, kvTarget, plugins)
	if flowControl != "" {
		text += "flowControl:\n" + flowControl
	}
	return text
}

// evictionConfig is flowConfigText's config (no KV target) with in-flight
// eviction on.
func evictionConfig(perServer int, batchCeiling float64) string {
	return flowConfigWith(perServer, 0, fmt.Sprintf(`- type: static-usage-limit-policy
  parameters: {priorityThresholds: {"-1": %g}}
`, batchCeiling), "  enableEviction: true\n")
}

// Names of the priority study's eviction schemes, each also run with
// retrying clients (PriorityArms).
const (
	flowEvict     = "flow-96-evict"
	flowHoldEvict = "flow-96-hold-evict"
)

// PriorityPolicies are the study's admission schemes, all with upstream's
// default scoring.
func PriorityPolicies() []Policy {
	return []Policy{
		ConfigPolicy("legacy-shedding", "no flow control: utilization-detector sheds priority < 0 while saturated (upstream's default)",
			[]byte(config.DefaultText)),
		ConfigPolicy("flow-256", "flow control, concurrency-detector at 256 per server (the servers' max-num-seqs)",
			[]byte(flowConfigText(256, 0, 1))),
		ConfigPolicy("flow-96", "flow control, concurrency-detector at 96 per server (tuned to this workload), no hold",
			[]byte(flowConfigText(96, 0, 1))),
		ConfigPolicy(flowEvict, "flow-96 with in-flight eviction (enableEviction: running priority < 0 requests are ended while a higher band waits)",
			[]byte(evictionConfig(96, 1))),
		ConfigPolicy("flow-96-hold", "flow control, concurrency-detector at 96 per server (tuned to this workload), priority < 0 held at 80 % of the pool",
			[]byte(flowConfigText(96, 0, 0.8))),
		ConfigPolicy(flowHoldEvict, "flow-96-hold with in-flight eviction (enableEviction)",
			[]byte(evictionConfig(96, 0.8))),
		ConfigPolicy("flow-kv-hold", "flow control, concurrency-detector at 256 per server with kvCacheTarget 1.0 (no tuning), priority < 0 held at 80 % of the pool",
			[]byte(flowConfigText(256, 1, 0.8))),
		ConfigPolicy("flow-96-soft", "flow control, concurrency-detector at 96 per server, llm-d's soft-reflective-ceiling-policy (no parameters: lower bands trickle in as saturation rises)",
			[]byte(flowConfigWith(96, 0, "- type: soft-reflective-ceiling-policy\n", "  usageLimitPolicyPluginRef: soft-reflective-ceiling-policy\n"))),
	}
}

// ClassArm is one scheme of a class study: a policy, and how its clients
// answer an eviction.
type ClassArm struct {
	Policy Policy
	Retry  Retry
}

// ClassArms runs policies with clients that do not retry.
func ClassArms(policies []Policy) []ClassArm {
	out := make([]ClassArm, len(policies))
	for i, p := range policies {
		out[i] = ClassArm{Policy: p}
	}
	return out
}

// PriorityArms are the priority study's arms: PriorityPolicies, each
// eviction scheme followed by itself with RetryingClients (named
// "<scheme>-retry") and the schemes of enginePrioritySchemes by themselves
// with engine priority ("<scheme>-engine"), so that the table shows what
// each changes.
func PriorityArms() []ClassArm {
	var out []ClassArm
	for _, p := range PriorityPolicies() {
		out = append(out, ClassArm{Policy: p})
		if p.Name == flowEvict || p.Name == flowHoldEvict {
			out = append(out, retryingArm(p, RetryingClients()))
		}
		if slices.Contains(enginePrioritySchemes, p.Name) {
			out = append(out, ClassArm{Policy: withEnginePriority(p)})
		}
	}
	return out
}

// enginePrioritySchemes are the schemes the study also runs with engine
// priority: without flow control, flow control gated at the servers' seats
// (their queues hold what the EPP lets in), at the tuned limit, with
// eviction, and as config/flow-control.yaml ships it (flow-kv-hold).
var enginePrioritySchemes = []string{"legacy-shedding", "flow-256", "flow-96", flowEvict, "flow-kv-hold"}

// withEnginePriority is p, renamed, with the EPP writing each request's
// priority for the servers' scheduler.
func withEnginePriority(p Policy) Policy {
	p.Description = p.Name + " with engine priority (--engine-priority): requests carry their priority to the servers, " +
		"which run vLLM's --scheduling-policy priority (waiting requests by priority, the least important running one preempted first)"
	p.Name += "-engine"
	p.EnginePriority = true
	return p
}

// retryingArm is p, renamed, with clients that retry as r says.
func retryingArm(p Policy, r Retry) ClassArm {
	r = r.withDefaults()
	p.Description = fmt.Sprintf("%s with clients that send an evicted request again, up to %d times: after %g–%g s "+
		"(drawn with the run's seed), each next wait twice as long", p.Name, r.Max, (r.Backoff / 2).Seconds(), r.Backoff.Seconds())
	p.Name += "-retry"
	return ClassArm{Policy: p, Retry: r}
}

// DefaultFairnessClasses is the fairness study's traffic: two flows in one
// band, one asking for four times the other's share.
const DefaultFairnessClasses = "heavy:0.8:0,light:0.2:0"

// FairnessPolicies are the fairness study's schemes: flow control at 96
// per server, the band's flows chosen by each fairness policy.
func FairnessPolicies() []Policy {
	policy := func(name, desc, typ string) Policy {
		return ConfigPolicy(name, desc, []byte(flowConfigWith(96, 0, "- type: "+typ+"\n",
			"  defaultPriorityBand: {fairnessPolicyRef: "+typ+"}\n")))
	}
	return []Policy{
		policy("global-strict", "global-strict-fairness-policy (the default): the band is one queue, oldest first", "global-strict-fairness-policy"),
		policy("round-robin", "round-robin-fairness-policy: the flows take turns", "round-robin-fairness-policy"),
		policy("program-aware", "llm-d's program-aware-fairness (least attained service): the flow that consumed fewer tokens goes first",
			"program-aware-fairness"),
	}
}

// PriorityReport is the study's outcome: the workload's ladders, each stage
// split by class.
type PriorityReport struct {
	Classes     []Class           `json:"classes"`
	Workload    WorkloadReport    `json:"workload"`
	Policies    map[string]string `json:"policies"`
	WallSeconds float64           `json:"wallSeconds"`
}

// ClassStudy is a study of traffic classes (the priority, fairness and
// ordering studies): one workload under each arm, over seeds.
type ClassStudy struct {
	Workload Workload
	Classes  []Class
	Arms     []ClassArm
	Seeds    []uint64
	Workers  int
	Progress func(done, total int, spec RunSpec, res *StageResult)
}

// Run runs the study.
func (c *ClassStudy) Run(ctx context.Context) (*PriorityReport, error) {
	start := time.Now()
	m := &Matrix{Workloads: []Workload{c.Workload}, Seeds: c.Seeds, Workers: c.Workers, Classes: c.Classes,
		Progress: c.Progress, retry: map[string]Retry{}}
	for _, a := range c.Arms {
		m.Policies = append(m.Policies, a.Policy)
		if a.Retry.Max > 0 {
			m.retry[a.Policy.Name] = a.Retry
		}
	}
	rep, err := m.Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("class study: %w", err)
	}
	return &PriorityReport{Classes: c.Classes, Workload: rep.Workloads[0], Policies: rep.Policies,
		WallSeconds: round3(time.Since(start).Seconds())}, nil
}

// writePriorities renders the study as a section of the fleet report.
func writePriorities(b *strings.Builder, p *PriorityReport) {
	if p == nil || len(p.Workload.Policies) == 0 {
		return
	}
	var cls []string
	for _, c := range p.Classes {
		cls = append(cls, fmt.Sprintf("%s %.0f %% at priority %d", c.Name, 100*c.Share, c.Priority))
	}
	fmt.Fprintf(b, "### Priorities: shedding or flow control\n\n")
	fmt.Fprintf(b, "`%s` with its traffic split into %s (each its own fairness ID), under each admission scheme "+
		"(%.0f s). Legacy admission refuses the sheddable class while the pool is saturated; flow control holds "+
		"requests in the EPP and releases them by priority, but orders only its own queue, so what a critical "+
		"request finds in the server depends on how much the scheme lets in, unless the request carries its "+
		"priority into the server's own queue (the `-engine` arms). Success is the share of a class's "+
		"requests that completed; TTFT is over those.", p.Workload.Name, strings.Join(cls, " and "), p.WallSeconds)
	switch {
	case slices.Contains(retryingClasses(p), true):
		b.WriteString(" Evicted is the share of a class's requests that in-flight eviction ended on the server to free " +
			"room for a higher priority (a 429), on their last attempt; in brackets, how many of the class's attempts " +
			"were evicted during the measured window, whenever their requests arrived (more when evictions hit " +
			"requests that arrived in the warm-up). In the `-retry` arms the client sends an evicted request again " +
			"(same prompt, class and fairness ID) after a backoff: success counts a request if any attempt completed, " +
			"its TTFT runs from the client's first send, and attempts is the mean number of sends per request. " +
			"Elsewhere the client does not retry, and success counts no evicted request.")
	case slices.Contains(evictingClasses(p), true):
		b.WriteString(" Evicted is the share of a class's requests that in-flight eviction ended on the server to free " +
			"room for a higher priority (a 429 the client does not retry; success counts none of them), and in brackets " +
			"how many of the class's requests were evicted during the measured window, whenever they arrived (more when " +
			"evictions hit requests that arrived in the warm-up).")
	}
	b.WriteString("\n\n")
	writeClassTable(b, p)
}

// writeFairness renders the fairness study as a section of the report.
func writeFairness(b *strings.Builder, p *PriorityReport) {
	if p == nil || len(p.Workload.Policies) == 0 {
		return
	}
	var cls []string
	for _, c := range p.Classes {
		cls = append(cls, fmt.Sprintf("%s %.0f %%", c.Name, 100*c.Share))
	}
	fmt.Fprintf(b, "### Fairness between flows in one band\n\n")
	fmt.Fprintf(b, "`%s` with its traffic split into %s, each its own fairness ID at the same priority, flow control "+
		"holding the pool to 96 requests per server; the band's fairness policy chooses which flow's oldest request "+
		"goes next (%.0f s). Success is the share of a class's requests that completed; TTFT is over those.\n\n",
		p.Workload.Name, strings.Join(cls, " and "), p.WallSeconds)
	writeClassTable(b, p)
}

// writeClassTable writes a class study's policies and per-class table,
// with a column of requests within the objective for each class that has a
// TTFT objective, an evicted column for each class some scheme evicted and
// an attempts column for each class whose clients retried.
func writeClassTable(b *strings.Builder, p *PriorityReport) {
	for _, l := range p.Workload.Policies {
		fmt.Fprintf(b, "- `%s`: %s\n", l.Policy, p.Policies[l.Policy])
	}
	evicting, retrying := evictingClasses(p), retryingClasses(p)
	b.WriteString("\n| scheme | QPS | out tok/s |")
	align := "\n|---|---:|---:|"
	for i, c := range p.Classes {
		fmt.Fprintf(b, " %s ok %% |", c.Name)
		if c.TTFTSLOMs > 0 {
			fmt.Fprintf(b, " %s ≤ objective %% |", c.Name)
			align += "---:|"
		}
		if evicting[i] {
			fmt.Fprintf(b, " %s evicted %% (in window) |", c.Name)
			align += "---:|"
		}
		if retrying[i] {
			fmt.Fprintf(b, " %s attempts |", c.Name)
			align += "---:|"
		}
		fmt.Fprintf(b, " %s TTFT p50 | %s TTFT p90 |", c.Name, c.Name)
		align += "---:|---:|---:|"
	}
	b.WriteString(align + "\n")
	for _, l := range p.Workload.Policies {
		for _, s := range l.Stages {
			fmt.Fprintf(b, "| %s | %g | %.0f |", l.Policy, s.QPS, s.OutputTokensPerS)
			for i, c := range s.Classes {
				fmt.Fprintf(b, " %.1f |", c.SuccessPct)
				if i < len(p.Classes) && p.Classes[i].TTFTSLOMs > 0 {
					fmt.Fprintf(b, " %.1f |", c.TTFTSLOMetPct)
				}
				if evicting[i] {
					fmt.Fprintf(b, " %.1f (%d) |", c.EvictedPct, c.WindowEvicted)
				}
				if retrying[i] {
					fmt.Fprintf(b, " %.2f |", float64(c.Requests+c.Retries)/float64(max(c.Requests, 1)))
				}
				fmt.Fprintf(b, " %s | %s |", secs(c.TTFT.P50), secs(c.TTFT.P90))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

// evictingClasses says, per class, whether any stage evicted some of its
// requests.
func evictingClasses(p *PriorityReport) []bool {
	out := make([]bool, len(p.Classes))
	for _, l := range p.Workload.Policies {
		for _, s := range l.Stages {
			for i, c := range s.Classes {
				if i < len(out) && (c.EvictedPct > 0 || c.WindowEvicted > 0) {
					out[i] = true
				}
			}
		}
	}
	return out
}

// retryingClasses says, per class, whether any stage's clients sent some
// of its requests again.
func retryingClasses(p *PriorityReport) []bool {
	out := make([]bool, len(p.Classes))
	for _, l := range p.Workload.Policies {
		for _, s := range l.Stages {
			for i, c := range s.Classes {
				if i < len(out) && c.Retries > 0 {
					out[i] = true
				}
			}
		}
	}
	return out
}
