package main

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// The -heatmap example is a small layer whose attention pattern is known in
// advance, like the alignment of a decoder's text queries to an encoder's
// audio frames. Tq = 24 queries read Tk = 32 keys. Query i sits at position
//
//	u_i = i·(Tk−1)/(Tq−1)
//
// on the key axis and key j at position j. The inputs are x_i = [u_i, 1] and
// context_j = [j, j²]; K = context (Wk = I), shared by all heads (KVHeads = 1),
// and head h, with shift δ_h and width σ_h, projects
//
//	q_i = [(u_i − δ_h)/σ_h², −1/(2σ_h²)]
//
// so that, with Scale = 1, its score for key j is −(j − (u_i − δ_h))²/(2σ_h²)
// plus a constant of the row. Its probabilities are a discretised Gaussian
// over the keys, centred on key u_i − δ_h: query i attends mostly to key
// round(u_i − δ_h). Batch 0 sees all keys; batch 1 has its keys padded to
// the first 24 (Mask.KeyLen), so keys 24…31 get probability 0.
const (
	heatmapTq    = 24
	heatmapTk    = 32
	heatmapBatch = 2
)

// heatmapHeads are the heads of the example.
var heatmapHeads = []struct {
	shift, width float64
	what         string
}{
	{0, 0.8, "query i attends key ≈ i·31/23"},
	{4, 0.8, "query i attends 4 keys behind i·31/23"},
	{-4, 0.8, "query i attends 4 keys ahead of i·31/23"},
	{0, 3, "query i attends keys around i·31/23, width 3"},
}

// heatmapKeyLen are the key lengths of the example's batches.
var heatmapKeyLen = []int{heatmapTk, 24}

// heatmapExample builds the example layer on be and returns it with its
// inputs, shape and mask.
func heatmapExample(be blas.Backend) (*xattn.Layer, []float32, []float32, xattn.Shape, *xattn.Mask, error) {
	h := len(heatmapHeads)
	cfg := xattn.Config{QueryDim: 2, ContextDim: 2, Heads: h, KVHeads: 1, HeadDim: 2, Scale: 1}
	w := &xattn.Weights{
		Q:       make([]float32, h*2*2),
		K:       []float32{1, 0, 0, 1},
		V:       []float32{1, 0, 0, 1},
		Out:     make([]float32, 2*h*2), // y is the mean of the heads' outputs
		OutBias: make([]float32, 2),
	}
	for i, hd := range heatmapHeads {
		v := 1 / (hd.width * hd.width)
		copy(w.Q[i*4:], []float32{float32(v), float32(-hd.shift * v), 0, float32(-v / 2)})
		w.Out[i*2] = 1 / float32(h)
		w.Out[h*2+i*2+1] = 1 / float32(h)
	}
	l, err := xattn.New(cfg, w, xattn.WithBackend(be))
	if err != nil {
		return nil, nil, nil, xattn.Shape{}, nil, err
	}
	s := xattn.Shape{Batch: heatmapBatch, Tq: heatmapTq, Tk: heatmapTk}
	x := make([]float32, 0, s.Batch*s.Tq*2)
	ctx := make([]float32, 0, s.Batch*s.Tk*2)
	for range s.Batch {
		for i := range s.Tq {
			x = append(x, float32(float64(i)*(heatmapTk-1)/(heatmapTq-1)), 1)
		}
		for j := range s.Tk {
			ctx = append(ctx, float32(j), float32(j*j))
		}
	}
	return l, x, ctx, s, &xattn.Mask{KeyLen: heatmapKeyLen}, nil
}

// heatmapMap computes the example's Tq×Tk map of head (−1: the mean over
// heads) in batch b, and a title describing it.
func heatmapMap(be blas.Backend, head, b int) ([]float32, string, error) {
	l, x, ctx, s, m, err := heatmapExample(be)
	if err != nil {
		return nil, "", err
	}
	p, err := l.AttentionMap(x, ctx, s, m, head >= 0)
	if err != nil {
		return nil, "", err
	}
	n := s.Tq * s.Tk
	what := fmt.Sprintf("mean over the %d heads", len(heatmapHeads))
	if head >= 0 {
		p = p[(b*len(heatmapHeads)+head)*n:][:n]
		what = fmt.Sprintf("head %d of %d: %s", head, len(heatmapHeads), heatmapHeads[head].what)
	} else {
		p = p[b*n:][:n]
	}
	keys := "all keys"
	if heatmapKeyLen[b] < s.Tk {
		keys = fmt.Sprintf("keys padded to %d", heatmapKeyLen[b])
	}
	title := fmt.Sprintf("attention probabilities, %d queries × %d keys, batch %d (%s)\n%s",
		s.Tq, s.Tk, b, keys, what)
	return p, title, nil
}

