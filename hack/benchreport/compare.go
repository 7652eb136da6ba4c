package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// renderCompare writes a comparison run's second build against the first
// (benchoverhead --compare): per cell, the paired differences of the two
// builds' latencies at the same reference rate and the ratio of their
// requests per core.
func renderCompare(w io.Writer, rep *overhead.Report) {
	s := rep.Settings
	if s.Compare == "" {
		return
	}
	fmt.Fprintf(w, "### Comparison: `%s` against the EPP arm\n\n", s.Compare)
	fmt.Fprintf(w, "A second EPP build (or the same with other settings) was measured like the EPP arm in every cell, the two "+
		"alternating run by run (which runs first swaps every repeat), each paused while another arm ran.")
	if len(s.CompareFlags) > 0 {
		fmt.Fprintf(w, " Its extra flags: `%s`.", strings.Join(s.CompareFlags, " "))
	}
	if s.ComparePickerConfig != s.PickerConfig {
		fmt.Fprintf(w, " Its EndpointPickerConfig:\n\n```yaml\n%s\n```\n\n", strings.TrimRight(s.ComparePickerConfig, "\n"))
	} else {
		fmt.Fprintf(w, " It ran the EPP arm's EndpointPickerConfig.")
	}
	fmt.Fprintf(w, " Differences are compared − EPP per repeat (negative: the compared build is faster), with the median's "+
		"interval as in the tables above; per core is the ratio of the capacity runs' requests per CPU second, sustained "+
		"each build's own ladder (measured once, so a step of the ladder is its resolution).\n\n"+
		"| endpoints | C | prompt | rate req/s | added p99 µs EPP / compared | **p50 difference µs** | **p99 difference µs** | "+
		"service p99 difference µs | per core compared ÷ EPP | sustained req/s EPP / compared | idle cores EPP / compared |\n"+
		"|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	idle := map[int]overhead.Idle{}
	for _, i := range rep.Idle {
		idle[i.Endpoints] = i
	}
	for _, r := range rep.Rows {
		if r.Compare == nil {
			continue
		}
		line := func(rate string, p50, p99, svc, addedEPP, addedCmp overhead.Stat, perCore, sustained string) {
			fmt.Fprintf(w, "| %d | %d | %d KiB | %s | %s / %s | **%s** | **%s** (%s) | %s | %s | %s | %s / %s |\n",
				r.Endpoints, r.Concurrency, r.PromptBytes>>10, rate, signedMedian(addedEPP), signedMedian(addedCmp),
				signedMedian(p50), signedMedian(p99), ciText(p99, signed), signedMedian(svc), perCore, sustained,
				fixed2(idle[r.Endpoints].EPPCores), fixed2(idle[r.Endpoints].CompareCores))
		}
		q := r.CompareRatio(overhead.Run.PerCore)
		perCore := "n/a"
		if q.N > 0 {
			b := ciOrRange(q)
			perCore = fmt.Sprintf("%.3f (%.3f … %.3f)", q.Median, b.Lo, b.Hi)
		}
		cmpRow := r
		cmpRow.EPP = *r.Compare
		line(thousands(r.ReferenceRate), r.CompareDiff(p50us), r.CompareDiff(p99us), r.CompareDiff(svcP99us),
			r.AddedP99(), cmpRow.AddedP99(), perCore, thousands(r.EPP.Sustained)+" / "+thousands(r.Compare.Sustained))
		for _, lp := range r.Loads {
			cmpLoad := lp
			cmpLoad.EPP = lp.Compare
			line(thousands(lp.Rate), lp.CompareDiff(p50us), lp.CompareDiff(p99us), lp.CompareDiff(svcP99us),
				lp.Added(p99us), cmpLoad.Added(p99us), "", "")
		}
	}
	fmt.Fprintln(w)
}

// ciOrRange is s with Lo and Hi set to its interval, or to its range when
// it has none.
func ciOrRange(s overhead.Stat) overhead.Stat {
	if s.Conf == 0 {
		s.Lo, s.Hi = s.Min, s.Max
	}
	return s
}
