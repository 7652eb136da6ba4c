// Package fleetplot draws the fleet benchmark's QPS curves with gonum/plot:
// per workload, TTFT p90 (log scale) and output throughput against offered
// QPS, one line per policy. It is separate from package fleet so that the
// EPP binary, which embeds the simulator for `epp simulate`, does not link
// the plotting stack.
package fleetplot

import (
	"errors"
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/openepp/openepp/pkg/fleet"
)

// Size of every image.
const (
	width  = 16 * vg.Centimeter
	height = 11 * vg.Centimeter
)

// minTTFTMs keeps the log axis defined when a stage measured nothing.
const minTTFTMs = 1

// Write draws both plots of every workload of r into dir (which must
// exist) under fleet.PlotName, and returns the files written.
func Write(r *fleet.Report, dir string) ([]string, error) {
	var files []string
	var errs []error
	for i := range r.Workloads {
		w := &r.Workloads[i]
		for _, kind := range []string{"ttft", "throughput"} {
			p, err := draw(w, kind)
			if err != nil {
				errs = append(errs, fmt.Errorf("plot %s %s: %w", w.Name, kind, err))
				continue
			}
			path := filepath.Join(dir, fleet.PlotName(w.Name, kind))
			if err := p.Save(width, height, path); err != nil {
				errs = append(errs, fmt.Errorf("save %s: %w", path, err))
				continue
			}
			files = append(files, path)
		}
	}
	return files, errors.Join(errs...)
}

// draw builds one plot: a line with points per policy.
func draw(w *fleet.WorkloadReport, kind string) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "offered QPS"
	// The curves leave the lower right of the TTFT plot (log scale, rising)
	// and the upper left of the throughput plot free.
	p.Legend.Top = kind != "ttft"
	p.Legend.Left = kind != "ttft"
	switch kind {
	case "ttft":
		p.Title.Text = fmt.Sprintf("%s (%s): TTFT p90", w.Name, w.ID)
		p.Y.Label.Text = "TTFT p90 (ms, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	default:
		p.Title.Text = fmt.Sprintf("%s (%s): output throughput", w.Name, w.ID)
		p.Y.Label.Text = "output tokens/s"
		p.Y.Min = 0
	}
	for i, l := range w.Policies {
		pts := make(plotter.XYs, len(l.Stages))
		for j, s := range l.Stages {
			pts[j].X = s.QPS
			if kind == "ttft" {
				pts[j].Y = max(s.TTFT.P90, minTTFTMs)
			} else {
				pts[j].Y = s.OutputTokensPerS
			}
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		c := colour(i)
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		line.Dashes = plotutil.Dashes(i / len(palette))
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(l.Policy, line, points)
	}
	return p, nil
}

// palette is colour-blind friendly (Okabe–Ito, with grey for its yellow,
// which is unreadable on white).
var palette = []color.RGBA{
	{0, 0, 0, 255}, {230, 159, 0, 255}, {86, 180, 233, 255}, {0, 158, 115, 255},
	{213, 94, 0, 255}, {0, 114, 178, 255}, {204, 121, 167, 255}, {128, 128, 128, 255},
}

func colour(i int) color.Color { return palette[i%len(palette)] }
