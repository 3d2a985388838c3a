package xattn

import (
	"fmt"
	"math"

	"github.com/xattn/xattn/blas"
)

// AttentionMap returns the attention probabilities of a forward pass, for
// inspection: for batch b, query head h, query row i and key j,
//
//	P[b,h,i,j] = softmax_j(Scale·Q[b,i,h,:]·K[b,j,g,:] + bias[b,h,i,j])
//
// over the keys j that m lets query i see, and 0 for every masked key, with
// g = h/(Heads/KVHeads) the key head that query head h reads. These are the
// weights the forward pass applies to the values,
//
//	O[b,i,h,:] = Σ_j P[b,h,i,j]·V[b,j,g,:]
//
// to float32 rounding. With [WithRoPE], Q and K are rotated as in the
// forward pass (keys at 0 … Tk−1, queries at Tk − Tq + i under
// CausalLowerRight, else at i). With perHead the result is P as [Batch, Heads, Tq, Tk],
// row-major; without, it is the mean over heads, [Batch, Tq, Tk].
//
// # Routing
//
// x is the queries' source, [Batch, Tq, QueryDim]; context is the keys'
// source, [Batch, Tk, ContextDim]: the context of [Layer.ForwardInto] and
// [Layer.ForwardSelfDoc], the key of [Layer.ForwardQKV]. Values play no part,
// so no ValueDim is needed. A nil context means self-attention, as for
// ForwardInto: keys come from x, Tk must be 0 or Tq, and the layer needs
// ContextDim = QueryDim.
//
// # Masks
//
// m is applied as in the forward pass (see [Mask]). A query row that sees no
// key at all is all zeros, matching its output of 0; every other row of a
// head sums to 1. A row of the mean over heads sums to the fraction of heads
// in which it sees some key.
//
// # Cost
//
// The probabilities are never computed by the forward pass: this is a
// separate call that projects Q and K again with the layer's backend, forms
// the Tq×Tk scores of each (batch, head) with one SGEMM, runs the backend's
// softmax row pass on them and divides by the row sums. It allocates the
// projections and, besides the result, one Tq×Tk matrix for the mean; it runs
// on the calling goroutine and is safe for concurrent use.
//
// Errors wrap [ErrShape] or [ErrMask], as for ForwardInto.
func (l *Layer) AttentionMap(x, context []float32, s Shape, m *Mask, perHead bool) ([]float32, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	s, k, n, err := l.checkMap(x, context, s, perHead)
	if err != nil {
		return nil, err
	}
	var ws workspace // the mask checked before p is allocated
	var a blas.Attention
	if err := ws.setMask(&a, m, s.Batch, l.cfg.Heads, s.Tq, s.Tk); err != nil {
		return nil, err
	}
	if err := checkMem("the attention map", float64(n)); err != nil {
		return nil, err
	}
	p := make([]float32, n)
	if err := l.attentionMapInto(p, x, k, s, m, perHead); err != nil {
		return nil, err
	}
	return p, nil
}

// AttentionMapInto is [Layer.AttentionMap] into p, which must hold exactly
// Batch·Heads·Tq·Tk values with perHead, else Batch·Tq·Tk. Every value of p
// is written; p must not overlap the inputs (an error wrapping [ErrShape]),
// which are only read.
func (l *Layer) AttentionMapInto(p, x, context []float32, s Shape, m *Mask, perHead bool) error {
	if err := l.usable(); err != nil {
		return err
	}
	s, k, n, err := l.checkMap(x, context, s, perHead)
	if err != nil {
		return err
	}
	if len(p) != n {
		heads := l.cfg.Heads
		if !perHead {
			heads = 1
		}
		return fmt.Errorf("%w: attention map has %d values, want [%d, %d, %d, %d] = %d",
			ErrShape, len(p), s.Batch, heads, s.Tq, s.Tk, n)
	}
	if err := checkOverlap("the attention map", p, "query input", x); err != nil {
		return err
	}
	if err := checkOverlap("the attention map", p, "key input", k); err != nil {
		return err
	}
	return l.attentionMapInto(p, x, k, s, m, perHead)
}

