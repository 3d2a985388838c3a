package xattn_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// Grouped-query attention: KVHeads key and value heads, each shared by a
// group of Heads/KVHeads query heads, and a value head size that may differ
// from the key head size.

// gqaConfigs are the grouped layouts under test: groups of 2, 8 and 8
// (Heads=8/KVHeads=4, multi-query Heads=8/KVHeads=1, Heads=16/KVHeads=2),
// each with dv = dk and dv ≠ dk.
func gqaConfigs() []xattn.Config {
	var cfgs []xattn.Config
	for _, hg := range [][2]int{{8, 4}, {8, 1}, {16, 2}} {
		for _, dv := range []int{0, 12} {
			cfgs = append(cfgs, xattn.Config{
				QueryDim: 40, ContextDim: 36, OutDim: 28,
				Heads: hg[0], KVHeads: hg[1], HeadDim: 8, ValueHeadDim: dv, Bias: dv == 0,
			})
		}
	}
	return cfgs
}

// TestGQAMatchesReference checks grouped layers against the float64
// reference on every backend and plan, every route and mask kind.
func TestGQAMatchesReference(t *testing.T) {
	worst := 0.0
	for ci, cfg := range gqaConfigs() {
		for ri, rt := range []route{routeCross, routeSelf, routeQKV, routeSelfDoc} {
			c := cfg
			switch rt {
			case routeSelf:
				c.ContextDim = 0
			case routeQKV:
				c.ValueDim = 20
			case routeSelfDoc:
				c.ValueDim = c.QueryDim
			}
			s := xattn.Shape{Batch: 2, Tq: 13, Tk: 45}
			if rt == routeSelf || rt == routeSelfDoc {
				s.Tk = s.Tq
			}
			for mk := maskNone; mk <= maskAll; mk++ {
				if (testing.Short() || raceEnabled) && mk != maskAll {
					continue
				}
				sc := sweepCase{c, s, rt, mk}
				d := makeCase(t, sc, uint64(100*ci+10*ri+int(mk)))
				for _, be := range blas.All() {
					for pname, opts := range planOptions(be) {
						t.Run(fmt.Sprintf("backend=%s/plan=%s/%s", be.Name(), pname, sc.name()), func(t *testing.T) {
							l, err := xattn.New(c, d.w, opts...)
							if err != nil {
								t.Fatal(err)
							}
							got, err := runCase(l, sc, d)
							if err != nil {
								t.Fatal(err)
							}
							diff, norm := maxAbsDiff(got, d.want)
							if diff > tolerance(norm) || math.IsNaN(diff) {
								t.Fatalf("%v: max |y−ref| = %.3g, ‖ref‖∞ = %.3g, bound %.3g", l, diff, norm, tolerance(norm))
							}
							worst = math.Max(worst, diff/math.Max(1, norm))
						})
					}
				}
			}
		}
	}
	t.Logf("worst relative error: %.3g", worst)
}

