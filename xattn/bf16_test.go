package xattn_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// bf16Tolerance is the bound of a BF16 layer against the float64 reference
// of the FP32 layer on the same inputs: bf16 keeps 8 bits of mantissa, so
// each rounded operand is off by up to 2⁻⁹ of itself, and over the
// projections, the core and the output projection the outputs of unit-size
// data move by about 1e-2 at worst (PyTorch's bf16 layer: 1.4e-3 … 1.15e-2
// on the presets). A wrong index, mask or rescale still moves them by
// order ‖ref‖∞. The worst error over the sweep is logged.
func bf16Tolerance(norm float64) float64 { return 2e-2 * math.Max(1, norm) }

// bf16Backend is a BF16 backend under test.
type bf16Backend struct {
	name string
	be   blas.Backend
	base blas.Backend // the FP32 backend be computes in BF16 on
}

// bf16Backends returns every backend of blas.All in BF16 with every BF16
// kernel this CPU runs (the pure backend with its own), or, when
// XATTN_BF16 names a kernel (scripts/test.sh runs each), that one only
// (on the pure backend only for pure). It
// logs the kernels the CPU lacks, with the reason.
func bf16Backends(t testing.TB) []bf16Backend {
	t.Helper()
	names := blas.BF16Kernels()
	xattn.SkipForcedBF16Missing(t)
	if env := os.Getenv("XATTN_BF16"); env != "" {
		if _, err := blas.BF16KernelNamed(env); err != nil {
			t.Fatalf("XATTN_BF16=%s: %v", env, err)
		}
		names = []string{blas.BF16Default().Name()}
	}
	if miss := blas.BF16Missing(); len(miss) > 0 {
		t.Logf("BF16 kernels not run here: %s", strings.Join(miss, "; "))
	}
	var out []bf16Backend
	for _, be := range blas.All() {
		for _, name := range names {
			kn, err := blas.BF16KernelNamed(name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := blas.WithBF16(be, kn)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := blas.BF16KernelOf(b)
			if got != kn && os.Getenv("XATTN_BF16") != "" {
				break // a run for one kernel: not the pure backend's
			}
			out = append(out, bf16Backend{be.Name() + "/bf16=" + got.Name(), b, be})
			if got != kn {
				break // the pure backend runs the pure kernel whatever it is given
			}
		}
	}
	return out
}

// bf16StructCases are the structural masks (window, bottom-right causal,
// ALiBi, all with the other parts) for the BF16 sweep, on shapes whose
// rows fill several 32-row blocks of the C core and whose keys span several
// panels, so that window edges and diagonals fall inside a block.
func bf16StructCases() []sweepCase {
	shapes := []xattn.Shape{{Batch: 1, Tq: 1, Tk: 77}, {Batch: 2, Tq: 7, Tk: 13}, {Batch: 1, Tq: 70, Tk: 130},
		{Batch: 2, Tq: 40, Tk: 300}, {Batch: 1, Tq: 130, Tk: 40}}
	var cases []sweepCase
	for si, sh := range shapes {
		for ki, mk := range structKinds {
			cfg := xattn.Config{QueryDim: 40, ContextDim: 24, OutDim: 16, Heads: 4, KVHeads: 2 - si%2,
				HeadDim: []int{8, 40, 64, 72}[(si+ki)%4], Bias: ki%2 == 0}
			c := sweepCase{cfg, sh, routeCross, mk}
			if ki == 1 && sh.Tq == sh.Tk {
				c.route, c.cfg.ContextDim = routeSelf, 0
			}
			cases = append(cases, c)
		}
	}
	return cases
}

// TestBF16MatchesReference is the differential sweep in BF16, on every
// backend and BF16 kernel, against the float64 reference of the FP32
// layer, with the structural masks (bf16StructCases) added.
func TestBF16MatchesReference(t *testing.T) {
	worst := map[string]float64{}
	short := testing.Short() || raceEnabled
	bes := bf16Backends(t)
	for i, c := range append(sweep(short), bf16StructCases()...) {
		d := makeCase(t, c, uint64(i))
		for j, b := range bes {
			// Short runs of many kernels give each a third of the cases
			// (every case runs on one of them, and on both backends).
			if short && len(bes) > 2 && (i+j)%3 != 0 {
				continue
			}
			t.Run("backend="+b.name+"/"+c.name(), func(t *testing.T) {
				plans := [][]xattn.Option{
					{xattn.WithBackend(b.be)},
					{xattn.WithBackend(b.be), xattn.WithThreads(3), xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0)},
					{xattn.WithBackend(b.be), xattn.WithThreads(3), xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0), xattn.WithAbsorb(false)},
				}
				for _, opts := range plans {
					l, err := xattn.New(c.cfg, d.w, opts...)
					if err != nil {
						t.Fatal(err)
					}
					got, err := runCase(l, c, d)
					if err != nil {
						t.Fatalf("%v: %v", l, err)
					}
					diff, norm := maxAbsDiff(got, d.want)
					if diff > bf16Tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%v: max |y−ref| = %.3g, ‖ref‖∞ = %.3g, bound %.3g", l, diff, norm, bf16Tolerance(norm))
					}
					worst[b.name] = math.Max(worst[b.name], diff/math.Max(1, norm))
				}
			})
		}
	}
	for name, w := range worst {
		t.Logf("%s: worst relative error over the sweep %.3g", name, w)
	}
}

