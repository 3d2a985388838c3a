package xattn_test

import (
	"fmt"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// TestFLOPs pins the work counts to the formulas they had when each was
// written out on its own: FLOPs and Layer.FLOPs (the projected form),
// Layer.WorkFLOPs (the absorbed form's count where Layer.Absorbs, decided as
// before) and FiLM.FLOPs. The counts are whole numbers below 2⁵³, so they
// must agree exactly.
func TestFLOPs(t *testing.T) {
	configs := []xattn.Config{
		{QueryDim: 8, Heads: 2, HeadDim: 4},
		{QueryDim: 320, ContextDim: 768, Heads: 8, HeadDim: 40},                                          // SD 1.5 attn2
		{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64, Bias: true},                              // Whisper-like
		{QueryDim: 96, ContextDim: 64, ValueDim: 48, Heads: 6, KVHeads: 2, HeadDim: 16, ValueHeadDim: 8}, // GQA, odd dims
		{QueryDim: 7, ContextDim: 5, Heads: 3, HeadDim: 5, OutDim: 11},
	}
	shapes := []xattn.Shape{
		{Batch: 1, Tq: 1, Tk: 1},
		{Batch: 2, Tq: 4096, Tk: 77},
		{Batch: 3, Tq: 1, Tk: 1500},
		{Batch: 1, Tq: 10, Tk: 20},
		{Batch: 4, Tq: 37, Tk: 0},
		{Batch: 0, Tq: 5, Tk: 5},
		{Batch: 8, Tq: 2, Tk: 100000},
	}
	for ci, cfg := range configs {
		w, err := xattn.NewWeights(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range [][]xattn.Option{
			{xattn.WithAbsorb(false)},
			{xattn.WithAbsorb(true)},
			{xattn.WithAbsorb(true), xattn.WithSerialFLOPs(0)},
		} {
			l, err := xattn.New(cfg, w, opts...)
			if err != nil {
				t.Fatal(err)
			}
			c, plan := l.Config(), l.Plan()
			for _, s := range shapes {
				t.Run(fmt.Sprintf("config=%d/absorb=%v/serial=%g/B=%d/Tq=%d/Tk=%d", ci, plan.Absorb, plan.SerialFLOPs, s.Batch, s.Tq, s.Tk), func(t *testing.T) {
					b, tq, tk := float64(s.Batch), float64(s.Tq), float64(s.Tk)
					h, g, dk, dv := float64(c.Heads), float64(c.KVHeads), float64(c.HeadDim), float64(c.ValueHeadDim)
					dq, dc, dx, do := float64(c.QueryDim), float64(c.ContextDim), float64(c.ValueDim), float64(c.OutDim)
					want := 2*b*(tq*dq*h*dk+tk*dc*g*dk+tk*dx*g*dv+tq*h*dv*do) + 2*b*h*tq*tk*(dk+dv)
					if got := xattn.FLOPs(cfg, s); got != want {
						t.Errorf("FLOPs = %v, want %v", got, want)
					}
					if got := l.FLOPs(s); got != want {
						t.Errorf("Layer.FLOPs = %v, want %v", got, want)
					}
					projected := tk*g*(dc*dk+dx*dv) + h*tq*tk*(dk+dv)
					absorbed := h * tq * (dk*dc + tk*(dc+dx) + dx*dv)
					absorbs := plan.Absorb && s.Tk > 0 && s.Tq > 0 &&
						absorbed < 0.75*projected && 2*b*(projected-absorbed) >= 16*plan.SerialFLOPs
					if got := l.Absorbs(s); got != absorbs {
						t.Errorf("Absorbs = %v, want %v", got, absorbs)
					}
					if absorbs {
						want = 2 * b * tq * (dq*h*dk + h*(dk*dc+tk*(dc+dx)+dx*dv) + h*dv*do)
					}
					if got := l.WorkFLOPs(s); got != want {
						t.Errorf("WorkFLOPs = %v, want %v (absorbs %v)", got, want, absorbs)
					}
				})
			}
		}
	}

	for _, fc := range []xattn.FiLMConfig{{Dim: 4, CondDim: 3}, {Dim: 320, CondDim: 1280, Bias: true}, {Dim: 1, CondDim: 1}} {
		f, err := xattn.NewFiLM(fc, makeFiLMCase(t, filmCase{fc, 1, 1}, 1).w)
		if err != nil {
			t.Fatal(err)
		}
		for _, bt := range [][2]int{{1, 1}, {2, 5}, {16, 4096}, {0, 3}, {3, 0}} {
			b, tt, d := float64(bt[0]), float64(bt[1]), float64(fc.Dim)
			if got, want := f.FLOPs(bt[0], bt[1]), 4*b*d*float64(fc.CondDim)+2*b*tt*d; got != want {
				t.Errorf("FiLM %+v: FLOPs(%d, %d) = %v, want %v", fc, bt[0], bt[1], got, want)
			}
		}
	}
}
