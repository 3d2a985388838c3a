package xattn_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// probsRef64 returns the attention probabilities of queries from xq over keys
// from xk under m, as [B, Heads, Tq, Tk] in float64, written plainly from the
// formula, and next to them the bound of the float32 computation's error on
// each probability:
//
//	|p − p64| ≤ p64·(2·E + (Tk+8)·2⁻²³)
//
// where E bounds the error of the row's float32 scores, 4·(dk+D)·2⁻²³ times
// Scale·Σ_d |q_d|·|k_d| with |q|, |k| the projections of |x| by |W| plus |b|
// (D the wider of QueryDim and ContextDim), plus the rounding of the bias. A
// score error δ scales p by about 1+δ−Σp·δ; the row sum, the exponential and
// the division add the (Tk+8) ulps.
func probsRef64(cfg xattn.Config, w *xattn.Weights, xq, xk []float32, s xattn.Shape, m *xattn.Mask) (p, bound []float64) {
	return probsRoPERef64(cfg, w, xq, xk, s, m, nil)
}

// probsRoPERef64 is probsRef64 with the queries and keys rotated by r (nil
// for none): keys at 0 … Tk−1, queries at refOffset(m)+i (WithRoPE). The
// bound's |q| and |k| are then those of the rotated pairs, |a|+|b| each.
func probsRoPERef64(cfg xattn.Config, w *xattn.Weights, xq, xk []float32, s xattn.Shape, m *xattn.Mask,
	r *xattn.RoPE) (p, bound []float64) {
	c := resolved(cfg)
	B, tq, tk := s.Batch, s.Tq, s.Tk
	H, G, dk := c.Heads, c.KVHeads, c.HeadDim
	q := linearRef64(xq, B*tq, c.QueryDim, w.Q, H*dk, w.QBias)
	k := linearRef64(xk, B*tk, c.ContextDim, w.K, G*dk, w.KBias)
	qa := linearRef64(absSlice(xq), B*tq, c.QueryDim, absSlice(w.Q), H*dk, absSlice(w.QBias))
	ka := linearRef64(absSlice(xk), B*tk, c.ContextDim, absSlice(w.K), G*dk, absSlice(w.KBias))
	if r != nil {
		ropeRef64(q, B*tq, H, dk, max(tq, 1), refOffset(m, tq, tk), *r)
		ropeRef64(k, B*tk, G, dk, max(tk, 1), 0, *r)
		ropeAbsBound(qa, B*tq*H, dk, *r)
		ropeAbsBound(ka, B*tk*G, dk, *r)
	}
	const eps = 1.0 / (1 << 23)
	grow := 4 * float64(dk+max(c.QueryDim, c.ContextDim)) * eps
	p = make([]float64, B*H*tq*tk)
	bound = make([]float64, len(p))
	seen := make([]bool, tk)
	off := refOffset(m, tq, tk)
	slopes := refSlopes(m, H)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			g := h / (H / G)
			for i := 0; i < tq; i++ {
				row := p[((b*H+h)*tq+i)*tk:][:tk]
				mx, e := math.Inf(-1), 0.0
				for j := 0; j < tk; j++ {
					seen[j] = allowed(m, b, h, i, j) && structAllowed(m, i+off, j)
					if !seen[j] {
						continue
					}
					var sc, sa float64
					for d := 0; d < dk; d++ {
						sc += q[(b*tq+i)*H*dk+h*dk+d] * k[(b*tk+j)*G*dk+g*dk+d]
						sa += qa[(b*tq+i)*H*dk+h*dk+d] * ka[(b*tk+j)*G*dk+g*dk+d]
					}
					sc *= float64(c.Scale)
					se := grow * sa * math.Abs(float64(c.Scale))
					if slopes != nil {
						av := -slopes[h] * float64(i+off-j)
						sc += av
						se += 2 * eps * (math.Abs(sc) + math.Abs(av))
					}
					if m != nil && m.Bias != nil {
						bv := float64(m.Bias.Data[maskIndex(m.Bias.Batch, m.Bias.Heads, m.Bias.Rows, tk, b, h, i, j)])
						sc += bv
						se += 2 * eps * (math.Abs(sc) + math.Abs(bv))
					}
					row[j] = sc
					if math.IsInf(sc, -1) {
						seen[j] = false
						continue
					}
					mx = math.Max(mx, sc)
					e = math.Max(e, se)
				}
				if math.IsInf(mx, -1) {
					clear(row) // no key: the row is 0
					continue
				}
				var sum float64
				for j := range row {
					if seen[j] {
						row[j] = math.Exp(row[j] - mx)
						sum += row[j]
					} else {
						row[j] = 0
					}
				}
				for j := range row {
					row[j] /= sum
					bound[((b*H+h)*tq+i)*tk+j] = row[j]*(2*e+float64(tk+8)*eps) + 1e-37
				}
			}
		}
	}
	return p, bound
}

