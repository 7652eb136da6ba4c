package fleet

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteReplicas writes the replica study's section (markdown, readable as
// text).
func WriteReplicas(w io.Writer, r *ReplicaReport) error {
	var b strings.Builder
	writeReplicas(&b, r)
	_, err := io.WriteString(w, b.String())
	return err
}

// replicaNotes say what the replica model leaves out.
var replicaNotes = "Not modelled: what sync costs the EPPs (CPU, bandwidth) and lost or late batches; every replica's flush " +
	"ticks fall at the same instants; and every replica reads the same scrapes, while live replicas scrape on their " +
	"own phases. Sync shares the prefix index and the dispatches of the plugins that count them (queue-scorer); a " +
	"replica's other state (its in-flight counts, its flow-control queue) stays its own, as it does live. The precise " +
	"arms receive every server's KV events at the instant its engine caches or evicts the blocks (over ZeroMQ they take " +
	"well under a millisecond) and tokenize in process, with no tokenizer round trip; with replica sync they share " +
	"their speculative entries, their only state the events do not give every replica."

// writeReplicas renders the study as a section of the fleet report.
func writeReplicas(b *strings.Builder, r *ReplicaReport) {
	if r == nil || len(r.Workloads) == 0 {
		return
	}
	var names []string
	for _, w := range r.Workloads {
		names = append(names, "`"+w.Workload+"`")
	}
	b.WriteString("### Active-active EPP replicas and replica sync\n\n")
	fmt.Fprintf(b, "`%s` on %s run as one EPP and as active-active replicas behind a proxy that hands each request "+
		"to the next replica in turn. Every replica has its own plugin instances, so its approximate prefix index "+
		"records only the requests it routed and its queue-scorer counts only the requests it routed since the last "+
		"scrape, unless replica sync sends them to the others (batched, at the next flush tick, applied one latency "+
		"later): the prefix-index insertions alone, or the insertions and the dispatches. On each workload the "+
		"reference climbed the ladder to its knee (the first stage completing under 90 %% of the offered requests/s); "+
		"every arm runs there and at the highest stage at most 2/3 of it, each stage averaged over the workload's "+
		"seeds (%.0f s in all). Cache hit is the servers' token-weighted prefix-cache hit rate; goodput the share of "+
		"requests meeting the workload's TTFT and ITL objectives.\n\n", r.Policy, strings.Join(names, " and "), r.WallSeconds)
	for _, a := range r.Workloads[0].Arms {
		fmt.Fprintf(b, "- `%s`: %s\n", a.Name, a.Description)
	}
	b.WriteString("\n")
	for i := range r.Workloads {
		writeReplicaWorkload(b, &r.Workloads[i])
	}
	b.WriteString(replicaNotes + "\n\n")
}

// writeReplicaWorkload renders the study on one workload: its stages, its
// table and the findings.
func writeReplicaWorkload(b *strings.Builder, r *ReplicaWorkloadReport) {
	if len(r.Arms) == 0 || len(r.QPS) == 0 {
		return
	}
	var at []string
	for i, q := range r.QPS {
		at = append(at, fmt.Sprintf("%g QPS (%s)", q, loadLabel(r.Saturated[i])))
	}
	fmt.Fprintf(b, "**%s**: `%s` reached its knee at %g QPS; compared at %s for one EPP, over %d seeds.\n",
		r.Workload, r.Arms[0].Name, r.KneeQPS, strings.Join(at, " and "), r.Seeds)
	b.WriteString("\n| EPP | QPS | cache hit | TTFT p50 | TTFT p90 | out tok/s | goodput |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for i, q := range r.QPS {
		for _, a := range r.Arms {
			s := a.Stages[i]
			fmt.Fprintf(b, "| `%s` | %g | %.1f %% | %s | %s | %.0f | %.1f %% |\n", a.Name, q,
				s.CacheHitPct, secs(s.TTFT.P50), secs(s.TTFT.P90), s.OutputTokensPerS, s.GoodputPct)
		}
	}
	b.WriteString("\n")
	for i := range r.QPS {
		b.WriteString(replicaFindings(r, i) + "\n\n")
	}
}

func loadLabel(saturated bool) string {
	if saturated {
		return "saturated"
	}
	return "below saturation"
}

