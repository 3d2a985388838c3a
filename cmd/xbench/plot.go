package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// sweepAxis labels the swept variable.
var sweepAxis = map[string]string{
	"threads": "threads (workers of one call; peers and peak probe alike)",
	"tk":      "Tk: keys per sequence",
	"tq":      "Tq: queries per sequence",
	"batch":   "B: batch size",
}

// series is one line of a plot: an implementation on one case.
type series struct {
	name string
	xy   plotter.XYs
}

// sweepSeries groups the successful results of a sweep into lines, one per
// implementation (and case, when the sweep covers several), with y the
// GFLOP/s or the median ms.
func sweepSeries(results []Result, metric string) []series {
	cases := map[string]bool{}
	for _, r := range results {
		cases[r.Case] = true
	}
	byName := map[string]*series{}
	var order []string
	for _, r := range results {
		if r.State != stateOK || r.Sweep == "" {
			continue
		}
		name := r.Impl
		if r.Kind == "xattn" {
			name = "xattn " + r.Impl
		}
		if len(cases) > 1 {
			name = r.Case + ": " + name
		}
		s, ok := byName[name]
		if !ok {
			s = &series{name: name}
			byName[name] = s
			order = append(order, name)
		}
		y := r.GFLOPs
		if metric == "ms" {
			y = r.MedianMs
		}
		s.xy = append(s.xy, plotter.XY{X: float64(r.Value), Y: y})
	}
	out := make([]series, 0, len(order))
	for _, n := range order {
		s := byName[n]
		sort.Slice(s.xy, func(i, j int) bool { return s.xy[i].X < s.xy[j].X })
		out = append(out, *s)
	}
	return out
}

// writePlot draws the sweep of rep into path (.svg, .png or .pdf, by its
// extension): y (GFLOP/s or median ms) against the swept value, one line per
// implementation, and for GFLOP/s the machine's measured peak as a dashed
// line.
func writePlot(path string, rep *Report, metric string) error {
	lines := sweepSeries(rep.Results, metric)
	if len(lines) == 0 {
		return fmt.Errorf("plot %s: the sweep has no successful result", path)
	}
	key, cases, threads := "", map[string]bool{}, map[int]bool{}
	var caseNames []string
	for _, r := range rep.Results {
		if r.Sweep != "" {
			key = r.Sweep
		}
		if !cases[r.Case] {
			cases[r.Case] = true
			caseNames = append(caseNames, r.Case)
		}
		if r.State == stateOK {
			threads[r.Threads] = true
		}
	}

	p := plot.New()
	what := "GFLOP/s"
	p.Y.Label.Text = "GFLOP/s (xattn.FLOPs / median time)"
	if metric == "ms" {
		what = "time per call"
		p.Y.Label.Text = "median time per call (ms)"
	}
	p.Title.Padding = vg.Points(6)
	short := map[string]string{"threads": "threads", "tk": "Tk", "tq": "Tq", "batch": "batch"}[key]
	p.Title.Text = fmt.Sprintf("cross-attention %s vs %s: %s", what, short, strings.Join(caseNames, ", "))
	if key != "threads" && len(threads) == 1 {
		for t := range threads {
			p.Title.Text += fmt.Sprintf(", %d thread(s)", t)
		}
	}
	p.X.Label.Text = sweepAxis[key]
	p.Add(plotter.NewGrid())

	// x ticks at the swept values; a log scale when they span a wide range.
	var xs []float64
	seen := map[float64]bool{}
	lo, hi := math.Inf(1), math.Inf(-1)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for _, s := range lines {
		for _, pt := range s.xy {
			if !seen[pt.X] {
				seen[pt.X] = true
				xs = append(xs, pt.X)
			}
			lo, hi = math.Min(lo, pt.X), math.Max(hi, pt.X)
			ylo, yhi = math.Min(ylo, pt.Y), math.Max(yhi, pt.Y)
		}
	}
	sort.Float64s(xs)
	var ticks []plot.Tick
	for _, x := range xs {
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	if lo > 0 && hi/lo >= 8 {
		p.X.Scale = plot.LogScale{}
	}
	if metric == "ms" && ylo > 0 && yhi/ylo >= 30 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	} else {
		p.Y.Min = 0
	}

	for i, s := range lines {
		l, pts, err := plotter.NewLinePoints(s.xy)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		pts.Color = plotutil.Color(i)
		pts.Shape = plotutil.Shape(i)
		p.Add(l, pts)
		p.Legend.Add(s.name, l, pts)
	}
	peakISA := ""
	for _, r := range rep.Results {
		if r.PeakISA != "" {
			peakISA = r.PeakISA
			break
		}
	}
	if metric == "gflops" {
		if err := addPeakLine(p, rep.Peaks, peakISA, key, threads, lo, hi); err != nil {
			return err
		}
	}
	// Room above the highest line or the peak for the legend, top left.
	if p.Y.Scale == nil || isLinear(p.Y.Scale) {
		top := yhi
		for _, pk := range rep.Peaks {
			if pk.isPlotPeak(peakISA) && threads[pk.Threads] && metric == "gflops" {
				top = math.Max(top, pk.GFLOPs)
			}
		}
		p.Y.Max = top * (1.12 + 0.06*float64(len(lines)+1))
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.Legend.YOffs = -vg.Points(4)
	return savePlot(p, path)
}

// savePlot writes p into path in the format its extension names. An SVG
// embeds its fonts (gonum's Liberation fonts), so it looks the same in a
// viewer that lacks them.
func savePlot(p *plot.Plot, path string) error {
	const w, h = 8 * vg.Inch, 5 * vg.Inch
	if !strings.EqualFold(filepath.Ext(path), ".svg") {
		return p.Save(w, h, path)
	}
	c := vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(true))
	p.Draw(draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// isPlotPeak reports whether pk is the peak a plot of rows held against
// isa draws: the register probe of isa, or in a report of an older xbench,
// its machine probe.
func (pk *Peak) isPlotPeak(isa string) bool {
	if pk.Kind == "" {
		return pk.Machine
	}
	return pk.Kind == kindFMA && pk.ISA == isa && isa != ""
}

// addPeakLine draws the measured peak of isa: against threads for a
// threads sweep, else flat at the thread count of the sweep.
func addPeakLine(p *plot.Plot, peaks []Peak, isa, key string, threads map[int]bool, lo, hi float64) error {
	var xy plotter.XYs
	label := ""
	for _, pk := range peaks {
		if !pk.isPlotPeak(isa) || !threads[pk.Threads] {
			continue
		}
		label = fmt.Sprintf("peak: %s %s register FMA loop", pk.ISA, pk.Precision)
		if pk.Kind == "" {
			label = fmt.Sprintf("measured peak: %s %d³ SGEMM per thread", pk.Backend, pk.N)
		}
		if key == "threads" {
			xy = append(xy, plotter.XY{X: float64(pk.Threads), Y: pk.GFLOPs})
		} else if len(threads) == 1 {
			xy = plotter.XYs{{X: lo, Y: pk.GFLOPs}, {X: hi, Y: pk.GFLOPs}}
		}
	}
	if len(xy) == 0 {
		return nil
	}
	sort.Slice(xy, func(i, j int) bool { return xy[i].X < xy[j].X })
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color = color.Gray{Y: 96}
	l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
	l.Width = vg.Points(1.2)
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}

// isLinear reports whether s is gonum's default linear scale.
func isLinear(s plot.Normalizer) bool {
	_, ok := s.(plot.LinearScale)
	return ok
}
