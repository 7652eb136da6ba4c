package main

import (
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// series is one line of a plot: y against endpoints; dashed lines are
// baselines.
type series struct {
	label  string
	xys    plotter.XYs
	dashed bool
}

// overheadPlots draws the overhead plots into dir and returns their file
// names: per prompt size, the p99 latency to the routing decision at the
// reference rate against endpoints, EPP solid and floor dashed, a colour
// per concurrency (the gap is the added latency; log scale, because it
// spans from microseconds to the 1,000-endpoint collapse); and the EPP's
// req/s per core against endpoints.
func overheadPlots(rep *overhead.Report, dir string) ([]string, error) {
	var files []string
	for _, p := range promptSizes(rep.Rows) {
		var ss []series
		for _, c := range concurrencies(rep.Rows) {
			ss = append(ss,
				series{label: fmt.Sprintf("EPP, C=%d", c), xys: byEndpoints(rep.Rows, p, c, func(r overhead.Row) float64 { return r.EPP.Reference(p99ms).Median })},
				series{label: fmt.Sprintf("floor, C=%d", c), dashed: true, xys: byEndpoints(rep.Rows, p, c, func(r overhead.Row) float64 { return r.Floor.Reference(p99ms).Median })})
		}
		name := fmt.Sprintf("overhead-p99-%dKiB.png", p>>10)
		title := fmt.Sprintf("p99 latency to the routing decision at the reference rate, %d KiB prompts", p>>10)
		if err := savePlot(filepath.Join(dir, name), title, "p99 latency (ms, log scale)", ss); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	var ss []series
	for _, p := range promptSizes(rep.Rows) {
		for _, c := range concurrencies(rep.Rows) {
			ss = append(ss, series{label: fmt.Sprintf("C=%d, %d KiB", c, p>>10), dashed: p != rep.Rows[0].PromptBytes,
				xys: byEndpoints(rep.Rows, p, c, func(r overhead.Row) float64 { return r.EPP.Capacity(overhead.Run.PerCore).Median })})
		}
	}
	name := "overhead-per-core.png"
	if err := savePlot(filepath.Join(dir, name), "EPP requests/s per core at capacity (scraping included)", "req/s per core (log scale)", ss); err != nil {
		return nil, err
	}
	return append(files, name), nil
}

func p99ms(r overhead.Run) float64 { return r.P99us / 1000 }

// byEndpoints is y of the rows at prompt size p and concurrency c, against
// their endpoint count.
func byEndpoints(rows []overhead.Row, p, c int, y func(overhead.Row) float64) plotter.XYs {
	var out plotter.XYs
	for _, r := range rows {
		if v := y(r); r.PromptBytes == p && r.Concurrency == c && v > 0 { // NaN and 0 have no place on a log scale
			out = append(out, plotter.XY{X: float64(r.Endpoints), Y: v})
		}
	}
	return out
}

// savePlot draws the series on log-log axes; series in pairs share a
// colour (the second of a pair dashed).
func savePlot(path, title, ylabel string, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "simulated endpoints (log scale)"
	p.Y.Label.Text = ylabel
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	n := 0
	for i, s := range ss {
		pts := positive(s.xys)
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot %q: %w", filepath.Base(path), err)
		}
		col := plotutil.Color(i / 2)
		if !pairs(ss) {
			col = plotutil.Color(i)
		}
		l.Color, sc.Color = col, col
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l, sc)
		p.Legend.Add(s.label, l, sc)
		n++
	}
	if n == 0 {
		return fmt.Errorf("plot %q: no data", filepath.Base(path))
	}
	// Room around the data, also when there is a single point.
	p.X.Min, p.X.Max = p.X.Min/2, p.X.Max*2
	p.Y.Min, p.Y.Max = p.Y.Min/2, p.Y.Max*2
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %q: %w", filepath.Base(path), err)
	}
	return nil
}

// pairs reports whether ss alternates solid and dashed series.
func pairs(ss []series) bool {
	for i, s := range ss {
		if s.dashed != (i%2 == 1) {
			return false
		}
	}
	return true
}

// positive keeps the points a log scale can show.
func positive(xys plotter.XYs) plotter.XYs {
	var out plotter.XYs
	for _, xy := range xys {
		if xy.X > 0 && xy.Y > 0 {
			out = append(out, xy)
		}
	}
	return out
}

func promptSizes(rows []overhead.Row) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r.PromptBytes)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func concurrencies(rows []overhead.Row) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r.Concurrency)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