// checkMap validates the shape and inputs of an attention map: it returns
// the shape with the routing of a nil context applied, the keys' source and
// the length of the map.
func (l *Layer) checkMap(x, context []float32, s Shape, perHead bool) (Shape, []float32, int, error) {
	s, err := l.mapShape(context, s)
	if err != nil {
		return s, nil, 0, err
	}
	n, err := l.mapLen(s, perHead)
	if err != nil {
		return s, nil, 0, err
	}
	c := &l.cfg
	k := context
	if context == nil {
		k = x
	}
	if err := checkLen("query input", x, s.Batch, s.Tq, c.QueryDim); err != nil {
		return s, nil, 0, err
	}
	if err := checkLen("key input", k, s.Batch, s.Tk, c.ContextDim); err != nil {
		return s, nil, 0, err
	}
	if err := l.finiteInputs(x, k, nil, s); err != nil {
		return s, nil, 0, err
	}
	return s, k, n, nil
}

// attentionMapInto computes a map of checked shape and inputs into p.
func (l *Layer) attentionMapInto(p, x, k []float32, s Shape, m *Mask, perHead bool) error {
	c := &l.cfg
	if s.Batch == 0 || s.Tq == 0 {
		return nil
	}
	// A workspace of its own, not the pool's: only its key lengths are used,
	// and no caller memory must stay behind in the pool.
	var ws workspace
	var a blas.Attention
	if err := ws.setMask(&a, m, s.Batch, c.Heads, s.Tq, s.Tk); err != nil {
		return err
	}
	if s.Tk == 0 {
		return nil
	}
	// The projections, and one Tq×Tk matrix for the mean.
	b, tq, tk := float64(s.Batch), float64(s.Tq), float64(s.Tk)
	if err := checkMem("the attention map's scratch", b*tq*float64(c.Heads*c.HeadDim)+
		b*tk*float64(c.KVHeads*c.HeadDim)+tq*tk); err != nil {
		return err
	}
	l.attentionMap(p, x, k, s, &a, perHead)
	return nil
}

// mapShape applies the self-attention routing of a nil context to s.
func (l *Layer) mapShape(context []float32, s Shape) (Shape, error) {
	if context != nil {
		return s, nil
	}
	c := &l.cfg
	if c.ContextDim != c.QueryDim {
		return s, fmt.Errorf("%w: nil context means self-attention, but QueryDim=%d ≠ ContextDim=%d",
			ErrShape, c.QueryDim, c.ContextDim)
	}
	if s.Tk != 0 && s.Tk != s.Tq {
		return s, fmt.Errorf("%w: self-attention with Tq=%d but Tk=%d", ErrShape, s.Tq, s.Tk)
	}
	s.Tk = s.Tq
	return s, nil
}

// mapLen validates s and returns the length of its attention map.
func (l *Layer) mapLen(s Shape, perHead bool) (int, error) {
	if err := l.checkShape(s); err != nil {
		return 0, err
	}
	heads := 1
	if perHead {
		heads = l.cfg.Heads
	}
	n, ok := mul3(s.Batch, heads, s.Tq)
	if ok {
		n, ok = mul(n, s.Tk)
	}
	if !ok {
		return 0, fmt.Errorf("%w: attention map [%d, %d, %d, %d] overflows", ErrShape, s.Batch, heads, s.Tq, s.Tk)
	}
	return n, nil
}

