package main

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/xattn/xattn/xattn"
)

// The -ref64 check: each row's output against the float64 reference of
// the FP32 layer's function on the same float32 weights and inputs (the
// fidelity of a BF16 row, and of a peer, against the exact result rather
// than against xattn's FP32 output).

// normalProblem redraws p's weights and inputs as -inputs normal has them:
// inputs N(0, 1), every weight and bias of a projection from n features
// N(0, 1)/√n.
func normalProblem(p *problem) {
	rng := rand.New(rand.NewPCG(p.seed, 0x6e6f726d)) // "norm"
	norm := func(v []float32, scale float64) {
		for i := range v {
			v[i] = float32(rng.NormFloat64() * scale)
		}
	}
	c := p.c.cfg
	hv := c.Heads * headDimV(c)
	w := p.w
	for _, m := range []struct {
		v     []float32
		fanIn int
	}{{w.Q, c.QueryDim}, {w.QBias, c.QueryDim}, {w.K, contextDim(c)}, {w.KBias, contextDim(c)},
		{w.V, contextDim(c)}, {w.VBias, contextDim(c)}, {w.Out, hv}, {w.OutBias, hv}} {
		norm(m.v, 1/math.Sqrt(float64(m.fanIn)))
	}
	norm(p.x, 1)
	norm(p.ctx, 1)
	norm(p.selfSeq, 1)
}

// headDimV resolves the default of Config.ValueHeadDim.
func headDimV(c xattn.Config) int {
	if c.ValueHeadDim == 0 {
		return c.HeadDim
	}
	return c.ValueHeadDim
}

// reference64 returns the output of p's plain forward pass computed in
// float64 from its float32 weights and inputs, on all CPUs, or nil for a
// layer whose values come from another source than its keys (ValueDim ≠
// ContextDim, which the presets do not have).
func reference64(p *problem) []float64 {
	c := p.c.cfg
	if c.ValueDim != 0 && c.ValueDim != contextDim(c) {
		return nil
	}
	h, dk, dv := c.Heads, c.HeadDim, headDimV(c)
	g := c.KVHeads
	if g == 0 {
		g = h
	}
	dq, dc, do := c.QueryDim, contextDim(c), outDim(c)
	b, tq, tk := p.c.shape.Batch, p.c.shape.Tq, p.c.shape.Tk
	w := p.w
	// proj returns rows of x (n features each) times wᵀ (m×n) plus bias.
	proj := func(x []float32, rows, n int, wt []float32, m int, bias []float32) []float64 {
		out := make([]float64, rows*m)
		parallel(rows, func(r int) {
			xr := x[r*n:][:n]
			for j := range m {
				wj := wt[j*n:][:n]
				s := 0.0
				if bias != nil {
					s = float64(bias[j])
				}
				for i, v := range xr {
					s += float64(v) * float64(wj[i])
				}
				out[r*m+j] = s
			}
		})
		return out
	}
	q := proj(p.x, b*tq, dq, w.Q, h*dk, w.QBias)
	k := proj(p.ctx, b*tk, dc, w.K, g*dk, w.KBias)
	v := proj(p.ctx, b*tk, dc, w.V, g*dv, w.VBias)
	scale := float64(p.scale)
	o := make([]float64, b*tq*h*dv)
	parallel(b*h*tq, func(i int) {
		bb, hh, r := i/(h*tq), i/tq%h, i%tq
		gg := hh / (h / g)
		qr := q[(bb*tq+r)*h*dk+hh*dk:][:dk]
		s := make([]float64, tk)
		mx := math.Inf(-1)
		for j := range tk {
			kj := k[(bb*tk+j)*g*dk+gg*dk:][:dk]
			d := 0.0
			for e, x := range qr {
				d += x * kj[e]
			}
			s[j] = d * scale
			mx = math.Max(mx, s[j])
		}
		sum := 0.0
		for j := range s {
			s[j] = math.Exp(s[j] - mx)
			sum += s[j]
		}
		or := o[(bb*tq+r)*h*dv+hh*dv:][:dv]
		for j, pj := range s {
			vj := v[(bb*tk+j)*g*dv+gg*dv:][:dv]
			for e := range or {
				or[e] += pj / sum * vj[e]
			}
		}
	})
	y := make([]float64, b*tq*do)
	parallel(b*tq, func(r int) {
		or := o[r*h*dv:][:h*dv]
		for j := range do {
			wj := w.Out[j*h*dv:][:h*dv]
			s := 0.0
			if w.OutBias != nil {
				s = float64(w.OutBias[j])
			}
			for i, x := range or {
				s += x * float64(wj[i])
			}
			y[r*do+j] = s
		}
	})
	return y
}

// parallel calls f(i) for i in [0, n) on every CPU.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// setRef64 records in r the error of out against p's float64 reference,
// max|out − ref| / max(1, ‖ref‖∞), where -ref64 computed one.
func setRef64(r *Result, p *problem, out []float32) {
	if p.ref64 == nil || len(out) != len(p.ref64) {
		return
	}
	d, n := 0.0, 0.0
	for i, v := range p.ref64 {
		d = math.Max(d, math.Abs(float64(out[i])-v))
		n = math.Max(n, math.Abs(v))
	}
	if math.IsNaN(d) || math.IsInf(d, 0) {
		d = -1 // not representable in JSON; the output check reports it
	}
	r.Ref64Err = d / math.Max(1, n)
}