// meanHeads64 averages a [B, H, n] array over heads into [B, n].
func meanHeads64(p []float64, B, H, n int) []float64 {
	out := make([]float64, B*n)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			for j := 0; j < n; j++ {
				out[b*n+j] += p[(b*H+h)*n+j]
			}
		}
	}
	for i := range out {
		out[i] /= float64(H)
	}
	return out
}

// absSlice returns |x| elementwise, nil for nil.
func absSlice(x []float32) []float32 {
	if x == nil {
		return nil
	}
	a := make([]float32, len(x))
	for i, v := range x {
		a[i] = float32(math.Abs(float64(v)))
	}
	return a
}

// checkProbs compares got with want elementwise against bound: masked
// probabilities (want exactly 0 with a zero bound) must be exactly 0. It
// returns the worst ratio |got−want|/bound.
func checkProbs(t *testing.T, got []float32, want, bound []float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("len = %d, want %d", len(got), len(want))
	}
	worst := 0.0
	bad := 0
	for i, w := range want {
		g := float64(got[i])
		if w == 0 && g != 0 {
			if bad++; bad <= 5 {
				t.Errorf("p[%d] = %g, want exactly 0 (masked)", i, g)
			}
			continue
		}
		d := math.Abs(g - w)
		if r := d / bound[i]; r > worst || math.IsNaN(d) {
			worst = r
			if !(d <= bound[i]) {
				if bad++; bad <= 5 {
					t.Errorf("p[%d] = %.9g, want %.9g ± %.3g", i, g, w, bound[i])
				}
			}
		}
	}
	return worst
}

type mapCase struct {
	name  string
	cfg   xattn.Config
	shape xattn.Shape
	self  bool // nil context
	mask  maskKind
}