// attentionMap computes a validated call with Batch, Tq, Tk > 0; a holds the
// mask fields set by setMask.
func (l *Layer) attentionMap(p, x, k []float32, s Shape, a *blas.Attention, perHead bool) {
	c := &l.cfg
	be := l.backend
	b, tq, tk := s.Batch, s.Tq, s.Tk
	h, g, dk := c.Heads, c.KVHeads, c.HeadDim
	nq, nk := h*dk, g*dk

	// Q = x·Wqᵀ + bq and K = k·Wkᵀ + bk, heads as column blocks.
	q := make([]float32, b*tq*nq)
	kk := make([]float32, b*tk*nk)
	be.Sgemm(&blas.Batch{
		Count: 1, M: b * tq, N: nq, K: c.QueryDim, TransB: true, Alpha: 1,
		A: x, LDA: c.QueryDim, B: l.wq, LDB: c.QueryDim, C: q, LDC: nq, Bias: l.bq, Packed: l.bf16Packed(l.pq),
	})
	be.Sgemm(&blas.Batch{
		Count: 1, M: b * tk, N: nk, K: c.ContextDim, TransB: true, Alpha: 1,
		A: k, LDA: c.ContextDim, B: l.wk, LDB: c.ContextDim, C: kk, LDC: nk, Bias: l.bk, Packed: l.bf16Packed(l.pk),
	})

	if rp := l.rope; rp != nil {
		// As the forward pass: keys from 0, queries where the mask places
		// them (WithRoPE).
		var t []float32
		rp.rotateAll([]ropeRows{
			{x: q, rows: b * tq, ld: nq, heads: h, period: tq, off: a.CausalOffset},
			{x: kk, rows: b * tk, ld: nk, heads: g, period: tk},
		}, dk, &t)
	}

	per := tq * tk
	var head []float32 // the map of one head, for the mean
	if !perHead {
		head = make([]float32, per)
		clear(p)
	}
	row := make([]float32, 3*tq)
	mx, sum, f := row[:tq], row[tq:2*tq], row[2*tq:]
	negInf := float32(math.Inf(-1))
	for bi := range b {
		// Keys past the key length, or past the causal diagonal of the
		// last query, are seen by no row.
		nkeys := tk
		if a.KeyLen != nil {
			nkeys = min(nkeys, int(a.KeyLen[bi]))
		}
		if a.Causal {
			nkeys = min(nkeys, max(tq+a.CausalOffset, 0))
		}
		for hi := range h {
			dst := head
			if perHead {
				dst = p[(bi*h+hi)*per:][:per]
			}
			if nkeys < tk {
				for r := range tq {
					clear(dst[r*tk+nkeys : (r+1)*tk])
				}
			}
			if nkeys > 0 {
				gi := hi / (h / g)
				be.Sgemm(&blas.Batch{
					Count: 1, M: tq, N: nkeys, K: dk, TransB: true, Alpha: c.Scale,
					A: q[bi*tq*nq+hi*dk:], LDA: nq,
					B: kk[bi*tk*nk+gi*dk:], LDB: nk,
					C: dst, LDC: tk,
				})
				for r := range tq {
					mx[r], sum[r] = negInf, 0
				}
				rows := blas.Rows{
					M: tq, N: nkeys, S: dst, LDS: tk,
					Causal: a.Causal, Lim0: a.CausalOffset + 1, Window: a.Window,
					Max: mx, Sum: sum, Corr: f,
				}
				if a.ALiBi != nil {
					rows.Slope = a.ALiBi[hi]
				}
				if a.Bias != nil {
					rows.Bias = a.Bias[a.BiasStride[0]*bi+a.BiasStride[1]*hi:]
					rows.LDBias = a.BiasStride[2]
				}
				if a.Keep != nil {
					rows.Keep = a.Keep[a.KeepStride[0]*bi+a.KeepStride[1]*hi:]
					rows.LDKeep = a.KeepStride[2]
				}
				be.SoftmaxRows(&rows)
				// Divide by the row sums; a row that saw no key is 0, and
				// a NaN row (sum NaN) is left as the row pass made it:
				// NaN where it sees a key, 0 where it does not.
				for r := range tq {
					switch s := sum[r]; {
					case s != s:
						f[r] = 1
					case s > 0:
						f[r] = 1 / s
					default:
						f[r] = 0
					}
				}
				be.ScaleRows(tq, nkeys, dst, tk, f)
			}
			if !perHead {
				pb := p[bi*per:][:per]
				for j, v := range head {
					pb[j] += v
				}
			}
		}
		if !perHead && h > 1 {
			pb := p[bi*per:][:per]
			for j := range pb {
				pb[j] /= float32(h)
			}
		}
	}
}