// runHeatmap renders the example map chosen by o into o.heatmap.
func runHeatmap(o *options, stderr io.Writer) error {
	bes, err := namedBackends(o.backend)
	if err != nil {
		return err
	}
	p, title, err := heatmapMap(bes[0], o.heatmapHead, o.heatmapBatch)
	if err != nil {
		return err
	}
	if err := writeHeatmap(o.heatmap, p, heatmapTq, heatmapTk, title); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "xbench: wrote %s (%s backend)\n", o.heatmap, bes[0].Name())
	return nil
}

// probGrid is a row-major tq×tk map as a plotter.GridXYZ: column c is key c,
// row r query r.
type probGrid struct {
	p      []float32
	tq, tk int
}

func (g probGrid) Dims() (c, r int)   { return g.tk, g.tq }
func (g probGrid) Z(c, r int) float64 { return float64(g.p[r*g.tk+c]) }
func (g probGrid) X(c int) float64    { return float64(c) }
func (g probGrid) Y(r int) float64    { return float64(r) }

// indexTicks labels every step-th integer in [0, n) and marks the others.
type indexTicks struct{ n, step int }

func (t indexTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for i := range t.n {
		tk := plot.Tick{Value: float64(i)}
		if i%t.step == 0 || i == t.n-1 {
			tk.Label = strconv.Itoa(i)
		}
		ticks = append(ticks, tk)
	}
	return ticks
}

// writeHeatmap draws the row-major tq×tk map p into a PNG at path: key index
// across, query index down (query 0 at the top, as a matrix is read), colour
// for the probability on moreland's extended black-body scale from 0 to the
// largest value of the map, and a colour bar on the right.
func writeHeatmap(path string, p []float32, tq, tk int, title string) error {
	if len(p) != tq*tk || tq < 1 || tk < 1 {
		return fmt.Errorf("heatmap %s: %d values for %d×%d", path, len(p), tq, tk)
	}
	top := 0.0
	for _, v := range p {
		top = max(top, float64(v))
	}
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		top = 1 // an all-zero map: every query fully masked
	}
	cm := moreland.ExtendedBlackBody()
	cm.SetMin(0)
	cm.SetMax(top)

	hp := plot.New()
	hp.Title.Text = title
	hp.Title.Padding = vg.Points(6)
	hp.X.Label.Text = "key index j"
	hp.Y.Label.Text = "query index i"
	hp.X.Padding, hp.Y.Padding = 0, 0
	hp.Y.Scale = plot.InvertedScale{Normalizer: plot.LinearScale{}}
	hp.X.Tick.Marker = indexTicks{n: tk, step: tickStep(tk)}
	hp.Y.Tick.Marker = indexTicks{n: tq, step: tickStep(tq)}
	hm := plotter.NewHeatMap(probGrid{p, tq, tk}, cm.Palette(256))
	hm.Min, hm.Max = 0, top
	hm.NaN = color.RGBA{R: 0, G: 160, B: 255, A: 255}
	hp.Add(hm)

	bp := plot.New()
	bp.HideX()
	bp.Y.Padding = 0
	bp.Y.Label.Text = "P(key j | query i)"
	bp.Add(&plotter.ColorBar{ColorMap: cm, Vertical: true})

	const w, h = 8 * vg.Inch, 6 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(144))
	dc := draw.New(img)
	const barW = 1.2 * vg.Inch
	left := draw.Crop(dc, 0, -barW, 0, 0)
	hp.Draw(left)
	// The bar spans the height of the map's data area.
	da := hp.DataCanvas(left)
	right := draw.Crop(dc, w-barW+vg.Points(10), -vg.Points(20), da.Min.Y-dc.Min.Y, da.Max.Y-dc.Max.Y)
	bp.Draw(right)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tickStep returns a label step that leaves about 8 labels on an axis of n.
func tickStep(n int) int {
	for _, s := range []int{1, 2, 4, 5, 10, 20, 50, 100, 200, 500} {
		if n/s <= 10 {
			return s
		}
	}
	return max(1, n/10)
}
