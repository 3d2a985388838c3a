package xattn_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// BenchmarkWindow times causal self-attention over Tq = Tk = 4096 positions
// (8 heads of 64) with and without a sliding window of 256 keys, and with
// ALiBi, in one run: with W ≪ Tk the window's time follows W, not Tk. The
// projections (QueryDim 128) are kept small so that the core dominates.
func BenchmarkWindow(b *testing.B) {
	cfg := xattn.Config{QueryDim: 128, Heads: 8, HeadDim: 64}
	s := xattn.Shape{Batch: 1, Tq: 4096, Tk: 4096}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := randn(rng, s.Tq*cfg.QueryDim)
	y := make([]float32, s.Tq*cfg.QueryDim)
	for _, be := range blas.All() {
		// Slopes of 1/4096 keep every score far from the subnormal range
		// (e^−87 … e^−103) that the standard slopes reach over long
		// distances, to tell the cost of the ALiBi term from that of
		// subnormal probabilities in P·V.
		small := &xattn.ALiBi{Slopes: []float32{1. / 4096, 1. / 4096, 1. / 4096, 1. / 4096, 1. / 4096, 1. / 4096, 1. / 4096, 1. / 4096}}
		for _, m := range []xattn.Mask{
			{Causal: true}, {Window: 256}, {Window: 256, ALiBi: &xattn.ALiBi{}}, {Causal: true, ALiBi: &xattn.ALiBi{}},
			{Causal: true, ALiBi: small},
		} {
			alibi := "none"
			if m.ALiBi != nil {
				alibi = "standard"
				if m.ALiBi.Slopes != nil {
					alibi = "small"
				}
			}
			name := fmt.Sprintf("backend=%s/window=%d/alibi=%s", be.Name(), m.Window, alibi)
			b.Run(name, func(b *testing.B) {
				l, err := xattn.New(cfg, w, xattn.WithBackend(be))
				if err != nil {
					b.Fatal(err)
				}
				if err := l.ForwardInto(y, x, nil, s, &m); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := l.ForwardInto(y, x, nil, s, &m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWindowDecode times one decoding step of one head (dh 128) over a
// cached context of 32768 keys with a window of 4096 (bottom-right), on the
// plan's threads: the keys are split over the workers, and only the
// window's keys are worth splitting.
func BenchmarkWindowDecode(b *testing.B) {
	cfg := xattn.Config{QueryDim: 128, Heads: 1, HeadDim: 128}
	const tk = 32768
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ctxIn := randn(rng, tk*cfg.QueryDim)
	x := randn(rng, cfg.QueryDim)
	y := make([]float32, cfg.QueryDim)
	for _, window := range []int{0, 4096} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			l, err := xattn.New(cfg, w, xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
			if err != nil {
				b.Fatal(err)
			}
			ctx, err := l.ProjectContext(ctxIn, 1, tk)
			if err != nil {
				b.Fatal(err)
			}
			m := &xattn.Mask{CausalLowerRight: true, Window: window}
			if err := l.ForwardContext(y, x, ctx, 1, m); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := l.ForwardContext(y, x, ctx, 1, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
