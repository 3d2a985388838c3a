package xattn_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// TestAbsorbChoice checks which shapes run in the absorbed form: the
// decoder's (8×32 query rows over 1500 context rows), not the ones with
// many query rows (Stable Diffusion, Perceiver), not a call too small to pay
// for its extra phases (tiny), never without keys or WithAbsorb(false).
func TestAbsorbChoice(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   xattn.Config
		s     xattn.Shape
		opts  []xattn.Option
		wants bool
	}{
		{"decoder", xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64, Bias: true}, xattn.Shape{Batch: 8, Tq: 32, Tk: 1500}, nil, true},
		{"decoder/off", xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 8, Tq: 32, Tk: 1500}, []xattn.Option{xattn.WithAbsorb(false)}, false},
		{"decoder/Tk=0", xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 8, Tq: 32}, nil, false},
		{"sd_unet64", xattn.Config{QueryDim: 320, ContextDim: 768, OutDim: 320, Heads: 8, HeadDim: 40}, xattn.Shape{Batch: 2, Tq: 4096, Tk: 77}, nil, false},
		{"perceiver", xattn.Config{QueryDim: 512, ContextDim: 256, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 1, Tq: 256, Tk: 16384}, nil, false},
		{"tiny", xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 1, Tq: 10, Tk: 20}, nil, false},
		{"tiny/serial=0", xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 1, Tq: 10, Tk: 20}, []xattn.Option{xattn.WithSerialFLOPs(0)}, true},
		{"self-attention", xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 1, Tq: 1500, Tk: 1500}, nil, false},
	} {
		w, err := xattn.NewWeights(tc.cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		l, err := xattn.New(tc.cfg, w, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Absorbs(tc.s); got != tc.wants {
			t.Errorf("%s: absorbs = %t, want %t", tc.name, got, tc.wants)
		}
		if off := strings.Contains(l.Plan().String(), " absorb=off "); off == l.Plan().Absorb {
			t.Errorf("%s: Plan %q with Absorb = %t", tc.name, l.Plan(), l.Plan().Absorb)
		}
	}
}

// TestAbsorbedForm holds the absorbed form to the float64 reference (which
// projects the keys and values) on every backend, mask kind and route, with
// and without biases — a row that sees no key must get the output bias
// alone, not the value bias carried through — under grouped and shared
// key/value heads, value heads of another width, tasks of all heads and of
// fewer, and keys split over the workers (one query row). Each case asserts
// that the layer does run it absorbed. (Self-attention and SelfDoc, Tq = Tk,
// never do: H·Tq query rows are at least KVHeads·Tk context rows.)
func TestAbsorbedForm(t *testing.T) {
	cases := []struct {
		cfg   xattn.Config
		shape xattn.Shape
		route route
	}{
		{xattn.Config{QueryDim: 48, ContextDim: 96, OutDim: 40, Heads: 4, HeadDim: 16, Bias: true}, xattn.Shape{Batch: 3, Tq: 3, Tk: 70}, routeCross},
		{xattn.Config{QueryDim: 32, ContextDim: 64, Heads: 6, KVHeads: 2, HeadDim: 8, ValueHeadDim: 12, Bias: true}, xattn.Shape{Batch: 2, Tq: 2, Tk: 130}, routeCross},
		{xattn.Config{QueryDim: 40, ContextDim: 72, ValueDim: 56, Heads: 4, KVHeads: 1, HeadDim: 16, Bias: true}, xattn.Shape{Batch: 2, Tq: 2, Tk: 150}, routeQKV},
		{xattn.Config{QueryDim: 64, ContextDim: 128, Heads: 2, HeadDim: 64}, xattn.Shape{Batch: 1, Tq: 1, Tk: 300}, routeCross},
	}
	for ci, c := range cases {
		for mk := maskNone; mk <= maskAll; mk++ {
			sc := sweepCase{c.cfg, c.shape, c.route, mk}
			d := makeCase(t, sc, uint64(100+ci*10+int(mk)))
			for _, be := range blas.All() {
				for pi, opts := range [][]xattn.Option{
					{xattn.WithBackend(be), xattn.WithSerialFLOPs(0)},
					{xattn.WithBackend(be), xattn.WithThreads(3), xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0)},
					{xattn.WithBackend(be), xattn.WithThreads(8), xattn.WithTile(6, 64), xattn.WithSerialFLOPs(0)},
					{xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithSerialFLOPs(1e18)},
				} {
					t.Run(fmt.Sprintf("backend=%s/plan=%d/%s", be.Name(), pi, sc.name()), func(t *testing.T) {
						l, err := xattn.New(c.cfg, d.w, append(opts, xattn.WithAbsorb(true))...)
						if err != nil {
							t.Fatal(err)
						}
						if pi < 3 && !l.Absorbs(c.shape) {
							t.Fatalf("%v: the case does not run absorbed", l)
						}
						got, err := runCase(l, sc, d)
						if err != nil {
							t.Fatal(err)
						}
						if diff, norm := maxAbsDiff(got, d.want); diff > tolerance(norm) || math.IsNaN(diff) {
							t.Fatalf("%v: max |y−ref| = %.3g, ‖ref‖∞ = %.3g, bound %.3g", l, diff, norm, tolerance(norm))
						}
					})
				}
			}
		}
	}
}

// TestAbsorbedAllocsAndConcurrency checks that the absorbed form allocates
// nothing per call once its weights exist (they are made on first use), on
// the caller alone and on the workers, and that goroutines sharing a layer
// (the first call of each making the weights at once) get the reference.
func TestAbsorbedAllocsAndConcurrency(t *testing.T) {
	cfg := xattn.Config{QueryDim: 64, ContextDim: 128, Heads: 4, HeadDim: 16, Bias: true}
	c := sweepCase{cfg, xattn.Shape{Batch: 2, Tq: 2, Tk: 100}, routeCross, maskAll}
	d := makeCase(t, c, 5)
	for _, be := range blas.All() {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("backend=%s/threads=%d", be.Name(), threads), func(t *testing.T) {
				l, err := xattn.New(cfg, d.w, xattn.WithBackend(be), xattn.WithThreads(threads), xattn.WithSerialFLOPs(0))
				if err != nil {
					t.Fatal(err)
				}
				if !l.Absorbs(c.shape) {
					t.Fatal("the case does not run absorbed")
				}
				testutil.Parallel(t, 8, func(int) func() error {
					return func() error {
						for range 5 {
							got, err := runCase(l, c, d)
							if err != nil {
								return err
							}
							if diff, norm := maxAbsDiff(got, d.want); diff > tolerance(norm) || math.IsNaN(diff) {
								return fmt.Errorf("max |y−ref| = %.3g, bound %.3g", diff, tolerance(norm))
							}
						}
						return nil
					}
				})
				if raceEnabled {
					return // the race detector allocates
				}
				y := make([]float32, 2*2*cfg.QueryDim)
				run := func() {
					if err := l.ForwardInto(y, d.xq, d.xk, c.shape, d.mask); err != nil {
						t.Fatal(err)
					}
				}
				if n := testing.AllocsPerRun(50, run); n != 0 {
					t.Fatalf("ForwardInto allocates %v times per call", n)
				}
			})
		}
	}
}
