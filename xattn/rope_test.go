package xattn_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// ropeRef64 rotates the rows of x (rows of heads heads of dh values) in
// place in float64 as RoPE's formula says: row t at position off + t%period,
// pair k of the first dims values by the angle pos·base^(−2k/dims), the
// pair (k, k+dims/2) or, interleaved, (2k, 2k+1).
func ropeRef64(x []float64, rows, heads, dh, period, off int, r xattn.RoPE) {
	base, dims := r.Base, r.Dims
	if base == 0 {
		base = 10000
	}
	if dims == 0 {
		dims = dh - dh%2
	}
	for t := range rows {
		pos := float64(off + t%period)
		for h := range heads {
			v := x[(t*heads+h)*dh:]
			for k := range dims / 2 {
				theta := pos / math.Pow(base, float64(2*k)/float64(dims))
				i, j := k, k+dims/2
				if r.Interleaved {
					i, j = 2*k, 2*k+1
				}
				a, b := v[i], v[j]
				v[i] = a*math.Cos(theta) - b*math.Sin(theta)
				v[j] = b*math.Cos(theta) + a*math.Sin(theta)
			}
		}
	}
}

// attentionRoPERef64 is attentionRef64 with RoPE: queries at positions
// qOff + i, keys at kOff + j.
func attentionRoPERef64(cfg xattn.Config, w *xattn.Weights, xq, xk, xv []float32, s xattn.Shape, m *xattn.Mask,
	r xattn.RoPE, qOff, kOff int) []float64 {
	c := resolved(cfg)
	B, tq, tk := s.Batch, s.Tq, s.Tk
	H, G, dk, dv := c.Heads, c.KVHeads, c.HeadDim, c.ValueHeadDim
	q := linearRef64(xq, B*tq, c.QueryDim, w.Q, H*dk, w.QBias)
	k := linearRef64(xk, B*tk, c.ContextDim, w.K, G*dk, w.KBias)
	v := linearRef64(xv, B*tk, c.ValueDim, w.V, G*dv, w.VBias)
	ropeRef64(q, B*tq, H, dk, max(tq, 1), qOff, r)
	ropeRef64(k, B*tk, G, dk, max(tk, 1), kOff, r)
	o := coreRef64(c, q, k, v, s, m)
	y := make([]float64, B*tq*c.OutDim)
	for t := range B * tq {
		for j := range c.OutDim {
			acc := float64(w.OutBias[j])
			for d := range H * dv {
				acc += o[t*H*dv+d] * float64(w.Out[j*H*dv+d])
			}
			y[t*c.OutDim+j] = acc
		}
	}
	return y
}

// ropeKinds are the pairings and partial rotations the tests sweep.
var ropeKinds = []xattn.RoPE{
	{},                                      // half-split, every value, base 10000
	{Interleaved: true},                     // interleaved
	{Dims: 4, Base: 500},                    // partial, half-split
	{Dims: 6, Base: 100, Interleaved: true}, // partial, interleaved
}

