package xattn_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// The float64 reference: the layer written plainly from its formula,
//
//	y = concat_h softmax(scale·Q_h·K_gᵀ + bias, masked)·V_g · Woᵀ + bo,
//
// with every product and the softmax in float64, the masks applied element by
// element and nothing shared with the production code.

// linearRef64 returns x·Wᵀ + b for x [rows, in], W [out, in], b [out] or nil.
func linearRef64(x []float32, rows, in int, w []float32, out int, b []float32) []float64 {
	y := make([]float64, rows*out)
	for r := 0; r < rows; r++ {
		for o := 0; o < out; o++ {
			var s float64
			for i := 0; i < in; i++ {
				s += float64(x[r*in+i]) * float64(w[o*in+i])
			}
			if b != nil {
				s += float64(b[o])
			}
			y[r*out+o] = s
		}
	}
	return y
}

// attentionRef64 computes the layer for queries from xq, keys from xk and
// values from xv, under mask m (nil for none), in float64.
func attentionRef64(cfg xattn.Config, w *xattn.Weights, xq, xk, xv []float32, s xattn.Shape, m *xattn.Mask) []float64 {
	c := resolved(cfg)
	B, tq, tk := s.Batch, s.Tq, s.Tk
	H, G, dk, dv := c.Heads, c.KVHeads, c.HeadDim, c.ValueHeadDim
	q := linearRef64(xq, B*tq, c.QueryDim, w.Q, H*dk, w.QBias)
	k := linearRef64(xk, B*tk, c.ContextDim, w.K, G*dk, w.KBias)
	v := linearRef64(xv, B*tk, c.ValueDim, w.V, G*dv, w.VBias)
	o := coreRef64(c, q, k, v, s, m)
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

// coreRef64 is the attention core of a resolved c in float64, written from
// the formula: dense q [B, Tq, H, dk], k [B, Tk, G, dk] and v [B, Tk, G, dv]
// give o [B, Tq, H, dv], softmax(Scale·q·kᵀ + mask)·v per head, a row that
// sees no key 0.
func coreRef64(c xattn.Config, q, k, v []float64, s xattn.Shape, m *xattn.Mask) []float64 {
	B, tq, tk := s.Batch, s.Tq, s.Tk
	H, G, dk, dv := c.Heads, c.KVHeads, c.HeadDim, c.ValueHeadDim
	o := make([]float64, B*tq*H*dv)
	scores := make([]float64, tk)
	seen := make([]bool, tk)
	off := refOffset(m, tq, tk)
	slopes := refSlopes(m, H)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			g := h / (H / G)
			for i := 0; i < tq; i++ {
				mx := math.Inf(-1)
				for j := 0; j < tk; j++ {
					seen[j] = allowed(m, b, h, i, j) && structAllowed(m, i+off, j)
					if !seen[j] {
						continue
					}
					var sc float64
					for d := 0; d < dk; d++ {
						sc += q[(b*tq+i)*H*dk+h*dk+d] * k[(b*tk+j)*G*dk+g*dk+d]
					}
					sc *= float64(c.Scale)
					if slopes != nil {
						sc -= slopes[h] * float64(i+off-j)
					}
					if m != nil && m.Bias != nil {
						sc += float64(m.Bias.Data[maskIndex(m.Bias.Batch, m.Bias.Heads, m.Bias.Rows, tk, b, h, i, j)])
					}
					scores[j] = sc
					if math.IsInf(sc, -1) {
						seen[j] = false
						continue
					}
					mx = math.Max(mx, sc)
				}
				if math.IsInf(mx, -1) {
					continue // no key: the output row stays 0
				}
				var sum float64
				for j := 0; j < tk; j++ {
					if seen[j] {
						scores[j] = math.Exp(scores[j] - mx)
						sum += scores[j]
					}
				}
				for d := 0; d < dv; d++ {
					var acc float64
					for j := 0; j < tk; j++ {
						if seen[j] {
							acc += scores[j] * v[(b*tk+j)*G*dv+g*dv+d]
						}
					}
					o[(b*tq+i)*H*dv+h*dv+d] = acc / sum
				}
			}
		}
	}
	return o
}

