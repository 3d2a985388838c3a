package xattn

import (
	"math"

	"github.com/xattn/xattn/blas"
)

// The absorbed form of a forward pass. Per head h (key/value head g),
//
//	Q_h·K_gᵀ = Q_h·(C·Wk_gᵀ + bk_g)ᵀ = (Q_h·Wk_g)·Cᵀ + (Q_h·bk_g)·1ᵀ
//	P_h·V_g  = P_h·(C·Wv_gᵀ + bv_g) = (P_h·C)·Wv_gᵀ + bv_g   (rows of P sum to 1)
//
// for the context C: the key and value projections can be moved from the
// context's side, Tk rows, to the queries' side, H·Tq rows. The second term
// of the scores is the same for every key of a row, which softmax ignores.
// So the layer may project the queries on into Q̃_h = Q_h·Wk_g (Dc values a
// row), run the attention core with the raw context rows as the keys and
// values of one shared head, and project its outputs Õ_h = P_h·C down by
// Wv_g. When H·Tq is small against the key/value width (a decoder reading a
// long encoder output: 8×32 query rows over 1500 context rows of 512
// features), that is half the work of projecting the context, and the
// projected keys and values are never written.
//
// It is the same function to float32 rounding: other sums, in another
// order. Layer.Absorbs decides per call, from the shape alone.

// absorbGain is how much less work the absorbed form must do to be chosen:
// its products are less regular (per-head products with K = dk, an
// attention core over Dc-wide rows).
const absorbGain = 0.75

// Absorbs reports whether [Layer.ForwardInto] (and ForwardQKV, ForwardSelfDoc)
// runs a call of shape s in the absorbed form: allowed by the plan
// ([WithAbsorb]), with keys, and less than absorbGain of the work of
// projecting the keys and values, the saving worth more than a few
// hand-offs to the workers. (The key bias it drops is finite: New rejects
// weights that are not.) Such a call does less work than [Layer.FLOPs]
// counts: [Layer.WorkFLOPs].
func (l *Layer) Absorbs(s Shape) bool {
	if l == nil {
		return false
	}
	c := &l.cfg
	if !l.plan.Absorb || s.Tk == 0 || s.Tq == 0 || l.rope != nil {
		return false
	}
	// The work of one sequence that the two forms do differently: the key
	// and value projections and the core, or the absorbed products.
	tq, tk := float64(s.Tq), float64(s.Tk)
	kv, a := keyValueProducts(c, tk, tq*tk), absorbedProducts(c, 1, tq, tk)
	projected, absorbed := productFLOPs(kv[:]...), productFLOPs(a[:]...)
	// Two more phases, and products of a few rows each: the work saved
	// must pay for more than a few hand-offs (the tiny shape does not).
	saved := float64(s.Batch) * (projected - absorbed)
	return absorbed < absorbGain*projected && saved >= absorbMinSaved*l.plan.SerialFLOPs
}

// absorbMinSaved is the work, in units of Plan.SerialFLOPs (what one
// hand-off to the workers is worth), that the absorbed form must save.
const absorbMinSaved = 16

// absorbedWeights are the weights of the absorbed form, made on first use
// (in BF16 at New, from the weights as given, and wkT is nil):
// per key/value head g, Wk_g transposed (Dc×dk, for Q̃_h = Q_h·Wk_g as a
// product with a transposed right-hand side) and both as the backend packs
// them, with Wv_g (dv×Dv rows of Wv; views into the layer's packed Wv when
// heads fill whole panels).
type absorbedWeights struct {
	wkT      []float32
	pkT, pvh []blas.Packed
}

func (l *Layer) absorbed() *absorbedWeights {
	l.absOnce.Do(func() {
		c := &l.cfg
		l.makeAbsorbed(weightMat{rows: c.KVHeads * c.HeadDim, cols: c.ContextDim, f32: l.wk},
			weightMat{rows: c.KVHeads * c.ValueHeadDim, cols: c.ValueDim, f32: l.wv})
	})
	return &l.abs
}

// makeAbsorbed makes the absorbed form's weights from the key and value
// weights wk and wv. A BF16 layer packs Wk_gᵀ from wk's values as they are
// and keeps no float32 copy (wkT stays nil).
func (l *Layer) makeAbsorbed(wk, wv weightMat) {
	c := &l.cfg
	dk, dv, dc := c.HeadDim, c.ValueHeadDim, c.ContextDim
	w := &l.abs
	w.pkT = make([]blas.Packed, c.KVHeads)
	w.pvh = make([]blas.Packed, c.KVHeads)
	bf16 := l.plan.Precision == BF16
	if !bf16 {
		w.wkT = make([]float32, c.KVHeads*dc*dk)
	}
	for g := range c.KVHeads {
		// Wk_gᵀ, dc×dk: row j holds column j of head g's rows of Wk.
		var kT weightMat
		if bf16 {
			kT = weightMat{rows: dc, cols: dk, at: func(i int) float32 { return wk.elem(g*dk+i%dk, i/dk) }}
		} else {
			t := w.wkT[g*dc*dk:][:dc*dk]
			for d := range dk {
				for j, v := range wk.f32[(g*dk+d)*dc:][:dc] {
					t[j*dk+d] = v
				}
			}
			kT = weightMat{rows: dc, cols: dk, f32: t}
		}
		w.pkT[g] = kT.pack(l.backend)
		// Head g's rows of Wv: a view of the packed Wv where they are
		// whole column steps, else packed apart (and maybe not packed:
		// the backend decides for a few rows).
		pv, ok := l.pv.Cols(g*dv, dv)
		if !ok || dv%l.colStep != 0 {
			pv = wv.slice(g*dv, dv).pack(l.backend)
		}
		w.pvh[g] = pv
	}
}

