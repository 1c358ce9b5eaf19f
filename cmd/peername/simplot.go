package main

// Plots of a simulator run (peername sim -plot DIR), drawn with gonum's plot
// package rather than by hand: it does axes, ticks, legends and PNG/SVG
// encoding, which a report generator of our own would only repeat.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/peername/peername/overlay/sim"
)

// labelled is one run's series with its legend label.
type labelled struct {
	label  string
	series *sim.Series
}

// successBucket is the width of the success-over-time bins.
const successBucket = 5 * time.Second

// writePlots writes the plots of runs (one line or bar set per run) into dir:
// latency-cdf.png, hops.png, traffic-msgs.png, traffic-bytes.png and
// success.png. It returns the paths written.
func writePlots(dir, title string, runs []labelled) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plots: %w", err)
	}
	var written []string
	save := func(p *plot.Plot, name string) error {
		path := filepath.Join(dir, name)
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
			return fmt.Errorf("plots: %s: %w", name, err)
		}
		written = append(written, path)
		return nil
	}
	plots := []struct {
		name string
		draw func(string, []labelled) (*plot.Plot, error)
	}{
		{"latency-cdf.png", latencyCDF},
		{"hops.png", hopsHistogram},
		{"traffic-msgs.png", func(t string, r []labelled) (*plot.Plot, error) { return traffic(t, r, false) }},
		{"traffic-bytes.png", func(t string, r []labelled) (*plot.Plot, error) { return traffic(t, r, true) }},
		{"success.png", successOverTime},
	}
	var errs []error
	for _, pl := range plots {
		p, err := pl.draw(title, runs)
		if err == nil {
			err = save(p, pl.name)
		}
		errs = append(errs, err)
	}
	return written, errors.Join(errs...)
}

func newPlot(title, sub, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title + ": " + sub
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// latencyCDF plots, for each run, the fraction of successful lookups that
// finished within each latency.
func latencyCDF(title string, runs []labelled) (*plot.Plot, error) {
	p := newPlot(title, "lookup latency (successful lookups)", "latency (ms, virtual)", "fraction of lookups")
	var lines []any
	for _, r := range runs {
		var ms []float64
		for _, s := range r.series.Lookups {
			if s.OK {
				ms = append(ms, float64(s.Latency)/float64(time.Millisecond))
			}
		}
		slices.Sort(ms)
		pts := make(plotter.XYs, len(ms))
		for i, v := range ms {
			pts[i] = plotter.XY{X: v, Y: float64(i+1) / float64(len(ms))}
		}
		lines = append(lines, r.label, pts)
	}
	return p, plotutil.AddLines(p, lines...)
}

// hopsHistogram plots how many successful lookups took each number of hops,
// one bar set per run.
func hopsHistogram(title string, runs []labelled) (*plot.Plot, error) {
	p := newPlot(title, "hops per successful lookup", "hops", "lookups")
	maxHops := 0
	for _, r := range runs {
		for _, s := range r.series.Lookups {
			if s.OK {
				maxHops = max(maxHops, s.Hops)
			}
		}
	}
	width := vg.Points(40 / float64(len(runs)))
	for i, r := range runs {
		counts := make(plotter.Values, maxHops+1)
		for _, s := range r.series.Lookups {
			if s.OK {
				counts[s.Hops]++
			}
		}
		bc, err := plotter.NewBarChart(counts, width)
		if err != nil {
			return nil, err
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		bc.Offset = width * vg.Length(float64(i)-float64(len(runs)-1)/2)
		p.Add(bc)
		p.Legend.Add(r.label, bc)
	}
	p.NominalX(hopLabels(maxHops)...)
	return p, nil
}

func hopLabels(n int) []string {
	out := make([]string, n+1)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}

// traffic plots the datagrams (or bytes) sent per live node in each virtual
// second.
func traffic(title string, runs []labelled, bytes bool) (*plot.Plot, error) {
	sub, y := "messages sent per node", "datagrams per node per second"
	if bytes {
		sub, y = "bytes sent per node", "bytes per node per second"
	}
	p := newPlot(title, sub, "virtual time (s)", y)
	var lines []any
	for _, r := range runs {
		pts := make(plotter.XYs, 0, len(r.series.Traffic))
		for sec, t := range r.series.Traffic {
			v := float64(t.Msgs)
			if bytes {
				v = float64(t.Bytes)
			}
			pts = append(pts, plotter.XY{X: float64(sec), Y: v / float64(max(t.Live, 1))})
		}
		lines = append(lines, r.label, pts)
	}
	return p, plotutil.AddLines(p, lines...)
}

// successOverTime plots the share of lookups that returned the current
// record among those that completed in each 5 s of virtual time.
func successOverTime(title string, runs []labelled) (*plot.Plot, error) {
	p := newPlot(title, fmt.Sprintf("lookup success over time (%s bins)", successBucket), "virtual time (s)", "success rate")
	p.Y.Min, p.Y.Max = 0, 1.02
	var lines []any
	for _, r := range runs {
		type bin struct{ ok, all int }
		var bins []bin
		for _, s := range r.series.Lookups {
			b := int(s.At / successBucket)
			for len(bins) <= b {
				bins = append(bins, bin{})
			}
			bins[b].all++
			if s.OK {
				bins[b].ok++
			}
		}
		var pts plotter.XYs
		for b, v := range bins {
			if v.all > 0 {
				pts = append(pts, plotter.XY{X: (float64(b) + 0.5) * successBucket.Seconds(), Y: float64(v.ok) / float64(v.all)})
			}
		}
		lines = append(lines, r.label, pts)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return nil, err
	}
	return p, nil
}