var mapCases = []mapCase{
	{"one", xattn.Config{QueryDim: 3, Heads: 1, HeadDim: 1}, xattn.Shape{Batch: 1, Tq: 1, Tk: 1}, false, maskNone},
	{"cross", xattn.Config{QueryDim: 12, ContextDim: 10, Heads: 3, HeadDim: 8, Bias: true}, xattn.Shape{Batch: 2, Tq: 5, Tk: 7}, false, maskNone},
	{"cross/keylen", xattn.Config{QueryDim: 12, ContextDim: 10, Heads: 3, HeadDim: 8}, xattn.Shape{Batch: 3, Tq: 6, Tk: 9}, false, maskKeyLen},
	{"self/causal", xattn.Config{QueryDim: 16, Heads: 2, HeadDim: 8, Bias: true}, xattn.Shape{Batch: 2, Tq: 9}, true, maskCausal},
	{"cross/causal/Tq<Tk", xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}, xattn.Shape{Batch: 1, Tq: 4, Tk: 11}, false, maskCausal},
	{"cross/causal/Tq>Tk", xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}, xattn.Shape{Batch: 2, Tq: 11, Tk: 4}, false, maskCausal},
	{"cross/keep", xattn.Config{QueryDim: 12, ContextDim: 10, Heads: 3, HeadDim: 8}, xattn.Shape{Batch: 2, Tq: 7, Tk: 13}, false, maskKeep},
	{"cross/bias", xattn.Config{QueryDim: 12, ContextDim: 10, Heads: 3, HeadDim: 8}, xattn.Shape{Batch: 2, Tq: 7, Tk: 13}, false, maskBias},
	{"cross/all", xattn.Config{QueryDim: 12, ContextDim: 10, Heads: 4, HeadDim: 5, Bias: true}, xattn.Shape{Batch: 3, Tq: 8, Tk: 10}, false, maskAll},
	{"gqa2/all", xattn.Config{QueryDim: 32, ContextDim: 24, Heads: 4, KVHeads: 2, HeadDim: 8, ValueHeadDim: 6, Bias: true}, xattn.Shape{Batch: 2, Tq: 7, Tk: 12}, false, maskAll},
	{"gqa8/self/causal", xattn.Config{QueryDim: 32, Heads: 8, KVHeads: 1, HeadDim: 4}, xattn.Shape{Batch: 1, Tq: 10, Tk: 10}, true, maskCausal},
	{"mqa/bias", xattn.Config{QueryDim: 20, ContextDim: 16, Heads: 8, KVHeads: 2, HeadDim: 40, Scale: 0.3}, xattn.Shape{Batch: 2, Tq: 9, Tk: 77}, false, maskBias},
	{"long", xattn.Config{QueryDim: 64, ContextDim: 48, Heads: 2, HeadDim: 40}, xattn.Shape{Batch: 1, Tq: 33, Tk: 130}, false, maskAll},
	{"cross/window", xattn.Config{QueryDim: 12, ContextDim: 10, Heads: 3, HeadDim: 8}, xattn.Shape{Batch: 2, Tq: 7, Tk: 13}, false, maskWindow},
	{"cross/lowerright", xattn.Config{QueryDim: 12, ContextDim: 10, Heads: 3, HeadDim: 8}, xattn.Shape{Batch: 2, Tq: 7, Tk: 13}, false, maskLowerRight},
	{"cross/lowerright/Tq>Tk", xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}, xattn.Shape{Batch: 2, Tq: 11, Tk: 4}, false, maskLowerRight},
	{"self/alibi", xattn.Config{QueryDim: 16, Heads: 4, HeadDim: 8, Bias: true}, xattn.Shape{Batch: 2, Tq: 9}, true, maskALiBi},
	{"gqa2/structall", xattn.Config{QueryDim: 32, ContextDim: 24, Heads: 4, KVHeads: 2, HeadDim: 8, Bias: true}, xattn.Shape{Batch: 2, Tq: 7, Tk: 12}, false, maskStructAll},
}

