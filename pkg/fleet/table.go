package fleet

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints every stage of every ladder as an aligned text table,
// followed by the checks that ran.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, wl := range r.Workloads {
		fmt.Fprintf(tw, "\n%s (%s): %s\n", wl.Name, wl.ID, wl.Description)
		fmt.Fprintf(tw, "%d × %s, %d KV tokens/server, working set %.0f %% of fleet KV (%.1f servers); SLO TTFT %.0f ms, ITL %.0f ms\n",
			wl.Servers, wl.Profile, wl.KVTokensPerServer, wl.WorkingSetPct, wl.WorkingSetServers, wl.SLO.TTFTMs, wl.SLO.ITLMs)
		if rr := r.Replication; rr != nil {
			fmt.Fprintf(tw, "EPP: %s, requests handed to the replicas in turn\n", rr.label())
		}
		fmt.Fprintln(tw, "policy\tQPS\treqs\tok%\tout tok/s\tTTFT p50\tp90\tp99 ms\te2e p50\tp99 ms\tTPOT p50\thit%\tload CV\tgoodput%\t")
		for _, l := range wl.Policies {
			for _, s := range l.Stages {
				fmt.Fprintf(tw, "%s\t%g\t%d\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.3f\t%.1f\t\n",
					l.Policy, s.QPS, s.Requests, s.SuccessPct, s.OutputTokensPerS, s.TTFT.P50, s.TTFT.P90, s.TTFT.P99,
					s.E2E.P50, s.E2E.P99, s.TPOT.P50, s.CacheHitPct, s.LoadCV, s.GoodputPct)
				for _, c := range s.Classes {
					fmt.Fprintf(tw, "  %s (priority %d)\t\t%d\t%.1f\t\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\t\t\t\t\n",
						c.Name, c.Priority, c.Requests, c.SuccessPct, c.TTFT.P50, c.TTFT.P90, c.TTFT.P99, c.E2E.P50, c.E2E.P99)
				}
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	var errs []string
	for _, l := range allLadders(r) {
		for _, s := range l.Stages {
			if s.FirstError != "" {
				errs = append(errs, fmt.Sprintf("%s at %g QPS: %s", l.Policy, s.QPS, s.FirstError))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nrequests that failed to route or submit (first error per stage):\n  %s\n", strings.Join(errs, "\n  "))
	}
	writeEvictionLines(w, r)
	writeDisaggLines(w, r)
	writeEncoderLines(w, r)
	writeP2PLines(w, r)
	if len(r.Checks) > 0 {
		fmt.Fprintln(w)
		for _, c := range r.Checks {
			fmt.Fprintf(w, "[%s] %s: %s\n", c.Status, c.Name, c.Detail)
		}
	}
	return nil
}

func allLadders(r *Report) []*PolicyLadder {
	var out []*PolicyLadder
	for i := range r.Workloads {
		for j := range r.Workloads[i].Policies {
			out = append(out, &r.Workloads[i].Policies[j])
		}
	}
	return out
}

// writeStageTable prints, under title, a table with columns head (tab
// separated) and one row per stage for which row returns one (its cells
// after policy and QPS); nothing when no stage has one.
func writeStageTable(w io.Writer, r *Report, title, head string, row func(*StageResult) (string, bool)) {
	var rows []string
	for _, l := range allLadders(r) {
		for i := range l.Stages {
			if cells, ok := row(&l.Stages[i]); ok {
				rows = append(rows, fmt.Sprintf("%s\t%g\t%s\t", l.Policy, l.Stages[i].QPS, cells))
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "policy\tQPS\t%s\t\n", head)
	for _, row := range rows {
		fmt.Fprintln(tw, row)
	}
	_ = tw.Flush()
}

// writeDisaggLines lists what P/D disaggregation did in each stage that
// had prefill servers or disaggregated requests.
func writeDisaggLines(w io.Writer, r *Report) {
	var lines []string
	for _, l := range allLadders(r) {
		for _, s := range l.Stages {
			if d := s.Disagg; d != nil {
				lines = append(lines, fmt.Sprintf("%s at %g QPS: %d prefill servers; %.1f %% disaggregated (%.1f %% fell back to a local prefill); "+
					"KV pulled %.0f tok/s, %.0f per pull; prefill servers did %.1f %% of the work; prefill phase p50/p90 %.0f/%.0f ms, "+
					"hand-off to the first token p50/p90 %.0f/%.0f ms",
					l.Policy, s.QPS, d.PrefillServers, d.DisaggregatedPct, d.FallbackPct, d.KVTransferTokensPerS, d.KVTokensPerTransfer,
					d.PrefillWorkPct, d.PrefillMs.P50, d.PrefillMs.P90, d.HandoffMs.P50, d.HandoffMs.P90))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nprefill/decode disaggregation:\n  %s\n", strings.Join(lines, "\n  "))
	}
}

// writeEvictionLines lists the stages whose requests in-flight eviction
// ended (a 429, reason evicted): the attempts evicted, the retries their
// clients sent, and the share of requests that ended evicted.
func writeEvictionLines(w io.Writer, r *Report) {
	title := "in-flight eviction (attempts evicted, retries sent, share of requests lost)"
	writeStageTable(w, r, title, "evicted\tretries\tlost %", func(s *StageResult) (string, bool) {
		evicted := max(s.EvictedAttempts, s.Evicted) // a report from before retries counts only Evicted
		if evicted == 0 {
			return "", false
		}
		return fmt.Sprintf("%d\t%d\t%.1f", evicted, s.Retries, 100*float64(s.Evicted)/float64(max(s.Requests, 1))), true
	})
}