// TestRoPEParity holds a layer with RoPE to the float64 reference on every
// backend and variant, both pairings, partial rotations, GQA, self-attention
// (ForwardInto with a nil context) and cross-attention (ForwardQKV, Tq ≠ Tk:
// keys from 0, queries from Tk − Tq under a bottom-right mask, else from 0)
// under every mask kind, on several tiles and threads.
func TestRoPEParity(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	cfgs := []xattn.Config{
		{QueryDim: 12, Heads: 2, HeadDim: 8, Bias: true},
		{QueryDim: 10, ContextDim: 7, ValueDim: 5, Heads: 4, KVHeads: 2, HeadDim: 10, ValueHeadDim: 3, OutDim: 6},
	}
	for _, be := range structBackends(t) {
		for ci, cfg := range cfgs {
			w, err := xattn.NewWeights(cfg, uint64(ci+1))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range ropeKinds {
				for _, o := range [][]xattn.Option{
					{xattn.WithThreads(3), xattn.WithTile(4, 8), xattn.WithSerialFLOPs(0)},
					{xattn.WithThreads(1)},
				} {
					l, err := xattn.New(cfg, w, append(o, xattn.WithBackend(be), xattn.WithRoPE(r))...)
					if err != nil {
						t.Fatal(err)
					}
					c := resolved(cfg)
					for _, s := range []xattn.Shape{{Batch: 1, Tq: 1, Tk: 1}, {Batch: 2, Tq: 7, Tk: 7}, {Batch: 1, Tq: 13, Tk: 13}, {Batch: 2, Tq: 5, Tk: 11}} {
						for mk := range maskKinds {
							m := makeMask(rng, maskKind(mk), s, c.Heads)
							x := randn(rng, s.Batch*s.Tq*c.QueryDim)
							y := make([]float32, s.Batch*s.Tq*c.OutDim)
							var want []float64
							self := s.Tq == s.Tk && c.ContextDim == c.QueryDim && c.ValueDim == c.QueryDim
							if self {
								err = l.ForwardInto(y, x, nil, s, m)
								want = attentionRoPERef64(cfg, w, x, x, x, s, m, r, refOffset(m, s.Tq, s.Tk), 0)
							} else {
								kx, vx := randn(rng, s.Batch*s.Tk*c.ContextDim), randn(rng, s.Batch*s.Tk*c.ValueDim)
								err = l.ForwardQKV(y, x, kx, vx, s, m)
								want = attentionRoPERef64(cfg, w, x, kx, vx, s, m, r, refOffset(m, s.Tq, s.Tk), 0)
							}
							if err != nil {
								t.Fatal(err)
							}
							diff, norm := maxAbsDiff(y, want)
							if diff > tolerance(norm) || math.IsNaN(diff) {
								t.Fatalf("backend=%s cfg=%d rope=%+v %v mask=%v: max |y−ref| = %.3g, bound %.3g",
									blas.Kernels(be), ci, r, s, maskKind(mk), diff, tolerance(norm))
							}
						}
					}
				}
			}
		}
	}
}

// TestRoPEForwardStep decodes with a KV cache, step by step (steps of 3, 1,
// 1, 2, 4 queries) after a prefill, and holds every step to the float64
// reference at its absolute positions (queries and keys from the cache
// offset on), and the cached path (ProjectContext, ForwardContext) to the
// reference with queries and keys from 0: the cache holds rotated keys.
func TestRoPEForwardStep(t *testing.T) {
	cfg := xattn.Config{QueryDim: 12, Heads: 4, KVHeads: 2, HeadDim: 6, Bias: true}
	w, err := xattn.NewWeights(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	c := resolved(cfg)
	for _, be := range structBackends(t) {
		for _, r := range ropeKinds {
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithRoPE(r), xattn.WithThreads(2), xattn.WithTile(2, 4), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(8, 9))
			const b = 2
			kv, err := l.NewKVCache(b, 32)
			if err != nil {
				t.Fatal(err)
			}
			// xs holds every position's input, per batch: [b, n, QueryDim].
			var seq [b][]float32
			for _, tq := range []int{5, 3, 1, 1, 2, 4} {
				x := randn(rng, b*tq*c.QueryDim)
				for bi := range b {
					seq[bi] = append(seq[bi], x[bi*tq*c.QueryDim:(bi+1)*tq*c.QueryDim]...)
				}
				n := kv.Len()
				y := make([]float32, b*tq*c.OutDim)
				if err := l.ForwardStep(y, x, kv, tq, nil); err != nil {
					t.Fatal(err)
				}
				// The reference: the step's queries at n… over every key 0…n+tq−1, causal.
				tk := n + tq
				all := make([]float32, 0, b*tk*c.QueryDim)
				for bi := range b {
					all = append(all, seq[bi]...)
				}
				s := xattn.Shape{Batch: b, Tq: tq, Tk: tk}
				m := &xattn.Mask{CausalLowerRight: true}
				want := attentionRoPERef64(cfg, w, x, all, all, s, m, r, n, 0)
				diff, norm := maxAbsDiff(y, want)
				if diff > tolerance(norm) || math.IsNaN(diff) {
					t.Fatalf("backend=%s rope=%+v step at %d of %d: max |y−ref| = %.3g, bound %.3g", blas.Kernels(be), r, n, tq, diff, tolerance(norm))
				}
			}
			// A cached context: keys from 0, queries from 0.
			s := xattn.Shape{Batch: b, Tq: 3, Tk: 9}
			ctxIn := randn(rng, b*s.Tk*c.QueryDim)
			ctx, err := l.ProjectContext(ctxIn, b, s.Tk)
			if err != nil {
				t.Fatal(err)
			}
			x := randn(rng, b*s.Tq*c.QueryDim)
			y := make([]float32, b*s.Tq*c.OutDim)
			if err := l.ForwardContext(y, x, ctx, s.Tq, nil); err != nil {
				t.Fatal(err)
			}
			want := attentionRoPERef64(cfg, w, x, ctxIn, ctxIn, s, nil, r, 0, 0)
			if diff, norm := maxAbsDiff(y, want); diff > tolerance(norm) || math.IsNaN(diff) {
				t.Fatalf("backend=%s rope=%+v ForwardContext: max |y−ref| = %.3g", blas.Kernels(be), r, diff)
			}
			y2 := make([]float32, len(y))
			if err := l.ForwardInto(y2, x, ctxIn, s, nil); err != nil {
				t.Fatal(err)
			}
			if diff, norm := maxAbsDiff(y2, want); diff > tolerance(norm) || math.IsNaN(diff) {
				t.Fatalf("backend=%s rope=%+v ForwardInto: max |y−ref| = %.3g", blas.Kernels(be), r, diff)
			}
		}
	}
}

