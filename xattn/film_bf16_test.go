package xattn_test

import (
	"math"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// TestFiLMBF16 holds a BF16 FiLM (WithPrecision(BF16), or a BF16 backend)
// on every BF16 backend and kernel, serial and split over workers, in and
// out of place, to the float64 reference of the FP32 layer within the BF16
// bound, and to the function class: cond and the weights rounded to bf16,
// FP32 sums and modulation (against a float64 reference of the rounded
// operands, to FP32 rounding).
func TestFiLMBF16(t *testing.T) {
	worst := 0.0
	for i, c := range filmCases(true) {
		d := makeFiLMCase(t, c, uint64(i))
		rw := &xattn.FiLMWeights{Gamma: round16(d.w.Gamma), Beta: round16(d.w.Beta), GammaBias: d.w.GammaBias, BetaBias: d.w.BetaBias}
		rounded := filmRef64(c.cfg, rw, d.x, round16(d.cond), c.batch, c.t)
		for _, bb := range bf16Backends(t) {
			t.Run(bb.name+"/"+c.name(), func(t *testing.T) {
				for _, opts := range [][]xattn.Option{
					{xattn.WithBackend(bb.base), xattn.WithPrecision(xattn.BF16)},
					{xattn.WithBackend(bb.be), xattn.WithThreads(3), xattn.WithSerialFLOPs(0)},
				} {
					f, err := xattn.NewFiLM(c.cfg, d.w, opts...)
					if err != nil {
						t.Fatal(err)
					}
					if f.Plan().Precision != xattn.BF16 {
						t.Fatalf("%v: precision %v", f, f.Plan().Precision)
					}
					got, err := f.Forward(d.x, d.cond, c.batch, c.t)
					if err != nil {
						t.Fatal(err)
					}
					diff, norm := maxAbsDiff(got, d.want)
					if diff > bf16Tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%v: max |y−ref| = %.3g, ‖ref‖∞ = %.3g", f, diff, norm)
					}
					worst = math.Max(worst, diff/math.Max(1, norm))
					if diff, norm := maxAbsDiff(got, rounded); diff > tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%v: max |y−ref of the rounded operands| = %.3g, ‖ref‖∞ = %.3g", f, diff, norm)
					}
					inPlace := append([]float32(nil), d.x...)
					if err := f.ForwardInto(inPlace, inPlace, d.cond, c.batch, c.t); err != nil {
						t.Fatal(err)
					}
					if k := testutil.BitDiff(inPlace, got); k >= 0 {
						t.Fatalf("%v: in place y[%d] = %v, out of place %v", f, k, inPlace[k], got[k])
					}
				}
			})
		}
	}
	t.Logf("worst relative error against the FP32 reference: %.3g", worst)
}

// round16 returns x rounded to bf16 as the BF16 products round their
// operands (nearest even, subnormals to zero).
func round16(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = testutil.RoundBF16Flush(v)
	}
	return out
}

// TestFiLMBF16Concurrent and allocations: many goroutines on one BF16 FiLM,
// each against its reference; the steady state allocates nothing.
func TestFiLMBF16Concurrent(t *testing.T) {
	cfg := xattn.FiLMConfig{Dim: 96, CondDim: 20, Bias: true, GammaPlusOne: true}
	w, err := xattn.NewFiLMWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, bb := range bf16Backends(t) {
		t.Run(bb.name, func(t *testing.T) {
			f, err := xattn.NewFiLM(cfg, w, xattn.WithBackend(bb.be), xattn.WithThreads(4), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			filmConcurrently(t, f, w, 10, bf16Tolerance)
			if raceEnabled {
				return
			}
			x, cond := make([]float32, 3*40*cfg.Dim), make([]float32, 3*cfg.CondDim)
			y := make([]float32, len(x))
			run := func() {
				if err := f.ForwardInto(y, x, cond, 3, 40); err != nil {
					t.Fatal(err)
				}
			}
			run()
			if n := testing.AllocsPerRun(20, run); n != 0 {
				t.Fatalf("BF16 ForwardInto allocates %v times per call", n)
			}
		})
	}
}
