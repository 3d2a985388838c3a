package main

import (
	"math"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// TestReference64 holds the float64 reference of -ref64 to the FP32 layer
// (within 1e-5, on GQA with biases and dv ≠ dk, with both draws of the
// inputs), checks that the BF16 layer's error against it is that of a
// rounded layer (above 1e-5, under 2e-2), and that -inputs normal draws
// the distributions.
func TestReference64(t *testing.T) {
	c := benchCase{name: "small", cfg: xattn.Config{QueryDim: 48, ContextDim: 40, OutDim: 24, Heads: 4, KVHeads: 2,
		HeadDim: 16, ValueHeadDim: 8, Bias: true}, shape: xattn.Shape{Batch: 2, Tq: 9, Tk: 33}}
	for _, inputs := range []string{"uniform", "normal"} {
		p, err := newProblem(c, 3)
		if err != nil {
			t.Fatal(err)
		}
		if inputs == "normal" {
			normalProblem(p)
			mean, sq := 0.0, 0.0
			for _, v := range p.ctx {
				mean += float64(v)
				sq += float64(v) * float64(v)
			}
			n := float64(len(p.ctx))
			if sd := math.Sqrt(sq/n - mean*mean/n/n); math.Abs(mean/n) > 0.1 || math.Abs(sd-1) > 0.1 {
				t.Errorf("normal context: mean %.3f, sd %.3f", mean/n, sd)
			}
			wsq := 0.0
			for _, v := range p.w.K {
				wsq += float64(v) * float64(v)
			}
			if sd := math.Sqrt(wsq / float64(len(p.w.K)) * 40); math.Abs(sd-1) > 0.1 {
				t.Errorf("normal Wk·√fan-in: sd %.3f", sd)
			}
		}
		p.ref64 = reference64(p)
		for _, prec := range []xattn.Precision{xattn.FP32, xattn.BF16} {
			l, err := xattn.New(c.cfg, p.w, xattn.WithPrecision(prec))
			if err != nil {
				t.Fatal(err)
			}
			y, err := l.Forward(p.x, p.ctx, c.shape, nil)
			if err != nil {
				t.Fatal(err)
			}
			var r Result
			setRef64(&r, p, y)
			lo, hi := 0.0, 1e-5
			if prec == xattn.BF16 {
				lo, hi = 1e-5, 2e-2
			}
			if !(r.Ref64Err > lo && r.Ref64Err <= hi) && !(prec == xattn.FP32 && r.Ref64Err == 0) {
				t.Errorf("%s inputs, %v layer: error %.3g against the float64 reference, want in (%g, %g]", inputs, prec, r.Ref64Err, lo, hi)
			}
			t.Logf("%s inputs, %v layer: %.3g", inputs, prec, r.Ref64Err)
		}
	}
}