// mapInputs draws the weights, inputs and mask of c.
func mapInputs(t *testing.T, c mapCase, seed uint64) (w *xattn.Weights, x, ctx []float32, m *xattn.Mask, s xattn.Shape) {
	t.Helper()
	w, err := xattn.NewWeights(c.cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	r := resolved(c.cfg)
	rng := rand.New(rand.NewPCG(seed, 3))
	s = c.shape
	x = randn(rng, s.Batch*s.Tq*r.QueryDim)
	if c.self {
		s.Tk = s.Tq
	} else {
		ctx = randn(rng, s.Batch*s.Tk*r.ContextDim)
	}
	m = makeMask(rng, c.mask, s, r.Heads)
	return w, x, ctx, m, s
}

func TestAttentionMapMatchesReference(t *testing.T) {
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			t.Parallel()
			worst := 0.0
			for i, c := range mapCases {
				w, x, ctx, m, s := mapInputs(t, c, uint64(i+1))
				l, err := xattn.New(c.cfg, w, xattn.WithBackend(be))
				if err != nil {
					t.Fatal(err)
				}
				keys := ctx
				if c.self {
					keys = x
				}
				want, bound := probsRef64(c.cfg, w, x, keys, s, m)
				H := l.Config().Heads
				n := s.Tq * s.Tk
				x0, ctx0 := slices.Clone(x), slices.Clone(ctx)
				t.Run(c.name, func(t *testing.T) {
					call := c.shape // Tk 0 for self-attention
					got, err := l.AttentionMap(x, ctx, call, m, true)
					if err != nil {
						t.Fatal(err)
					}
					worst = max(worst, checkProbs(t, got, want, bound))
					checkRowSums(t, got, want, s.Tk)

					// The mean over heads, within the largest bound of its heads.
					mean, err := l.AttentionMap(x, ctx, call, m, false)
					if err != nil {
						t.Fatal(err)
					}
					wantMean := meanHeads64(want, s.Batch, H, n)
					meanBound := make([]float64, len(wantMean))
					for b := 0; b < s.Batch; b++ {
						for h := 0; h < H; h++ {
							for j := 0; j < n; j++ {
								meanBound[b*n+j] = max(meanBound[b*n+j], bound[(b*H+h)*n+j]+4e-7*wantMean[b*n+j])
							}
						}
					}
					worst = max(worst, checkProbs(t, mean, wantMean, meanBound))

					// Into writes every value, whatever p held.
					p := make([]float32, len(got))
					for i := range p {
						p[i] = float32(math.NaN())
					}
					if err := l.AttentionMapInto(p, x, ctx, call, m, true); err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(p, got) {
						t.Error("AttentionMapInto differs from AttentionMap")
					}
					if !slices.Equal(x, x0) || !slices.Equal(ctx, ctx0) {
						t.Error("inputs changed")
					}
				})
			}
			t.Logf("worst |p − p64| / bound = %.3g", worst)
		})
	}
}

// checkRowSums checks that every row of got sums to 1 within 2·(Tk+4) ulps,
// or is all 0 exactly where the reference row is (no key seen).
func checkRowSums(t *testing.T, got []float32, want []float64, tk int) {
	t.Helper()
	const eps = 1.0 / (1 << 23)
	for r := 0; r*tk < len(got); r++ {
		var sum, wantSum float64
		for j := 0; j < tk; j++ {
			sum += float64(got[r*tk+j])
			wantSum += want[r*tk+j]
		}
		if wantSum == 0 {
			if sum != 0 {
				t.Errorf("row %d: fully masked but sums to %g", r, sum)
			}
			continue
		}
		if d := math.Abs(sum - 1); d > 2*float64(tk+4)*eps {
			t.Errorf("row %d sums to 1%+.3g", r, sum-1)
		}
	}
}