// allowed reports whether query i of batch b, head h sees key j under m,
// ignoring the additive bias.
func allowed(m *xattn.Mask, b, h, i, j int) bool {
	if m == nil {
		return true
	}
	if m.KeyLen != nil && j >= m.KeyLen[b] {
		return false
	}
	if m.Causal && !m.CausalLowerRight && j > i {
		return false
	}
	if k := m.Keep; k != nil {
		tk := len(k.Data) / (k.Batch * k.Heads * k.Rows)
		if !k.Data[maskIndex(k.Batch, k.Heads, k.Rows, tk, b, h, i, j)] {
			return false
		}
	}
	return true
}

// refOffset is the key position of query 0 under m: Tk − Tq when aligned
// to the bottom right, else 0.
func refOffset(m *xattn.Mask, tq, tk int) int {
	if m != nil && m.CausalLowerRight {
		return tk - tq
	}
	return 0
}

// structAllowed reports whether the query at key position p sees key j
// under the structural parts of m that depend on the alignment: the
// bottom-right causal limit and the window (which implies the causal one).
func structAllowed(m *xattn.Mask, p, j int) bool {
	if m == nil {
		return true
	}
	if (m.CausalLowerRight || m.Window > 0) && j > p {
		return false
	}
	if m.Window > 0 && j <= p-m.Window {
		return false
	}
	return true
}

// refSlopes returns m's ALiBi slopes in float64, the standard ones computed
// here from BLOOM's definition (build_alibi_tensor), or nil without ALiBi.
func refSlopes(m *xattn.Mask, heads int) []float64 {
	if m == nil || m.ALiBi == nil {
		return nil
	}
	s := make([]float64, heads)
	if m.ALiBi.Slopes != nil {
		for h, v := range m.ALiBi.Slopes {
			s[h] = float64(v)
		}
		return s
	}
	closest := 1 << int(math.Floor(math.Log2(float64(heads))))
	base := math.Pow(2, -math.Pow(2, -(math.Log2(float64(closest))-3)))
	for h := 0; h < closest; h++ {
		s[h] = math.Pow(base, float64(h+1))
	}
	extra := math.Pow(2, -math.Pow(2, -(math.Log2(float64(2*closest))-3)))
	for k := 0; k < heads-closest; k++ {
		s[closest+k] = math.Pow(extra, float64(1+2*k))
	}
	return s
}

// maskIndex is the flat index of (b, h, i, j) in a broadcast
// [batch, heads, rows, tk] array.
func maskIndex(batch, heads, rows, tk, b, h, i, j int) int {
	if batch == 1 {
		b = 0
	}
	if heads == 1 {
		h = 0
	}
	if rows == 1 {
		i = 0
	}
	return ((b*heads+h)*rows+i)*tk + j
}

// resolved fills the defaults of a Config, as the package documents them.
func resolved(c xattn.Config) xattn.Config {
	if c.ContextDim == 0 {
		c.ContextDim = c.QueryDim
	}
	if c.ValueDim == 0 {
		c.ValueDim = c.ContextDim
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.ValueHeadDim == 0 {
		c.ValueHeadDim = c.HeadDim
	}
	if c.OutDim == 0 {
		c.OutDim = c.QueryDim
	}
	if c.Scale == 0 {
		c.Scale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	}
	return c
}

// randn returns n seeded standard-normal values.
func randn(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// maxAbsDiff returns max |got − want| and ‖want‖∞.
func maxAbsDiff(got []float32, want []float64) (diff, norm float64) {
	for i, w := range want {
		diff = math.Max(diff, math.Abs(float64(got[i])-w))
		norm = math.Max(norm, math.Abs(w))
	}
	return diff, norm
}

// noPanic returns what call returns, failing t if it panics: the public API
// answers bad input with errors, never panics.
func noPanic(t *testing.T, call func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic: %v", r)
		}
	}()
	return call()
}