// TestBF16Routes holds ForwardContext, ForwardStep (KVCache) and
// ForwardBatch of a BF16 layer to the float64 reference, and
// ForwardContext to ForwardInto of the same layer: the cached keys and
// values are the same bf16 products.
func TestBF16Routes(t *testing.T) {
	cfg := xattn.Config{QueryDim: 48, ContextDim: 48, OutDim: 24, Heads: 4, KVHeads: 2, HeadDim: 40, Bias: true}
	for _, b := range bf16Backends(t) {
		t.Run("backend="+b.name, func(t *testing.T) {
			c := sweepCase{cfg, xattn.Shape{Batch: 2, Tq: 37, Tk: 90}, routeCross, maskAll}
			d := makeCase(t, c, 21)
			l, err := xattn.New(cfg, d.w, xattn.WithBackend(b.be), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, got []float32, want []float64) {
				t.Helper()
				if diff, norm := maxAbsDiff(got, want); diff > bf16Tolerance(norm) || math.IsNaN(diff) {
					t.Fatalf("%s: max |y−ref| = %.3g, ‖ref‖∞ = %.3g", what, diff, norm)
				}
			}
			y, err := runCase(l, c, d)
			if err != nil {
				t.Fatal(err)
			}
			check("ForwardInto", y, d.want)

			ctx, err := l.ProjectContext(d.xk, c.shape.Batch, c.shape.Tk)
			if err != nil {
				t.Fatal(err)
			}
			yc := make([]float32, len(y))
			if err := l.ForwardContext(yc, d.xq, ctx, c.shape.Tq, d.mask); err != nil {
				t.Fatal(err)
			}
			check("ForwardContext", yc, d.want)

			yb := make([]float32, len(y))
			half := len(d.xq) / 2
			s1 := xattn.Shape{Batch: 1, Tq: c.shape.Tq, Tk: c.shape.Tk}
			// Two requests: the first batch with a fresh context, the second with the cached one.
			if err := l.ForwardBatch([]xattn.Request{
				{Y: yb[:len(y)/2], X: d.xq[:half], Context: d.xk[:len(d.xk)/2], Shape: s1},
				{Y: yb[len(y)/2:], X: d.xq[half:], Context: d.xk[len(d.xk)/2:], Shape: s1},
			}); err != nil {
				t.Fatal(err)
			}
			want := attentionRef64(cfg, d.w, d.xq, d.xk, d.xk, c.shape, nil)
			check("ForwardBatch", yb, want)

			// Decoding: causal self-attention, step by step through a KV cache.
			sc := sweepCase{xattn.Config{QueryDim: 48, Heads: 4, KVHeads: 2, HeadDim: 40, Bias: true},
				xattn.Shape{Batch: 2, Tq: 20, Tk: 20}, routeSelf, maskCausal}
			sd := makeCase(t, sc, 22)
			ls, err := xattn.New(sc.cfg, sd.w, xattn.WithBackend(b.be), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			kv, err := ls.NewKVCache(2, 20)
			if err != nil {
				t.Fatal(err)
			}
			ys := make([]float32, 2*20*48)
			step := make([]float32, 2*48)
			out := make([]float32, 2*48)
			for i := range 20 {
				for bi := range 2 {
					copy(step[bi*48:][:48], sd.xq[(bi*20+i)*48:][:48])
				}
				if err := ls.ForwardStep(out, step, kv, 1, nil); err != nil {
					t.Fatal(err)
				}
				for bi := range 2 {
					copy(ys[(bi*20+i)*48:][:48], out[bi*48:][:48])
				}
			}
			check("ForwardStep", ys, sd.want)
		})
	}
}

// TestBF16Plan checks what a BF16 layer reports and refuses.
func TestBF16Plan(t *testing.T) {
	xattn.SkipForcedBF16Missing(t)
	cfg := xattn.Config{QueryDim: 8, ContextDim: 8, Heads: 2, HeadDim: 4, OutDim: 8}
	w := mustWeights(t, cfg)
	l, err := xattn.New(cfg, w, xattn.WithPrecision(xattn.BF16))
	if err != nil {
		t.Fatal(err)
	}
	p := l.Plan()
	kn := blas.BF16Default()
	if p.Precision != xattn.BF16 || !p.Absorb || !strings.HasSuffix(p.Kernels, ",bf16="+kn.Name()) ||
		!strings.Contains(l.String(), "precision=bf16") || !strings.Contains(l.String(), "bf16="+kn.Name()) {
		t.Fatalf("BF16 layer: plan %+v, String %q; want precision BF16, absorb, kernels ending in bf16=%s", p, l, kn.Name())
	}
	t.Logf("%v", l)
	// AttentionMap projects through the bf16 weights (the float32 ones are gone).
	rng := newTestRand(3)
	x, ctx := randn(rng, 5*8), randn(rng, 6*8)
	pm, err := l.AttentionMap(x, ctx, xattn.Shape{Batch: 1, Tq: 5, Tk: 6}, nil, false)
	if err != nil || len(pm) != 5*6 {
		t.Fatalf("AttentionMap of a BF16 layer: %d values, %v", len(pm), err)
	}
	for i := range 5 {
		sum := 0.0
		for _, p := range pm[i*6:][:6] {
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Fatalf("AttentionMap row %d sums to %v", i, sum)
		}
	}
	if fp, err := xattn.New(cfg, w); err != nil || fp.Plan().Precision != xattn.FP32 || strings.Contains(fp.String(), "bf16") {
		t.Fatalf("default layer: %v, %v; want FP32", fp, err)
	}
	// A BF16 backend makes a BF16 layer.
	bb, err := blas.WithBF16(blas.Pure(), blas.BF16Kernel{})
	if err != nil {
		t.Fatal(err)
	}
	if lb, err := xattn.New(cfg, w, xattn.WithBackend(bb)); err != nil || lb.Plan().Precision != xattn.BF16 {
		t.Fatalf("New WithBackend(BF16 pure): %v, %v; want a BF16 layer", lb, err)
	}
	for _, tc := range []struct {
		name string
		opts []xattn.Option
		want string
	}{
		{"precision=7", []xattn.Option{xattn.WithPrecision(7)}, "Precision(7)"},
		{"fp32-on-bf16-backend", []xattn.Option{xattn.WithBackend(bb), xattn.WithPrecision(xattn.FP32)}, "fp32"},
	} {
		if _, err := xattn.New(cfg, w, tc.opts...); !errors.Is(err, xattn.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want ErrConfig naming %q", tc.name, err, tc.want)
		}
	}
	if _, err := blas.WithBF16(bb, blas.BF16Kernel{}); err == nil {
		t.Errorf("WithBF16 of a BF16 backend: no error")
	}
	fcfg := xattn.FiLMConfig{Dim: 4, CondDim: 3}
	fw, err := xattn.NewFiLMWeights(fcfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xattn.NewFiLM(fcfg, fw, xattn.WithBackend(bb), xattn.WithPrecision(xattn.FP32)); !errors.Is(err, xattn.ErrConfig) || !strings.Contains(err.Error(), "fp32") {
		t.Errorf("NewFiLM in FP32 on a BF16 backend: %v, want ErrConfig naming fp32", err)
	}
}

// TestBF16Allocs: the steady state of a BF16 ForwardInto allocates nothing,
// serial, on the workers, and in the fused form.
func TestBF16Allocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	cfg := xattn.Config{QueryDim: 64, ContextDim: 48, Heads: 4, HeadDim: 16, Bias: true}
	c := sweepCase{cfg, xattn.Shape{Batch: 2, Tq: 300, Tk: 70}, routeCross, maskAll}
	d := makeCase(t, c, 1)
	for _, b := range bf16Backends(t) {
		for _, serial := range []bool{true, false} {
			t.Run(fmt.Sprintf("backend=%s/serial=%t", b.name, serial), func(t *testing.T) {
				l, err := xattn.New(cfg, d.w, xattn.WithBackend(b.be), xattn.WithThreads(2), xattn.WithTile(32, 32), serialOpt(serial))
				if err != nil {
					t.Fatal(err)
				}
				checkNoAllocs(t, l, c, &d, 20)
			})
		}
	}
}

// TestBF16Concurrent shares one BF16 layer among 16 goroutines, each with
// its own shapes and masks, with goroutines that keep the scheduler
// preempting (the AMX tile state must survive thread switches), and holds
// each result to the reference and to the first result bit for bit. Run it
// under -race.
func TestBF16Concurrent(t *testing.T) {
	cfg := xattn.Config{QueryDim: 32, ContextDim: 24, OutDim: 16, Heads: 4, HeadDim: 40, Bias: true}
	w, err := xattn.NewWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bf16Backends(t) {
		t.Run("backend="+b.name, func(t *testing.T) {
			l, err := xattn.New(cfg, w, xattn.WithBackend(b.be), xattn.WithThreads(4), xattn.WithTile(32, 32), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			defer testutil.Spin(2)()
			const goroutines = 16
			testutil.Parallel(t, goroutines, func(gi int) func() error {
				c := sweepCase{cfg, xattn.Shape{Batch: 1 + gi%3, Tq: 5 + 7*gi, Tk: 17 + 9*gi}, routeCross, maskKind(gi % 6)}
				d := makeCaseW(t, c, uint64(100+gi), w)
				return func() error {
					var first []float32
					for rep := range 10 {
						got, err := runCase(l, c, d)
						if err != nil {
							return err
						}
						if diff, norm := maxAbsDiff(got, d.want); diff > bf16Tolerance(norm) || math.IsNaN(diff) {
							return fmt.Errorf("goroutine %d rep %d: max diff %.3g", gi, rep, diff)
						}
						if first == nil {
							first = got
						} else if i := testutil.BitDiff(got, first); i >= 0 {
							return fmt.Errorf("goroutine %d rep %d: y[%d] = %v, first run %v", gi, rep, i, got[i], first[i])
						}
					}
					return nil
				}
			})
		})
	}
}

// TestBF16KernelsAgree holds every BF16 backend and kernel to the pure
// backend's BF16 layer on the same inputs: the same roundings, the sums in
// another order, so they agree far more closely than either agrees with
// the FP32 reference (5e-5·max(1, ‖y‖∞); 4.5e-8 seen); and each is BF16, not FP32: further from the FP32
// reference than FP32's own rounding.
func TestBF16KernelsAgree(t *testing.T) {
	c := sweepCase{xattn.Config{QueryDim: 96, ContextDim: 80, OutDim: 48, Heads: 4, HeadDim: 40, Bias: true},
		xattn.Shape{Batch: 2, Tq: 77, Tk: 300}, routeCross, maskBias}
	d := makeCase(t, c, 31)
	ref, err := blas.WithBF16(blas.Pure(), blas.BF16Kernel{})
	if err != nil {
		t.Fatal(err)
	}
	lr, err := xattn.New(c.cfg, d.w, xattn.WithBackend(ref))
	if err != nil {
		t.Fatal(err)
	}
	want, err := runCase(lr, c, d)
	if err != nil {
		t.Fatal(err)
	}
	want64 := make([]float64, len(want))
	for i, v := range want {
		want64[i] = float64(v)
	}
	for _, b := range bf16Backends(t) {
		t.Run("backend="+b.name, func(t *testing.T) {
			l, err := xattn.New(c.cfg, d.w, xattn.WithBackend(b.be), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			got, err := runCase(l, c, d)
			if err != nil {
				t.Fatal(err)
			}
			diff, norm := maxAbsDiff(got, want64)
			fp, _ := maxAbsDiff(got, d.want)
			t.Logf("max |y − pure bf16| = %.3g, |y − fp32 ref| = %.3g, ‖y‖∞ = %.3g", diff, fp, norm)
			if diff > 5e-5*math.Max(1, norm) || math.IsNaN(diff) {
				t.Fatalf("max |y − pure bf16| = %.3g, ‖y‖∞ = %.3g, bound %.3g", diff, norm, 5e-5*math.Max(1, norm))
			}
			if fp < 1e-4*norm {
				t.Fatalf("max |y − fp32 ref| = %.3g: not rounded to bf16", fp)
			}
		})
	}
}

// TestBF16Absorbed runs a shape the absorbed form takes (few queries, many
// context rows) in BF16, against the reference and against the projected
// form of the same BF16 layer.
func TestBF16Absorbed(t *testing.T) {
	cfg := xattn.Config{QueryDim: 64, ContextDim: 48, OutDim: 32, Heads: 8, KVHeads: 4, HeadDim: 32, Bias: true}
	c := sweepCase{cfg, xattn.Shape{Batch: 2, Tq: 3, Tk: 700}, routeCross, maskAll}
	d := makeCase(t, c, 41)
	for _, b := range bf16Backends(t) {
		t.Run("backend="+b.name, func(t *testing.T) {
			var ys [][]float32
			for _, absorb := range []bool{true, false} {
				l, err := xattn.New(cfg, d.w, xattn.WithBackend(b.be), xattn.WithThreads(2), xattn.WithSerialFLOPs(0), xattn.WithAbsorb(absorb))
				if err != nil {
					t.Fatal(err)
				}
				if l.Absorbs(c.shape) != absorb {
					t.Fatalf("WithAbsorb(%t): Absorbs = %t", absorb, !absorb)
				}
				y, err := runCase(l, c, d)
				if err != nil {
					t.Fatal(err)
				}
				if diff, norm := maxAbsDiff(y, d.want); diff > bf16Tolerance(norm) || math.IsNaN(diff) {
					t.Fatalf("absorb=%t: max |y−ref| = %.3g, ‖ref‖∞ = %.3g", absorb, diff, norm)
				}
				ys = append(ys, y)
			}
			d64 := make([]float64, len(ys[1]))
			for i, v := range ys[1] {
				d64[i] = float64(v)
			}
			diff, norm := maxAbsDiff(ys[0], d64)
			t.Logf("absorbed vs projected: max |Δ| = %.3g, ‖y‖∞ = %.3g", diff, norm)
		})
	}
}

func newTestRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 2)) }

