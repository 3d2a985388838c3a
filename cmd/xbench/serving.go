package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/xattn/xattn/xattn"
)

// The serving modes of a case: each serving call is measured beside the
// plain call it replaces (servingPairs), on the same layer, weights and
// inputs.
const (
	modeCached    = "cached"    // ProjectContext once, then ForwardContext per step
	modeRecompute = "recompute" // ForwardInto, projecting the context again every step
	modeKVStep    = "kv-step"   // ForwardStep of Tq new rows against a KVCache of Tk
	modeCausal    = "causal"    // causal self-attention ForwardInto over all Tk+Tq rows
	modeBatch     = "batch"     // ForwardBatch of -requests requests
	modeSeparate  = "separate"  // one ForwardInto per request, in a row
)

// servingPairs maps a serving mode to the plain mode it replaces.
var servingPairs = map[string]string{modeCached: modeRecompute, modeKVStep: modeCausal, modeBatch: modeSeparate}

// servingCall returns the call a case of p's mode times on l, and a
// function returning its output after the last call. It sets r's work:
// FLOPs counts, by xattn's formula, what the call computes (a cached step
// has no key and value projections; a decode step projects its new rows
// only, and its rows attend to the keys the causal mask leaves them; a
// causal forward counts the Tk(Tk+1)/2 pairs a causal mask leaves, not
// Tk²); WorkFLOPs is the absorbed form's work where the layer runs it.
func servingCall(l *xattn.Layer, p *problem, r *Result) (call func() error, out func() []float32, err error) {
	c, sh := p.c, p.c.shape
	cfg := l.Config()
	r.Mode = c.mode
	y := make([]float32, sh.Batch*sh.Tq*cfg.OutDim)
	out = func() []float32 { return y }
	// kv is the work of projecting n context rows into keys and values.
	kv := func(n int) float64 { return xattn.FLOPs(cfg, xattn.Shape{Batch: sh.Batch, Tk: n}) }
	// pairs is the attention work of a query row and a key.
	pairs := float64(sh.Batch) * 2 * float64(cfg.Heads) * float64(cfg.HeadDim+cfg.ValueHeadDim)
	switch c.mode {
	case "", modeRecompute:
		r.FLOPs = xattn.FLOPs(cfg, sh)
		if r.Absorbed = l.Absorbs(sh); r.Absorbed {
			r.WorkFLOPs = l.WorkFLOPs(sh)
		}
		return func() error { return l.ForwardInto(y, p.x, p.ctx, sh, nil) }, out, nil
	case modeCached:
		ctx, err := l.ProjectContext(p.ctx, sh.Batch, sh.Tk)
		if err != nil {
			return nil, nil, err
		}
		r.FLOPs = xattn.FLOPs(cfg, sh) - kv(sh.Tk)
		return func() error { return l.ForwardContext(y, p.x, ctx, sh.Tq, nil) }, out, nil
	case modeKVStep:
		// A prefix of Tk rows is in the cache; each step truncates back
		// to it and appends the Tq new rows.
		cache, err := l.NewKVCache(sh.Batch, sh.Tk+sh.Tq)
		if err != nil {
			return nil, nil, err
		}
		prefix, step := p.splitSelf(cfg.QueryDim)
		if err := l.ForwardStep(make([]float32, sh.Batch*sh.Tk*cfg.OutDim), prefix, cache, sh.Tk, nil); err != nil {
			return nil, nil, err
		}
		n := float64(sh.Tq)
		seen := n*float64(sh.Tk) + n*(n+1)/2 // keys the new rows see
		r.FLOPs = xattn.FLOPs(cfg, xattn.Shape{Batch: sh.Batch, Tq: sh.Tq, Tk: sh.Tq}) -
			pairs*n*n + pairs*seen
		return func() error {
			if err := cache.Truncate(sh.Tk); err != nil {
				return err
			}
			return l.ForwardStep(y, step, cache, sh.Tq, nil)
		}, out, nil
	case modeCausal:
		all := xattn.Shape{Batch: sh.Batch, Tq: sh.Tk + sh.Tq}
		yf := make([]float32, sh.Batch*all.Tq*cfg.OutDim)
		m := &xattn.Mask{Causal: true}
		t := float64(all.Tq)
		r.FLOPs = xattn.FLOPs(cfg, xattn.Shape{Batch: sh.Batch, Tq: all.Tq, Tk: all.Tq}) - pairs*t*t + pairs*t*(t+1)/2
		// The output compared across backends: the last Tq rows of each
		// sequence, what the decode step computes.
		out = func() []float32 {
			o := y[:0]
			rows := sh.Tq * cfg.OutDim
			for b := range sh.Batch {
				end := (b + 1) * all.Tq * cfg.OutDim
				o = append(o, yf[end-rows:end]...)
			}
			return o
		}
		return func() error { return l.ForwardInto(yf, p.selfSeq, nil, all, m) }, out, nil
	case modeBatch, modeSeparate:
		reqs := p.requests(cfg)
		r.Requests = len(reqs)
		r.FLOPs = float64(len(reqs)) * xattn.FLOPs(cfg, sh)
		out = func() []float32 {
			var o []float32
			for _, q := range reqs {
				o = append(o, q.Y...)
			}
			return o
		}
		if c.mode == modeBatch {
			return func() error { return l.ForwardBatch(reqs) }, out, nil
		}
		return func() error {
			for i := range reqs {
				q := &reqs[i]
				if err := l.ForwardInto(q.Y, q.X, q.Context, q.Shape, nil); err != nil {
					return err
				}
			}
			return nil
		}, out, nil
	}
	return nil, nil, fmt.Errorf("%s: unknown mode %q", c.name, c.mode)
}