// TestRoPEErrors checks that bad RoPE options, and the entry points that do
// not support RoPE (NewAttention), are errors wrapping ErrConfig that name
// the value.
func TestRoPEErrors(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	for _, c := range []struct {
		r    xattn.RoPE
		want string
	}{
		{xattn.RoPE{Base: -1}, "Base=-1"},
		{xattn.RoPE{Base: math.Inf(1)}, "Base=+Inf"},
		{xattn.RoPE{Base: math.NaN()}, "Base=NaN"},
		{xattn.RoPE{Dims: 3}, "Dims=3"},
		{xattn.RoPE{Dims: -2}, "Dims=-2"},
		{xattn.RoPE{Dims: 6}, "Dims=6 exceeds HeadDim=4"},
	} {
		if _, err := xattn.New(cfg, w, xattn.WithRoPE(c.r)); !errors.Is(err, xattn.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("WithRoPE(%+v): %v, want ErrConfig naming %q", c.r, err, c.want)
		}
	}
	if _, err := xattn.NewAttention(xattn.AttentionConfig{Heads: 2, HeadDim: 4}, xattn.WithRoPE(xattn.RoPE{})); !errors.Is(err, xattn.ErrConfig) {
		t.Errorf("NewAttention with RoPE: %v, want ErrConfig", err)
	}
	l, err := xattn.New(cfg, w, xattn.WithRoPE(xattn.RoPE{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(l.Absorbs(xattn.Shape{Batch: 1, Tq: 1, Tk: 100000})); got != "false" {
		t.Errorf("Absorbs with RoPE = %s, want false", got)
	}
}

// TestRoPEAllocs checks that warm calls of a layer with RoPE allocate
// nothing: the table of angles is the layer's, grown once, and the rotate
// stage's rows live in the pooled pipeline.
func TestRoPEAllocs(t *testing.T) {
	cfg := xattn.Config{QueryDim: 16, Heads: 2, HeadDim: 8}
	w, _ := xattn.NewWeights(cfg, 1)
	l, err := xattn.New(cfg, w, xattn.WithRoPE(xattn.RoPE{Interleaved: true}), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	s := xattn.Shape{Batch: 2, Tq: 9, Tk: 9}
	x := randn(rng, s.Batch*s.Tq*16)
	y := make([]float32, len(x))
	m := &xattn.Mask{Causal: true}
	if err := l.ForwardInto(y, x, nil, s, m); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(20, func() {
		if err := l.ForwardInto(y, x, nil, s, m); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per warm ForwardInto with RoPE", n)
	}
	// A chunk at the end of a longer context (queries at Tk − Tq …, past
	// the first table), the same through a projected context, and a batch.
	sc := xattn.Shape{Batch: 2, Tq: 3, Tk: 100}
	xc, ctxIn := randn(rng, sc.Batch*sc.Tq*16), randn(rng, sc.Batch*sc.Tk*16)
	yc := make([]float32, len(xc))
	lr := &xattn.Mask{CausalLowerRight: true, Window: 20}
	ctx, err := l.ProjectContext(ctxIn, sc.Batch, sc.Tk)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []xattn.Request{
		{Y: yc, X: xc, Context: ctxIn, Shape: sc, Mask: lr},
		{Y: make([]float32, len(xc)), X: xc, Cached: ctx, Shape: sc, Mask: lr},
		{Y: y, X: x, Shape: s, Mask: m},
	}
	for name, call := range map[string]func() error{
		"ForwardInto (bottom-right chunk)": func() error { return l.ForwardInto(yc, xc, ctxIn, sc, lr) },
		"ForwardContext":                   func() error { return l.ForwardContext(yc, xc, ctx, sc.Tq, lr) },
		"ForwardBatch":                     func() error { return l.ForwardBatch(reqs) },
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(20, func() {
			if err := call(); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%v allocations per warm %s with RoPE", n, name)
		}
	}
	kv, err := l.NewKVCache(2, 64)
	if err != nil {
		t.Fatal(err)
	}
	x1, y1 := randn(rng, 2*16), make([]float32, 2*16)
	if err := l.ForwardStep(y1, x1, kv, 1, nil); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(20, func() {
		if err := l.ForwardStep(y1, x1, kv, 1, nil); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per warm ForwardStep with RoPE", n)
	}
}

// TestRoPEConcurrent runs one layer with RoPE from several goroutines, on
// different shapes and KV caches of their own, then ForwardBatch over the
// decoded sequence (meant for -race), each checked against the reference.
func TestRoPEConcurrent(t *testing.T) {
	cfg := xattn.Config{QueryDim: 12, Heads: 3, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 5)
	r := xattn.RoPE{Interleaved: true, Base: 50}
	l, err := xattn.New(cfg, w, xattn.WithRoPE(r), xattn.WithThreads(3), xattn.WithTile(2, 4), xattn.WithSerialFLOPs(0))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for gi := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(gi), 3))
			kv, err := l.NewKVCache(1, 40)
			if err != nil {
				errs <- err
				return
			}
			var seq []float32
			for range 6 {
				tq := 1 + rng.IntN(4)
				x := randn(rng, tq*12)
				seq = append(seq, x...)
				n := kv.Len()
				y := make([]float32, tq*12)
				if err := l.ForwardStep(y, x, kv, tq, nil); err != nil {
					errs <- err
					return
				}
				s := xattn.Shape{Batch: 1, Tq: tq, Tk: n + tq}
				want := attentionRoPERef64(cfg, w, x, seq, seq, s, &xattn.Mask{CausalLowerRight: true}, r, n, 0)
				if diff, norm := maxAbsDiff(y, want); diff > tolerance(norm) || math.IsNaN(diff) {
					errs <- fmt.Errorf("goroutine %d step at %d: max |y−ref| = %.3g", gi, n, diff)
					return
				}
			}
			// A batch of its own sequence as a bottom-right chunk and as a
			// whole: queries at Tk−Tq+i and at i.
			tk := kv.Len()
			s := xattn.Shape{Batch: 1, Tq: 2, Tk: tk}
			lr := &xattn.Mask{CausalLowerRight: true}
			reqs := []xattn.Request{
				{Y: make([]float32, 2*12), X: seq[(tk-2)*12:], Context: seq, Shape: s, Mask: lr},
				{Y: make([]float32, tk*12), X: seq, Shape: xattn.Shape{Batch: 1, Tq: tk, Tk: tk}, Mask: &xattn.Mask{Causal: true}},
			}
			if err := l.ForwardBatch(reqs); err != nil {
				errs <- err
				return
			}
			for i, want := range [][]float64{
				attentionRoPERef64(cfg, w, seq[(tk-2)*12:], seq, seq, s, lr, r, tk-2, 0),
				attentionRoPERef64(cfg, w, seq, seq, seq, reqs[1].Shape, reqs[1].Mask, r, 0, 0),
			} {
				if diff, norm := maxAbsDiff(reqs[i].Y, want); diff > tolerance(norm) || math.IsNaN(diff) {
					errs <- fmt.Errorf("goroutine %d ForwardBatch request %d: max |y−ref| = %.3g", gi, i, diff)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
