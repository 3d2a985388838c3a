package xattn_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestAttentionBF16 holds a BF16 Attention (WithPrecision(BF16) on the FP32
// backend, or a backend of blas.WithBF16 with every BF16 kernel this CPU
// runs) to the float64 reference at the BF16 bound, and to the FP32
// Attention of the same backend, from which it must differ by more than
// FP32 rounding: bf16 operands move every output that sees a key (random
// values are not bf16 numbers), so an FP32 path cannot pass. Every mask
// kind, GQA, dense, padded and fused layouts, split keys, threads.
func TestAttentionBF16(t *testing.T) {
	shapes := []xattn.Shape{
		{Batch: 1, Tq: 1, Tk: 1}, {Batch: 2, Tq: 13, Tk: 7}, {Batch: 1, Tq: 40, Tk: 70}, {Batch: 1, Tq: 1, Tk: 90},
		{Batch: 2, Tq: 11, Tk: 11}, {Batch: 1, Tq: 0, Tk: 4}, {Batch: 2, Tq: 3, Tk: 0},
	}
	cfgs := []xattn.AttentionConfig{attnConfigs[0], attnConfigs[1], {Heads: 2, HeadDim: 40}}
	if testing.Short() {
		shapes = shapes[1:5]
	}
	rng := rand.New(rand.NewPCG(41, 2))
	for _, b := range bf16Backends(t) {
		for ci, cfg := range cfgs {
			opts := []xattn.Option{xattn.WithTile(32, 32), xattn.WithThreads(3), xattn.WithSerialFLOPs(0)}
			bf, err := xattn.NewAttention(cfg, append(opts, xattn.WithBackend(b.be))...)
			if err != nil {
				t.Fatal(err)
			}
			fp, err := xattn.NewAttention(cfg, append(opts, xattn.WithBackend(b.base))...)
			if err != nil {
				t.Fatal(err)
			}
			kn, _ := blas.BF16KernelOf(b.be)
			if p := bf.Plan(); p.Precision != xattn.BF16 || !strings.HasSuffix(p.Kernels, ",bf16="+kn.Name()) ||
				!strings.Contains(bf.String(), "precision=bf16") {
				t.Fatalf("%s: plan %+v, String %q; want precision BF16 on kernel %s", b.name, p, bf, kn.Name())
			}
			if p := fp.Plan(); p.Precision != xattn.FP32 {
				t.Fatalf("%s: the FP32 Attention's plan says %v", b.name, p.Precision)
			}
			for _, s := range shapes {
				for mk := range maskKinds {
					for _, lay := range []attnLayout{layoutDense, layoutPadded, layoutFused} {
						if lay == layoutFused && s.Tq != s.Tk || s.Batch == 0 && mk != int(maskNone) {
							continue
						}
						name := fmt.Sprintf("%s/cfg=%d/B=%d/Tq=%d/Tk=%d/mask=%v/layout=%v", b.name, ci, s.Batch, s.Tq, s.Tk, maskKind(mk), lay)
						m := makeMask(rng, maskKind(mk), s, cfg.Heads)
						ac := newAttnCase(rng, cfg, s, lay)
						if err := ac.run(fp, m); err != nil {
							t.Fatalf("%s: FP32: %v", name, err)
						}
						f32 := append([]float32(nil), ac.out...)
						ac.reset()
						if err := ac.run(bf, m); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						if err := checkBF16Attn(ac, m, f32); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
					}
				}
			}
		}
	}
}

// checkBF16Attn compares the case's output with the float64 reference at
// the BF16 bound and with f32, the FP32 Attention's output of the same
// case: where the reference is not all zero (some row sees a key), they
// must differ by more than the FP32 bound.
func checkBF16Attn(ac *attnCase, m *xattn.Mask, f32 []float32) error {
	want := coreRef64(ac.c, ac.q, ac.k, ac.v, ac.s, m)
	ldo := ac.wo
	if ac.ld.Out != 0 {
		ldo = ac.ld.Out
	}
	got := make([]float32, len(want))
	var dfp float64
	for r := range ac.s.Batch * ac.s.Tq {
		copy(got[r*ac.wo:(r+1)*ac.wo], ac.out[r*ldo:])
		for j := r * ldo; j < min((r+1)*ldo, len(ac.out)); j++ {
			if j-r*ldo >= ac.wo {
				if ac.out[j] != outGuard {
					return fmt.Errorf("out[%d] = %v between rows: written", j, ac.out[j])
				}
				continue
			}
			dfp = max(dfp, math.Abs(float64(ac.out[j])-float64(f32[j])))
		}
	}
	diff, norm := maxAbsDiff(got, want)
	if diff > bf16Tolerance(norm) || math.IsNaN(diff) {
		return fmt.Errorf("max |out−ref| = %.3g, BF16 bound %.3g", diff, bf16Tolerance(norm))
	}
	if norm > 0 && dfp <= 10*tolerance(norm) {
		return fmt.Errorf("max |out−FP32 out| = %.3g ≤ %.3g: not computed in BF16", dfp, 10*tolerance(norm))
	}
	return nil
}

// TestAttentionBF16Precision: WithPrecision(BF16) makes the Attention's
// backend the BF16 one of blas.BF16Default, as New does, and its Plan and
// String say so; WithPrecision(FP32) on a BF16 backend is an error.
func TestAttentionBF16Precision(t *testing.T) {
	xattn.SkipForcedBF16Missing(t)
	cfg := xattn.AttentionConfig{Heads: 2, HeadDim: 8}
	a, err := xattn.NewAttention(cfg, xattn.WithPrecision(xattn.BF16))
	if err != nil {
		t.Fatal(err)
	}
	kn := blas.BF16Default()
	if blas.Default().Name() == "pure" {
		kn = blas.BF16Kernel{} // the pure backend runs the pure kernel
	}
	if p := a.Plan(); p.Precision != xattn.BF16 || !strings.HasSuffix(p.Kernels, ",bf16="+kn.Name()) {
		t.Fatalf("WithPrecision(BF16): plan %+v, want BF16 on %s", p, kn.Name())
	}
	bb, err := blas.WithBF16(blas.Pure(), blas.BF16Kernel{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xattn.NewAttention(cfg, xattn.WithBackend(bb), xattn.WithPrecision(xattn.FP32)); err == nil ||
		!strings.Contains(err.Error(), "fp32") {
		t.Errorf("WithPrecision(FP32) on a BF16 backend: %v, want ErrConfig naming fp32", err)
	}
}
