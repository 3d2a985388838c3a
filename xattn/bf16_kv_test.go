package xattn_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// TestBF16KVOneProduct checks that a BF16 layer's keys and values from one
// source (ForwardInto: one product against the packed [Wk; Wv]) give the
// same bits as from two equal copies (ForwardQKV: the key and value
// products apart, as every BF16 call ran them before), for every BF16
// kernel: with Wv's rows on a panel boundary (the packed Wk and Wv views of
// [Wk; Wv]) and off it, GQA, few context rows (products split by columns)
// and many (by rows), serial and threaded; and that both hold the float64
// reference at the BF16 bound.
func TestBF16KVOneProduct(t *testing.T) {
	cfgs := []xattn.Config{
		{QueryDim: 32, ContextDim: 24, Heads: 2, HeadDim: 16, Bias: true},             // nk = 32: views
		{QueryDim: 36, ContextDim: 20, Heads: 3, HeadDim: 12, Bias: true},             // nk = 36: apart
		{QueryDim: 40, ContextDim: 33, Heads: 4, KVHeads: 2, HeadDim: 10, OutDim: 17}, // GQA, nk = 20
	}
	shapes := []xattn.Shape{{Batch: 1, Tq: 5, Tk: 3}, {Batch: 2, Tq: 9, Tk: 77}, {Batch: 1, Tq: 4, Tk: 200}}
	for _, b := range bf16Backends(t) {
		for ci, cfg := range cfgs {
			w := mustWeights(t, cfg)
			for _, threads := range []int{1, 3} {
				l, err := xattn.New(cfg, w, xattn.WithBackend(b.be), xattn.WithThreads(threads), xattn.WithSerialFLOPs(0),
					xattn.WithAbsorb(false))
				if err != nil {
					t.Fatal(err)
				}
				c := l.Config()
				for _, s := range shapes {
					name := fmt.Sprintf("%s/cfg=%d/threads=%d/%v", b.name, ci, threads, s)
					rng := newTestRand(uint64(ci*100 + s.Tk))
					x, ctx := randn(rng, s.Batch*s.Tq*c.QueryDim), randn(rng, s.Batch*s.Tk*c.ContextDim)
					k, v := append([]float32(nil), ctx...), append([]float32(nil), ctx...)
					one := make([]float32, s.Batch*s.Tq*c.OutDim)
					two := make([]float32, len(one))
					if err := l.ForwardInto(one, x, ctx, s, nil); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if err := l.ForwardQKV(two, x, k, v, s, nil); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for i := range one {
						if math.Float32bits(one[i]) != math.Float32bits(two[i]) {
							t.Fatalf("%s: y[%d] = %v from one source, %v from two copies", name, i, one[i], two[i])
						}
					}
					want := attentionRef64(c, w, x, ctx, ctx, s, nil)
					if diff, norm := maxAbsDiff(one, want); diff > bf16Tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%s: max |y−ref| = %.3g, BF16 bound %.3g", name, diff, bf16Tolerance(norm))
					}
				}
			}
		}
	}
}

// BenchmarkBF16ProjectContext times a BF16 layer's key and value
// projection without the rest of the layer (ProjectContext: one product
// against the packed [Wk; Wv], then allocating the Context and packing its
// keys and values, which take most of the time at perceiver's size) at the
// context shapes of xbench's sd_unet64 (B=2, 77 keys of 768) and perceiver
// (16384 keys of 256) presets.
func BenchmarkBF16ProjectContext(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cfg   xattn.Config
		batch int
		tk    int
	}{
		{"sd_unet64", xattn.Config{QueryDim: 320, ContextDim: 768, Heads: 8, HeadDim: 40}, 2, 77},
		{"perceiver", xattn.Config{QueryDim: 512, ContextDim: 256, Heads: 8, HeadDim: 64}, 1, 16384},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w, err := xattn.NewWeights(bc.cfg, 1)
			if err != nil {
				b.Fatal(err)
			}
			l, err := xattn.New(bc.cfg, w, xattn.WithPrecision(xattn.BF16))
			if err != nil {
				b.Fatal(err)
			}
			ctx := randn(newTestRand(1), bc.batch*bc.tk*bc.cfg.ContextDim)
			for b.Loop() {
				if _, err := l.ProjectContext(ctx, bc.batch, bc.tk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