// TestGQAKVHeadsDefault checks that KVHeads = Heads, given explicitly, is
// the default multi-head layer: the same config once resolved, and the same
// output bit for bit.
func TestGQAKVHeadsDefault(t *testing.T) {
	def := xattn.Config{QueryDim: 32, ContextDim: 24, Heads: 4, HeadDim: 8, ValueHeadDim: 6, Bias: true}
	explicit := def
	explicit.KVHeads = def.Heads
	w, err := xattn.NewWeights(def, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range blas.All() {
		for mk := maskNone; mk <= maskAll; mk++ {
			t.Run(fmt.Sprintf("backend=%s/mask=%s", be.Name(), mk), func(t *testing.T) {
				a, err := xattn.New(def, w, xattn.WithBackend(be))
				if err != nil {
					t.Fatal(err)
				}
				b, err := xattn.New(explicit, w, xattn.WithBackend(be))
				if err != nil {
					t.Fatal(err)
				}
				if a.Config() != b.Config() {
					t.Fatalf("resolved configs differ: %v vs %v", a.Config(), b.Config())
				}
				sc := sweepCase{def, xattn.Shape{Batch: 2, Tq: 9, Tk: 31}, routeCross, mk}
				d := makeCaseW(t, sc, uint64(mk), w)
				ya, err := runCase(a, sc, d)
				if err != nil {
					t.Fatal(err)
				}
				yb, err := runCase(b, sc, d)
				if err != nil {
					t.Fatal(err)
				}
				if i := testutil.BitDiff(ya, yb); i >= 0 {
					t.Fatalf("y[%d] = %v with KVHeads=0, %v with KVHeads=Heads", i, ya[i], yb[i])
				}
			})
		}
	}
}

// repeatKV returns the weights of the multi-head layer equivalent to the
// grouped one of cfg: key and value head g's rows (and biases) repeated for
// each of the Heads/KVHeads query heads of its group.
func repeatKV(cfg xattn.Config, w *xattn.Weights) (xattn.Config, *xattn.Weights) {
	c := resolved(cfg)
	group := c.Heads / c.KVHeads
	rep := func(m []float32, rowsPerHead, cols int) []float32 {
		if m == nil {
			return nil
		}
		var out []float32
		for h := 0; h < c.Heads; h++ {
			g := h / group
			out = append(out, m[g*rowsPerHead*cols:(g+1)*rowsPerHead*cols]...)
		}
		return out
	}
	mw := *w
	mw.K = rep(w.K, c.HeadDim, c.ContextDim)
	mw.V = rep(w.V, c.ValueHeadDim, c.ValueDim)
	mw.KBias = rep(w.KBias, c.HeadDim, 1)
	mw.VBias = rep(w.VBias, c.ValueHeadDim, 1)
	mc := cfg
	mc.KVHeads = c.Heads
	return mc, &mw
}

// TestGQAEqualsRepeatedMHA checks that a grouped layer equals the multi-head
// layer whose key and value heads are copies of the grouped ones, repeated
// per group. The bound is twice the tolerance (both are within it of the
// reference), not bit-identity: the two project keys and values with
// products of different widths, which a BLAS may round differently. The test
// logs how many of the comparisons were bit-identical as well.
func TestGQAEqualsRepeatedMHA(t *testing.T) {
	identical, total := 0, 0
	for ci, cfg := range gqaConfigs() {
		w, err := xattn.NewWeights(cfg, uint64(ci))
		if err != nil {
			t.Fatal(err)
		}
		mcfg, mw := repeatKV(cfg, w)
		for _, mk := range []maskKind{maskNone, maskAll} {
			sc := sweepCase{cfg, xattn.Shape{Batch: 2, Tq: 11, Tk: 37}, routeCross, mk}
			d := makeCaseW(t, sc, uint64(ci), w)
			for _, be := range blas.All() {
				for pname, opts := range planOptions(be) {
					t.Run(fmt.Sprintf("backend=%s/plan=%s/%s", be.Name(), pname, sc.name()), func(t *testing.T) {
						g, err := xattn.New(cfg, w, opts...)
						if err != nil {
							t.Fatal(err)
						}
						m, err := xattn.New(mcfg, mw, opts...)
						if err != nil {
							t.Fatal(err)
						}
						yg, err := runCase(g, sc, d)
						if err != nil {
							t.Fatal(err)
						}
						ym, err := runCase(m, sc, d)
						if err != nil {
							t.Fatal(err)
						}
						_, norm := maxAbsDiff(yg, d.want)
						var diff float64
						for i := range yg {
							diff = math.Max(diff, math.Abs(float64(yg[i]-ym[i])))
						}
						if diff > 2*tolerance(norm) || math.IsNaN(diff) {
							t.Fatalf("max |GQA − repeated MHA| = %.3g, bound %.3g", diff, 2*tolerance(norm))
						}
						if testutil.BitDiff(yg, ym) < 0 {
							identical++
						}
						total++
					})
				}
			}
		}
	}
	t.Logf("%d of %d comparisons bit-identical", identical, total)
}
