package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// loadRow is row as measured at one of its fixed loads, so the table
// helpers apply to it unchanged.
func loadRow(row overhead.Row, lp overhead.LoadPoint) overhead.Row {
	row.ReferenceRate, row.Loads = lp.Rate, nil
	row.EPP = overhead.Arm{References: lp.EPP}
	row.Floor = overhead.Arm{References: lp.Floor}
	return row
}

// renderLoads writes, for each row measured at fixed loads, the added
// latency against the offered load, the reference rate included, and how
// the EPP's extra CPU splits between requests and background work.
func renderLoads(w io.Writer, rows []overhead.Row, idle []overhead.Idle) {
	for _, row := range rows {
		if len(row.Loads) == 0 {
			continue
		}
		fmt.Fprintf(w, "Added latency against the offered load, %d endpoints, C=%d, %d KiB (the reference runs' method at "+
			"fixed rates, %d repeats each; the interval is the median's confidence interval of at least 95 %% from the sign test, "+
			"or the range with fewer than six repeats; *extra CPU* is the EPP's CPU time minus the floor's, per second of run):\n\n"+
			"| offered req/s | EPP p50 / p99 µs | floor p50 / p99 µs | **added p50 / p99 µs** | added p99 interval µs | "+
			"added service-time p99 µs | generator lag p99 µs EPP / floor | CPU µs per request EPP / floor | extra CPU cores |\n"+
			"|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
			row.Endpoints, row.Concurrency, row.PromptBytes>>10, len(row.Loads[0].EPP))
		type point struct {
			r         overhead.Row
			reference bool
		}
		points := []point{{r: row, reference: true}}
		for _, lp := range row.Loads {
			points = append(points, point{r: loadRow(row, lp)})
		}
		slices.SortStableFunc(points, func(a, b point) int { return cmp.Compare(a.r.ReferenceRate, b.r.ReferenceRate) })
		var under []string
		var rates, extra []float64
		for _, p := range points {
			r, rate := p.r, thousands(p.r.ReferenceRate)
			if p.reference {
				rate += " (reference)"
			}
			e, f := r.EPP.Reference(cpuPerRequest), r.Floor.Reference(cpuPerRequest)
			cores := (e.Median - f.Median) * r.ReferenceRate / 1e6
			fmt.Fprintf(w, "| %s | %s | %s | **%s** | %s | %s | %s / %s | %s / %s | %s |\n", rate, latencies(r.EPP), latencies(r.Floor), added(r),
				ciText(r.AddedP99(), signed), signed(r.AddedServiceP99().Median),
				median(r.EPP.Reference(lagP99)), median(r.Floor.Reference(lagP99)), median(e), median(f), fixed2(cores))
			if a := r.AddedP99(); a.N > 0 && a.Median < targetAddedP99us {
				under = append(under, thousands(r.ReferenceRate))
			}
			if e.N > 0 && f.N > 0 {
				rates, extra = append(rates, r.ReferenceRate), append(extra, cores)
			}
		}
		where := "at none of these loads"
		if len(under) > 0 {
			where = "at " + strings.Join(under, ", ") + " req/s"
		}
		fmt.Fprintf(w, "\nThe median added p99 (from the intended send time) is under %s µs %s.", thousands(targetAddedP99us), where)
		if perRequest, background, ok := lineFit(rates, extra); ok {
			idleText := ""
			for _, i := range idle {
				if i.Endpoints == row.Endpoints {
					idleText = fmt.Sprintf(" (%s cores measured idle)", fixed2(i.EPPCores))
				}
			}
			fmt.Fprintf(w, " A straight line through the extra CPU against the offered rate splits it into the EPP's own request "+
				"handling, %s µs of CPU per request relative to the floor's (the slope; a few µs either way is noise), and work that does not grow with the "+
				"rate, %s cores (the intercept): scraping %d endpoints%s and the EPP's other background loops.",
				signed(perRequest*1e6), fixed2(background), row.Endpoints, idleText)
		}
		fmt.Fprint(w, busyText(row))
		fmt.Fprint(w, "\n\n")
	}
}

// busyText says how busy each server's core was at the reference rate and
// what that difference alone does to a tail on the scale of a single queue,
// whose waiting grows like 1/(1−busy): the part of the added p99 that comes
// from the EPP's extra work (its scraping) rather than from anything slow.
func busyText(row overhead.Row) string {
	busy := func(r overhead.Run) float64 {
		if r.WallSeconds <= 0 {
			return 0
		}
		return r.CPUSeconds / r.WallSeconds
	}
	e, f := row.EPP.Reference(busy), row.Floor.Reference(busy)
	floorP99 := row.Floor.Reference(func(r overhead.Run) float64 { return r.P99us })
	if e.N == 0 || f.N == 0 || floorP99.N == 0 || e.Median <= 0 || f.Median <= 0 || e.Median >= 1 || f.Median >= 1 {
		return ""
	}
	scaled := floorP99.Median * (1 - f.Median) / (1 - e.Median)
	return fmt.Sprintf(" At the reference rate the EPP kept its core %.0f %% busy and the floor %.0f %% (CPU time ÷ run time, "+
		"medians). On the scale of a single queue, whose waiting grows like 1/(1 − busy), the busier core alone turns the "+
		"floor's p99 of %s µs into %s µs: %s µs of added p99 (a rough scale, not a model of this system).",
		100*e.Median, 100*f.Median, thousands(floorP99.Median), thousands(scaled), signed(scaled-floorP99.Median))
}

// lineFit is the least-squares line y = slope·x + intercept through the
// points; ok is false with fewer than two distinct x.
func lineFit(x, y []float64) (slope, intercept float64, ok bool) {
	n := float64(len(x))
	if len(x) < 2 {
		return 0, 0, false
	}
	var sx, sy float64
	for i := range x {
		sx, sy = sx+x[i], sy+y[i]
	}
	mx, my := sx/n, sy/n
	var sxx, sxy float64
	for i := range x {
		sxx += (x[i] - mx) * (x[i] - mx)
		sxy += (x[i] - mx) * (y[i] - my)
	}
	if sxx == 0 {
		return 0, 0, false
	}
	slope = sxy / sxx
	return slope, my - slope*mx, true
}

// cpuPerRequest is a run's server CPU time per completed request, in µs.
func cpuPerRequest(r overhead.Run) float64 { return r.CPUPer1k() * 1e3 }

// fixed2 is x with two decimals, or n/a.
func fixed2(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", x)
}