// TestAttentionMapFullyMasked checks that rows with no visible key are exact
// zeros, never NaN, for every way of masking all keys.
func TestAttentionMapFullyMasked(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 5}
	rng := rand.New(rand.NewPCG(5, 6))
	x, ctx := randn(rng, s.Batch*s.Tq*8), randn(rng, s.Batch*s.Tk*6)
	inf := float32(math.Inf(-1))
	keepRow := make([]bool, 5) // all false
	biasRow := []float32{inf, inf, inf, inf, inf}
	for _, tc := range []struct {
		name string
		m    *xattn.Mask
		zero func(b, h, i int) bool // rows that must be 0
	}{
		{"keylen=0", &xattn.Mask{KeyLen: []int{0, 5}}, func(b, h, i int) bool { return b == 0 }},
		{"keep", &xattn.Mask{Keep: &xattn.KeepMask{Data: keepRow, Batch: 1, Heads: 1, Rows: 1}}, func(b, h, i int) bool { return true }},
		{"bias=-inf", &xattn.Mask{Bias: &xattn.BiasMask{Data: biasRow, Batch: 1, Heads: 1, Rows: 1}}, func(b, h, i int) bool { return true }},
		{"keep/head1", &xattn.Mask{Keep: &xattn.KeepMask{Data: append(slices.Repeat([]bool{true}, 5), keepRow...), Batch: 1, Heads: 2, Rows: 1}},
			func(b, h, i int) bool { return h == 1 }},
		{"causal/keylen", &xattn.Mask{Causal: true, KeyLen: []int{5, 0}}, func(b, h, i int) bool { return b == 1 }},
	} {
		for _, be := range blas.All() {
			t.Run(tc.name+"/backend="+be.Name(), func(t *testing.T) {
				w, _ := xattn.NewWeights(cfg, 9)
				l, err := xattn.New(cfg, w, xattn.WithBackend(be))
				if err != nil {
					t.Fatal(err)
				}
				p, err := l.AttentionMap(x, ctx, s, tc.m, true)
				if err != nil {
					t.Fatal(err)
				}
				for b := 0; b < s.Batch; b++ {
					for h := 0; h < 2; h++ {
						for i := 0; i < s.Tq; i++ {
							row := p[((b*2+h)*s.Tq+i)*s.Tk:][:s.Tk]
							var sum float64
							for _, v := range row {
								if v != v {
									t.Fatalf("NaN in row b=%d h=%d i=%d", b, h, i)
								}
								sum += float64(v)
							}
							if tc.zero(b, h, i) && sum != 0 {
								t.Errorf("b=%d h=%d i=%d: %v, want zeros", b, h, i, row)
							}
							if !tc.zero(b, h, i) && math.Abs(sum-1) > 1e-6 {
								t.Errorf("b=%d h=%d i=%d sums to %v", b, h, i, sum)
							}
						}
					}
				}
				// The mean of a row masked in one head of two sums to 1/2.
				mean, err := l.AttentionMap(x, ctx, s, tc.m, false)
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "keep/head1" {
					for r := 0; r < s.Batch*s.Tq; r++ {
						var sum float64
						for _, v := range mean[r*s.Tk:][:s.Tk] {
							sum += float64(v)
						}
						if math.Abs(sum-0.5) > 1e-6 {
							t.Errorf("mean row %d sums to %v, want 0.5", r, sum)
						}
					}
				}
			})
		}
	}
}

// TestAttentionMapReproducesForward checks that the map is what the forward
// pass weights the values with: y = (Σ_j P·V)·Woᵀ + bo, with P from
// AttentionMap and the rest in float64, equals the layer's output.
func TestAttentionMapReproducesForward(t *testing.T) {
	for _, be := range blas.All() {
		for i, c := range mapCases {
			if c.cfg.ValueDim != 0 && c.cfg.ValueDim != resolved(c.cfg).ContextDim {
				continue
			}
			t.Run(fmt.Sprintf("backend=%s/%s", be.Name(), c.name), func(t *testing.T) {
				w, x, ctx, m, s := mapInputs(t, c, uint64(i+100))
				l, err := xattn.New(c.cfg, w, xattn.WithBackend(be))
				if err != nil {
					t.Fatal(err)
				}
				p, err := l.AttentionMap(x, ctx, c.shape, m, true)
				if err != nil {
					t.Fatal(err)
				}
				y, err := l.Forward(x, ctx, c.shape, m)
				if err != nil {
					t.Fatal(err)
				}
				src := ctx
				if c.self {
					src = x
				}
				want := forwardFromProbs64(l.Config(), w, p, src, s)
				if diff, norm := maxAbsDiff(y, want); diff > tolerance(norm) {
					t.Errorf("max |y − P·V·Woᵀ| = %.3g, want ≤ %.3g", diff, tolerance(norm))
				}
			})
		}
	}
}