// replicaFindings says, from the numbers, what each arm did at stage i
// against the reference (the first arm), for a synced arm how much of the
// hit rate the unsynced arm of as many replicas lost it won back, and for a
// full sync what sharing the dispatches added to the same sync of the
// insertions alone; it ends with the reference's seed-to-seed range, to
// judge the differences by.
func replicaFindings(r *ReplicaWorkloadReport, i int) string {
	ref, refArm := r.Arms[0].Stages[i], r.Arms[0]
	out := fmt.Sprintf("On `%s` at %g QPS (%s for `%s`: %.1f %% cache hit, TTFT p90 %s, %.0f output tok/s, %.1f %% goodput): ",
		r.Workload, r.QPS[i], loadLabel(r.Saturated[i]), refArm.Name, ref.CacheHitPct, secs(ref.TTFT.P90), ref.OutputTokensPerS, ref.GoodputPct)
	var parts []string
	for _, a := range r.Arms[1:] {
		s := a.Stages[i]
		p := fmt.Sprintf("`%s` hit %.1f %% (%s points), TTFT p90 %s, output %s, goodput %.1f %%", a.Name, s.CacheHitPct,
			signed(s.CacheHitPct-ref.CacheHitPct), secs(s.TTFT.P90), pctChange(s.OutputTokensPerS, ref.OutputTokensPerS), s.GoodputPct)
		if u, ok := unsynced(r, a); ok && a.Sync {
			own := oneReplica(r, a)
			if lost := own.Stages[i].CacheHitPct - u.Stages[i].CacheHitPct; lost >= 1 {
				p = fmt.Sprintf("%s, winning back %.0f %% of the hit rate `%s` lost", p, 100*(s.CacheHitPct-u.Stages[i].CacheHitPct)/lost, u.Name)
				if own.Name != refArm.Name {
					p += fmt.Sprintf(" against `%s`", own.Name)
				}
			}
			if own.Name != refArm.Name {
				o := own.Stages[i]
				p = fmt.Sprintf("%s; against `%s` itself: output %s, TTFT p90 %s, goodput %s points", p, own.Name,
					pctChange(s.OutputTokensPerS, o.OutputTokensPerS), pctChange(s.TTFT.P90, o.TTFT.P90), signed(s.GoodputPct-o.GoodputPct))
			}
		}
		if t, ok := indexOnlyTwin(r, a); ok {
			ts := t.Stages[i]
			p = fmt.Sprintf("%s; sharing the dispatches too, against `%s`: output %s, TTFT p90 %s, goodput %s points", p, t.Name,
				pctChange(s.OutputTokensPerS, ts.OutputTokensPerS), pctChange(s.TTFT.P90, ts.TTFT.P90), signed(s.GoodputPct-ts.GoodputPct))
		}
		parts = append(parts, p)
	}
	sp := refArm.Spread[i]
	return out + strings.Join(parts, "; ") + fmt.Sprintf(". Over its %d seeds `%s` ranged over %.0f–%.0f output tok/s and %.1f–%.1f %% goodput.",
		r.Seeds, refArm.Name, sp.OutputTokensPerS[0], sp.OutputTokensPerS[1], sp.GoodputPct[0], sp.GoodputPct[1])
}

// unsynced is the study's arm of a's policy and as many replicas as a
// without sync.
func unsynced(r *ReplicaWorkloadReport, a ReplicaArmReport) (ReplicaArmReport, bool) {
	for _, u := range r.Arms {
		if u.Policy == a.Policy && u.Replicas == a.Replicas && u.Replicas > 1 && !u.Sync {
			return u, true
		}
	}
	return ReplicaArmReport{}, false
}

// oneReplica is the study's one-EPP arm of a's policy, else the reference.
func oneReplica(r *ReplicaWorkloadReport, a ReplicaArmReport) ReplicaArmReport {
	for _, o := range r.Arms {
		if o.Policy == a.Policy && o.Replicas <= 1 {
			return o
		}
	}
	return r.Arms[0]
}

// indexOnlyTwin is, for a sync with dispatches, the study's arm syncing
// only the insertions of as many replicas at the same flush and latency.
func indexOnlyTwin(r *ReplicaWorkloadReport, a ReplicaArmReport) (ReplicaArmReport, bool) {
	if !a.Sync || !a.Dispatches {
		return ReplicaArmReport{}, false
	}
	for _, t := range r.Arms {
		if want := a.ReplicationReport; !t.Dispatches && t.Policy == a.Policy {
			want.Dispatches = false
			if t.ReplicationReport == want {
				return t, true
			}
		}
	}
	return ReplicaArmReport{}, false
}

// signed formats a difference with one decimal and its sign, ±0.0 for
// none.
func signed(v float64) string {
	if math.Round(v*10) == 0 {
		return "±0.0"
	}
	return fmt.Sprintf("%+.1f", v)
}

// pctChange formats the change from base to v in percent.
func pctChange(v, base float64) string {
	if base <= 0 {
		return "—"
	}
	if c := 100 * (v/base - 1); math.Round(c) != 0 {
		return fmt.Sprintf("%+.0f %%", c)
	}
	return "±0 %"
}