// splitSelf splits p.selfSeq, B sequences of Tk+Tq rows of dq features,
// into the first Tk rows of each (the cached prefix) and the last Tq (the
// rows a decode step adds).
func (p *problem) splitSelf(dq int) (prefix, step []float32) {
	sh := p.c.shape
	for b := range sh.Batch {
		seq := p.selfSeq[b*(sh.Tk+sh.Tq)*dq : (b+1)*(sh.Tk+sh.Tq)*dq]
		prefix = append(prefix, seq[:sh.Tk*dq]...)
		step = append(step, seq[sh.Tk*dq:]...)
	}
	return prefix, step
}

// requests draws the c.requests requests of a batch case from p's seed:
// request 0 is p's own input, the others drawn anew.
func (p *problem) requests(cfg xattn.Config) []xattn.Request {
	sh := p.c.shape
	rng := rand.New(rand.NewPCG(p.seed, 0x72657173)) // "reqs"
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(2*rng.Float64() - 1)
		}
		return s
	}
	reqs := make([]xattn.Request, max(p.c.requests, 1))
	for i := range reqs {
		x, ctx := p.x, p.ctx
		if i > 0 {
			x, ctx = fill(len(p.x)), fill(len(p.ctx))
		}
		reqs[i] = xattn.Request{Y: make([]float32, sh.Batch*sh.Tq*cfg.OutDim), X: x, Context: ctx, Shape: sh}
	}
	return reqs
}

// setSpeedups sets, on each serving result, the median time of the plain
// call it replaces over its own (above 1: the serving call is faster).
func setSpeedups(rs []Result) {
	for i := range rs {
		s := &rs[i]
		plain, ok := servingPairs[s.Mode]
		if !ok || s.State != stateOK {
			continue
		}
		for j := range rs {
			q := &rs[j]
			if q.Mode == plain && q.State == stateOK && q.Case == s.Case && q.Impl == s.Impl &&
				q.Threads == s.Threads && q.Sweep == s.Sweep && q.Value == s.Value && q.MedianMs > 0 {
				s.Speedup = q.MedianMs / s.MedianMs
				s.PlainMs = q.MedianMs
			}
		}
	}
}