// forwardFromProbs64 returns y = concat_h(P_h·V_g)·Woᵀ + bo in float64 for
// probabilities p [B, H, Tq, Tk] and values projected from xv.
func forwardFromProbs64(c xattn.Config, w *xattn.Weights, p, xv []float32, s xattn.Shape) []float64 {
	B, tq, tk := s.Batch, s.Tq, s.Tk
	H, G, dv := c.Heads, c.KVHeads, c.ValueHeadDim
	v := linearRef64(xv, B*tk, c.ValueDim, w.V, G*dv, w.VBias)
	o := make([]float64, B*tq*H*dv)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			g := h / (H / G)
			for i := 0; i < tq; i++ {
				for j := 0; j < tk; j++ {
					pij := float64(p[((b*H+h)*tq+i)*tk+j])
					for d := 0; d < dv; d++ {
						o[(b*tq+i)*H*dv+h*dv+d] += pij * v[(b*tk+j)*G*dv+g*dv+d]
					}
				}
			}
		}
	}
	y := make([]float64, B*tq*c.OutDim)
	for r := 0; r < B*tq; r++ {
		for j := 0; j < c.OutDim; j++ {
			acc := float64(w.OutBias[j])
			for d := 0; d < H*dv; d++ {
				acc += o[r*H*dv+d] * float64(w.Out[j*H*dv+d])
			}
			y[r*c.OutDim+j] = acc
		}
	}
	return y
}