// TestBF16ContextPacked: a BF16 Context holds its keys and values packed
// in bf16 for the C core (PackKeys), which reads them in place of packing
// each panel; ForwardContext equals ForwardInto bit for bit, over split
// keys (views from a key offset) and the fused form (views of a batch), and
// allocates nothing in the steady state.
func TestBF16ContextPacked(t *testing.T) {
	cfg := xattn.Config{QueryDim: 48, ContextDim: 40, OutDim: 24, Heads: 4, KVHeads: 2, HeadDim: 40, Bias: true}
	for _, b := range bf16Backends(t) {
		for _, s := range []xattn.Shape{{Batch: 1, Tq: 4, Tk: 700}, {Batch: 2, Tq: 300, Tk: 90}, {Batch: 3, Tq: 33, Tk: 77}} {
			t.Run(fmt.Sprintf("backend=%s/B=%d/Tq=%d/Tk=%d", b.name, s.Batch, s.Tq, s.Tk), func(t *testing.T) {
				c := sweepCase{cfg, s, routeCross, maskKeyLen}
				d := makeCase(t, c, 51)
				l, err := xattn.New(cfg, d.w, xattn.WithBackend(b.be), xattn.WithThreads(4), xattn.WithSerialFLOPs(0),
					xattn.WithAbsorb(false), xattn.WithTile(32, 64))
				if err != nil {
					t.Fatal(err)
				}
				y, err := runCase(l, c, d)
				if err != nil {
					t.Fatal(err)
				}
				if diff, norm := maxAbsDiff(y, d.want); diff > bf16Tolerance(norm) || math.IsNaN(diff) {
					t.Fatalf("ForwardInto: max |y−ref| = %.3g, ‖ref‖∞ = %.3g", diff, norm)
				}
				ctx, err := l.ProjectContext(d.xk, s.Batch, s.Tk)
				if err != nil {
					t.Fatal(err)
				}
				yc := make([]float32, len(y))
				run := func() {
					if err := l.ForwardContext(yc, d.xq, ctx, s.Tq, d.mask); err != nil {
						t.Fatal(err)
					}
				}
				run()
				if i := testutil.BitDiff(yc, y); i >= 0 {
					t.Fatalf("ForwardContext y[%d] = %v, ForwardInto %v", i, yc[i], y[i])
				}
				if !raceEnabled {
					if n := testing.AllocsPerRun(10, run); n != 0 {
						t.Fatalf("ForwardContext allocates %v times per call", n)
					}
				}
			})
		}
	}
}