// The stages of the absorbed form (pipeline.run): after the queries,
// absorbQueries makes the absorbed queries, attendAbsorbed runs the core
// over the context rows, absorbValues projects its outputs by Wv; the output
// projection follows as in every form.

// absorbQueries computes Q̃_h = Q_h·Wk_g, rows of H·Dc values, from the
// projected queries of a call of shape s.
func (p *pipeline) absorbQueries(s Shape) {
	l := p.layer
	c := &l.cfg
	w := l.absorbed()
	rows := s.Batch * s.Tq
	h, dk, dc := c.Heads, c.HeadDim, c.ContextDim
	p.ws.aq = grow(p.ws.aq, rows*h*dc)
	p.ws.gemms = p.ws.gemms[:0]
	group := h / c.KVHeads
	for hh := range h {
		g := hh / group
		gm := gemm{a: p.ws.q[hh*dk:], m: rows, lda: h * dk, k: dk, n: dc, packed: w.pkT[g], c: p.ws.aq[hh*dc:], ldc: h * dc}
		if w.wkT != nil { // nil in BF16: the products read the packed weights only
			gm.w = w.wkT[g*dc*dk:][:dc*dk]
		}
		p.ws.gemms = append(p.ws.gemms, gm)
	}
	p.gemmPhase()
}

// attendAbsorbed runs Õ_h = softmax(Scale·Q̃_h·Cᵀ + mask)·C over the raw
// context rows of call c (keys c.xk, values c.xv) as one shared key/value
// head. The mask fields of p.att are set already.
func (p *pipeline) attendAbsorbed(c *call) {
	l := p.layer
	cfg := &l.cfg
	s := c.s
	b, tq, tk := s.Batch, s.Tq, s.Tk
	h, dk, dv, dc, dx := cfg.Heads, cfg.HeadDim, cfg.ValueHeadDim, cfg.ContextDim, cfg.ValueDim
	rows := b * tq
	a := &p.att
	a.Batch, a.Heads, a.KVHeads, a.Tq, a.Tk, a.DK, a.DV = b, h, 1, tq, tk, dc, dx
	a.Scale = cfg.Scale
	a.K, a.LDK, a.BatchK = c.xk, dc, tk*dc
	a.V, a.LDV, a.BatchV = c.xv, dx, tk*dx
	a.KT = blas.Packed{}
	p.ws.ao = grow(p.ws.ao, rows*h*dx)
	a.Q, a.LDQ, a.BatchQ = p.ws.aq, h*dc, tq*h*dc
	a.O, a.LDO, a.BatchO = p.ws.ao, h*dx, tq*h*dx
	a.Stats = nil
	if l.bv != nil {
		// A row that sees no key has Õ = 0 but must get O = 0, not bv.
		p.ws.astats = grow(p.ws.astats, 2*b*h*tq)
		a.Stats = p.ws.astats
	}
	pl := &l.plan
	// Key blocks of about the bytes the plan's take at dk+dv values a key,
	// times 4 (the plan's are a quarter of L2's quarter), in whole column
	// steps of the backend (the panels a packed key block is cut in).
	cs := l.colStep
	kv := max(4*pl.KVBlock*(dk+dv)/(dc+dx)/cs*cs, cs)
	q := l.queryBlock(s)
	// Every head reads the same context rows: a task takes as many heads as
	// leave each thread two tasks, so each key block is read (and packed)
	// once for them all.
	a.HeadBlock = h
	for a.HeadBlock > 1 && b*(h/a.HeadBlock)*ceilDiv(tq, q) < 2*pl.Threads {
		a.HeadBlock = largestDivisorBelow(h, a.HeadBlock)
	}
	p.tiles(q, min(kv, tk))
	p.runAttention(tk)
}

// absorbValues computes O_h = Õ_h·Wv_gᵀ + bv_g into the workspace's O, and
// zeroes the rows that saw no key.
func (p *pipeline) absorbValues(s Shape) {
	l := p.layer
	c := &l.cfg
	w := l.absorbed()
	b, tq := s.Batch, s.Tq
	rows := b * tq
	h, dv, dx := c.Heads, c.ValueHeadDim, c.ValueDim
	group := h / c.KVHeads
	p.ws.o = grow(p.ws.o, rows*h*dv)
	p.ws.gemms = p.ws.gemms[:0]
	for hh := range h {
		g := hh / group
		gm := gemm{a: p.ws.ao[hh*dx:], m: rows, lda: h * dx, k: dx, n: dv, packed: w.pvh[g], c: p.ws.o[hh*dv:], ldc: h * dv}
		if l.wv != nil { // nil in BF16
			gm.w = l.wv[g*dv*dx:][:dv*dx]
		}
		if l.bv != nil {
			gm.bias = l.bv[g*dv:][:dv]
		}
		p.ws.gemms = append(p.ws.gemms, gm)
	}
	p.gemmPhase()
	if st := p.att.Stats; st != nil {
		for bi := range b {
			for hh := range h {
				st := st[2*(bi*h+hh)*tq:]
				for i := range tq {
					if math.IsInf(float64(st[2*i]), -1) {
						clear(p.ws.o[((bi*tq+i)*h+hh)*dv:][:dv])
					}
				}
			}
		}
	}
}

// largestDivisorBelow returns the largest divisor of n below d (d > 1).
func largestDivisorBelow(n, d int) int {
	for e := d - 1; e > 1; e-- {
		if n%e == 0 {
			return e
		}
	}
	return 1
}