// TestAttentionMapSelfNeedsNoValues checks that self-attention maps need only
// ContextDim = QueryDim: values play no part.
func TestAttentionMapSelfNeedsNoValues(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ValueDim: 5, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 3)
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 4}
	x := randn(rand.New(rand.NewPCG(1, 2)), 4*8)
	p, err := l.AttentionMap(x, nil, s, &xattn.Mask{Causal: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	want, bound := probsRef64(cfg, w, x, x, xattn.Shape{Batch: 1, Tq: 4, Tk: 4}, &xattn.Mask{Causal: true})
	wantMean := meanHeads64(want, 1, 2, 16)
	for i := range bound {
		bound[i] += 1e-6
	}
	checkProbs(t, p, wantMean, bound[:16])
	if p[1] != 0 || p[0] != 1 {
		t.Errorf("causal row 0 = %v, want [1 0 0 0]", p[:4])
	}
}

func TestAttentionMapEmpty(t *testing.T) {
	cfg := xattn.Config{QueryDim: 4, Heads: 2, HeadDim: 2}
	w, _ := xattn.NewWeights(cfg, 1)
	l, _ := xattn.New(cfg, w)
	for _, s := range []xattn.Shape{{Batch: 0, Tq: 3, Tk: 2}, {Batch: 2, Tq: 0, Tk: 2}, {Batch: 2, Tq: 3, Tk: 0}} {
		x := make([]float32, s.Batch*s.Tq*4)
		ctx := make([]float32, s.Batch*s.Tk*4)
		p, err := l.AttentionMap(x, ctx, s, &xattn.Mask{KeyLen: make([]int, s.Batch)}, true)
		if err != nil || len(p) != 0 {
			t.Errorf("%+v: %d values, %v", s, len(p), err)
		}
	}
}

func TestAttentionMapErrors(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	l, _ := xattn.New(cfg, w)
	self, _ := xattn.New(xattn.Config{QueryDim: 8, Heads: 8, HeadDim: 1}, mustWeights(t, xattn.Config{QueryDim: 8, Heads: 8, HeadDim: 1}))
	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 4}
	x, ctx := make([]float32, 2*3*8), make([]float32, 2*4*6)
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name    string
		l       *xattn.Layer
		p       []float32 // for AttentionMapInto; nil: AttentionMap
		x, ctx  []float32
		s       xattn.Shape
		m       *xattn.Mask
		perHead bool
		want    error
		msg     string
	}{
		{"x", l, nil, x[1:], ctx, s, nil, true, xattn.ErrShape, "query input has 47 values, want [2, 3, 8] = 48"},
		{"context", l, nil, x, ctx[:5], s, nil, true, xattn.ErrShape, "key input has 5 values, want [2, 4, 6] = 48"},
		{"self/dims", l, nil, x, nil, s, nil, true, xattn.ErrShape, "QueryDim=8 ≠ ContextDim=6"},
		{"self/tk", self, nil, x, nil, s, nil, true, xattn.ErrShape, "Tq=3 but Tk=4"},
		{"negative", l, nil, x, ctx, xattn.Shape{Batch: -1, Tq: 3, Tk: 4}, nil, true, xattn.ErrShape, "negative"},
		{"rows", l, nil, x, ctx, xattn.Shape{Batch: 1 << 40, Tq: 1 << 30, Tk: 4}, nil, true, xattn.ErrShape, "overflow"},
		{"map", self, nil, x, ctx, xattn.Shape{Batch: 1, Tq: 1 << 30, Tk: 1 << 30}, nil, true, xattn.ErrShape, "attention map [1, 8, 1073741824, 1073741824] overflows"},
		{"into/perhead", l, make([]float32, 2*3*4), x, ctx, s, nil, true, xattn.ErrShape, "attention map has 24 values, want [2, 2, 3, 4] = 48"},
		{"into/mean", l, make([]float32, 48), x, ctx, s, nil, false, xattn.ErrShape, "want [2, 1, 3, 4] = 24"},
		{"keylen/count", l, nil, x, ctx, s, &xattn.Mask{KeyLen: []int{4}}, true, xattn.ErrMask, "KeyLen has 1 entries"},
		{"keylen/range", l, nil, x, ctx, s, &xattn.Mask{KeyLen: []int{4, 5}}, false, xattn.ErrMask, "KeyLen[1]=5"},
		{"keep/heads", l, nil, x, ctx, s, &xattn.Mask{Keep: &xattn.KeepMask{Data: make([]bool, 3*4), Batch: 1, Heads: 3, Rows: 1}}, true, xattn.ErrMask, "Keep.Heads=3"},
		{"bias/len", l, nil, x, ctx, s, &xattn.Mask{Bias: &xattn.BiasMask{Data: make([]float32, 3), Batch: 1, Heads: 1, Rows: 1}}, true, xattn.ErrMask, "Bias has 3 values"},
		{"bias/nan", l, nil, x, ctx, s, &xattn.Mask{Bias: &xattn.BiasMask{Data: []float32{0, nan, 0, 0}, Batch: 1, Heads: 1, Rows: 1}}, true, xattn.ErrMask, "Bias.Data[1] = NaN"},
		{"bias/+inf", l, nil, x, ctx, s, &xattn.Mask{Bias: &xattn.BiasMask{Data: []float32{0, 0, float32(math.Inf(1)), 0}, Batch: 1, Heads: 1, Rows: 1}}, true, xattn.ErrMask, "+Inf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.p != nil {
				err = tc.l.AttentionMapInto(tc.p, tc.x, tc.ctx, tc.s, tc.m, tc.perHead)
			} else {
				var p []float32
				p, err = tc.l.AttentionMap(tc.x, tc.ctx, tc.s, tc.m, tc.perHead)
				if p != nil {
					t.Errorf("got %d values with an error", len(p))
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to name %q", err, tc.msg)
			}
		})
	}
}

func mustWeights(t *testing.T, cfg xattn.Config) *xattn.Weights {
	t.Helper()
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// ropeAbsBound replaces, in the rows of |q| or |k| of x (n heads of dh
// values), each rotated pair by |a|+|b| in both places: a bound on the
// magnitude of the pair after any rotation.
func ropeAbsBound(x []float64, n, dh int, r xattn.RoPE) {
	dims := r.Dims
	if dims == 0 {
		dims = dh - dh%2
	}
	for h := range n {
		v := x[h*dh:]
		for k := range dims / 2 {
			i, j := k, k+dims/2
			if r.Interleaved {
				i, j = 2*k, 2*k+1
			}
			v[i] += v[j]
			v[j] = v[i]
		}
	}
}
