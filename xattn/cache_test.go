package xattn_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// planOptions are the plans the cache tests run every case under: the
// default one, a forced serial one, and several workers with small tiles so
// that products split into row chunks and the core into many blocks. All
// forbid the absorbed form, the one that projects no context (a Context
// holds projected keys and values: WithAbsorb).
func planOptions(be blas.Backend) map[string][]xattn.Option {
	off := xattn.WithAbsorb(false)
	return map[string][]xattn.Option{
		"default":   {xattn.WithBackend(be), off},
		"serial":    {xattn.WithBackend(be), off, xattn.WithThreads(3), xattn.WithSerialFLOPs(1e18)},
		"threads=3": {xattn.WithBackend(be), off, xattn.WithThreads(3), xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0)},
		"threads=2": {xattn.WithBackend(be), off, xattn.WithThreads(2), xattn.WithTile(8, 32), xattn.WithSerialFLOPs(0)},
		// Key blocks of whole 64-key panels: the core reads the keys a
		// Context packed once (blas.Attention.KT) on the AVX-512 kernel.
		"kv=64": {xattn.WithBackend(be), off, xattn.WithThreads(2), xattn.WithTile(6, 64), xattn.WithSerialFLOPs(0)},
	}
}

// TestForwardContextBitIdentical checks that a forward pass over a projected
// Context gives the bits of ForwardInto (or ForwardQKV) over the raw context,
// on every backend and plan, for every mask kind, GQA and dv ≠ dk, with row
// counts that split the projections into chunks and contraction lengths past
// OpenBLAS's K blocking. It also checks them against the float64 reference.
func TestForwardContextBitIdentical(t *testing.T) {
	type tc struct {
		cfg   xattn.Config
		shape xattn.Shape
		qkv   bool
	}
	cases := []tc{
		{xattn.Config{QueryDim: 48, ContextDim: 40, OutDim: 24, Heads: 3, HeadDim: 16, Bias: true}, xattn.Shape{Batch: 2, Tq: 7, Tk: 130}, false},
		{xattn.Config{QueryDim: 32, ContextDim: 600, Heads: 8, KVHeads: 2, HeadDim: 8, ValueHeadDim: 12}, xattn.Shape{Batch: 3, Tq: 77, Tk: 41}, false},
		{xattn.Config{QueryDim: 64, ContextDim: 24, ValueDim: 36, Heads: 4, KVHeads: 1, HeadDim: 16, Bias: true}, xattn.Shape{Batch: 2, Tq: 33, Tk: 100}, true},
		{xattn.Config{QueryDim: 520, ContextDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 2, Tq: 5, Tk: 150}, false},
		{xattn.Config{QueryDim: 16, ContextDim: 8, Heads: 2, HeadDim: 8}, xattn.Shape{Batch: 1, Tq: 1, Tk: 1}, false},
		// 97 and 161 rows split into chunks of 32 and a last one of 1 row
		// on 3 workers: cblas_sgemm rounds such a row differently from the
		// same row inside a taller product (the packed AVX-512 kernel and
		// pure do not), so a different split would change bits there.
		{xattn.Config{QueryDim: 520, ContextDim: 512, Heads: 8, HeadDim: 64, Bias: true}, xattn.Shape{Batch: 1, Tq: 97, Tk: 161}, false},
	}
	if testing.Short() || raceEnabled {
		cases = cases[:3]
	}
	for ci, c := range cases {
		for mk := maskNone; mk <= maskAll; mk++ {
			if (testing.Short() || raceEnabled) && mk != maskNone && mk != maskAll {
				continue
			}
			route := routeCross
			if c.qkv {
				route = routeQKV
			}
			sc := sweepCase{c.cfg, c.shape, route, mk}
			d := makeCase(t, sc, uint64(ci*10+int(mk)))
			for _, be := range blas.All() {
				plans := planOptions(be)
				// ForwardInto on the workers, the Context's smaller calls
				// on the caller alone.
				plans["threshold"] = []xattn.Option{xattn.WithBackend(be), xattn.WithAbsorb(false), xattn.WithThreads(3),
					xattn.WithSerialFLOPs(0.9 * xattn.FLOPs(c.cfg, c.shape))}
				for name, opts := range plans {
					t.Run(fmt.Sprintf("backend=%s/plan=%s/%s", be.Name(), name, sc.name()), func(t *testing.T) {
						l, err := xattn.New(c.cfg, d.w, opts...)
						if err != nil {
							t.Fatal(err)
						}
						want, err := runCase(l, sc, d)
						if err != nil {
							t.Fatal(err)
						}
						var ctx *xattn.Context
						if c.qkv {
							ctx, err = l.ProjectKV(d.xk, d.xv, c.shape.Batch, c.shape.Tk)
						} else {
							ctx, err = l.ProjectContext(d.xk, c.shape.Batch, c.shape.Tk)
						}
						if err != nil {
							t.Fatal(err)
						}
						if ctx.Batch() != c.shape.Batch || ctx.Tk() != c.shape.Tk {
							t.Fatalf("Context is %d×%d, want %d×%d", ctx.Batch(), ctx.Tk(), c.shape.Batch, c.shape.Tk)
						}
						got := make([]float32, len(want))
						if err := l.ForwardContext(got, d.xq, ctx, c.shape.Tq, d.mask); err != nil {
							t.Fatal(err)
						}
						if i := testutil.BitDiff(got, want); i >= 0 {
							t.Fatalf("%v: y[%d] = %v with the Context, %v without", l, i, got[i], want[i])
						}
						if diff, norm := maxAbsDiff(got, d.want); diff > tolerance(norm) || math.IsNaN(diff) {
							t.Fatalf("max |y−ref| = %.3g, bound %.3g", diff, tolerance(norm))
						}
					})
				}
			}
		}
	}
}

// TestContextReuse projects one context and runs many query sets of
// different lengths over it: each equals its own ForwardInto bit for bit.
func TestContextReuse(t *testing.T) {
	cfg := xattn.Config{QueryDim: 40, ContextDim: 56, Heads: 4, KVHeads: 2, HeadDim: 16, Bias: true}
	w, err := xattn.NewWeights(cfg, 8)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const b, tk = 2, 77
	context := randn(rng, b*tk*cfg.ContextDim)
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithAbsorb(false), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			ctx, err := l.ProjectContext(context, b, tk)
			if err != nil {
				t.Fatal(err)
			}
			for _, tq := range []int{1, 2, 9, 64, 65, 200} {
				x := randn(rng, b*tq*cfg.QueryDim)
				want := make([]float32, b*tq*cfg.QueryDim)
				got := make([]float32, len(want))
				m := &xattn.Mask{KeyLen: []int{tk, tk / 2}}
				if err := l.ForwardInto(want, x, context, xattn.Shape{Batch: b, Tq: tq, Tk: tk}, m); err != nil {
					t.Fatal(err)
				}
				if err := l.ForwardContext(got, x, ctx, tq, m); err != nil {
					t.Fatal(err)
				}
				if i := testutil.BitDiff(got, want); i >= 0 {
					t.Fatalf("Tq=%d: y[%d] = %v, want %v", tq, i, got[i], want[i])
				}
			}
		})
	}
}

// TestSerialParallelSameBits checks the property the Context relies on: a
// layer's result does not depend on whether a call runs serially, because
// the products split into the same row chunks either way.
func TestSerialParallelSameBits(t *testing.T) {
	cfg := xattn.Config{QueryDim: 520, ContextDim: 512, Heads: 4, HeadDim: 64, Bias: true}
	c := sweepCase{cfg, xattn.Shape{Batch: 1, Tq: 97, Tk: 161}, routeCross, maskAll}
	d := makeCase(t, c, 12)
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			var first []float32
			for _, serial := range []float64{0, 1e18} {
				l, err := xattn.New(cfg, d.w, xattn.WithBackend(be), xattn.WithThreads(3), xattn.WithSerialFLOPs(serial))
				if err != nil {
					t.Fatal(err)
				}
				got, err := runCase(l, c, d)
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = got
				} else if i := testutil.BitDiff(got, first); i >= 0 {
					t.Fatalf("y[%d] = %v serially, %v in parallel", i, got[i], first[i])
				}
			}
		})
	}
}

// stepMask cuts the part of a full-sequence mask that a decoding step of
// rows [n, n+tq) over keys [0, n+tq) sees: the same key lengths (clamped to
// the keys cached so far) and the matching rows and columns of Keep and Bias.
func stepMask(full *xattn.Mask, b, h, t, n, tq int) *xattn.Mask {
	if full == nil {
		return nil
	}
	tk := n + tq
	m := &xattn.Mask{}
	if full.KeyLen != nil {
		m.KeyLen = make([]int, b)
		for i, v := range full.KeyLen {
			m.KeyLen[i] = min(v, tk)
		}
	}
	if k := full.Keep; k != nil {
		rows := min(k.Rows, tq)
		data := make([]bool, k.Batch*k.Heads*rows*tk)
		for bh := 0; bh < k.Batch*k.Heads; bh++ {
			for r := 0; r < rows; r++ {
				src := r + n
				if k.Rows == 1 {
					src = 0
				}
				copy(data[(bh*rows+r)*tk:][:tk], k.Data[(bh*k.Rows+src)*t:][:tk])
			}
		}
		m.Keep = &xattn.KeepMask{Data: data, Batch: k.Batch, Heads: k.Heads, Rows: rows}
	}
	if bm := full.Bias; bm != nil {
		rows := min(bm.Rows, tq)
		data := make([]float32, bm.Batch*bm.Heads*rows*tk)
		for bh := 0; bh < bm.Batch*bm.Heads; bh++ {
			for r := 0; r < rows; r++ {
				src := r + n
				if bm.Rows == 1 {
					src = 0
				}
				copy(data[(bh*rows+r)*tk:][:tk], bm.Data[(bh*bm.Rows+src)*t:][:tk])
			}
		}
		m.Bias = &xattn.BiasMask{Data: data, Batch: bm.Batch, Heads: bm.Heads, Rows: rows}
	}
	return m
}

// TestForwardStepMatchesCausal decodes whole sequences step by step, one
// position at a time and several at a time, and compares every output with
// one causal ForwardInto over the sequence and with the float64 reference.
//
// The bound against the reference is the package's tolerance; against the
// full forward it is twice that (both are within tolerance of the
// reference). Steps are not bit-identical to the full forward: their
// products run over other row counts, and OpenBLAS's rounding depends on
// them. The test logs the largest difference seen.
func TestForwardStepMatchesCausal(t *testing.T) {
	cfgs := []xattn.Config{
		{QueryDim: 32, Heads: 4, HeadDim: 8, Bias: true},
		{QueryDim: 48, Heads: 8, KVHeads: 2, HeadDim: 8, ValueHeadDim: 12, OutDim: 20},
		{QueryDim: 64, Heads: 4, KVHeads: 1, HeadDim: 16, Bias: true},
		{QueryDim: 520, Heads: 8, HeadDim: 64, Bias: true}, // contractions past OpenBLAS's K blocking
	}
	schedules := map[string][]int{
		"ones":   nil, // filled with 1s below
		"mixed":  {5, 1, 1, 7, 3, 1, 2, 17},
		"prompt": {30, 1, 1, 1, 1, 1, 1, 1},
		"whole":  {37},
	}
	const T = 37
	worst := 0.0
	for ci, cfg := range cfgs {
		for _, b := range []int{1, 3} {
			for _, mk := range []maskKind{maskNone, maskAll} {
				sc := sweepCase{cfg, xattn.Shape{Batch: b, Tq: T, Tk: T}, routeSelf, mk}
				rng := rand.New(rand.NewPCG(uint64(ci), uint64(b)))
				w, err := xattn.NewWeights(cfg, uint64(ci))
				if err != nil {
					t.Fatal(err)
				}
				r := resolved(cfg)
				x := randn(rng, b*T*r.QueryDim)
				full := makeMask(rng, mk, sc.shape, r.Heads)
				if full == nil {
					full = &xattn.Mask{}
				}
				full.Causal = true
				want := attentionRef64(cfg, w, x, x, x, sc.shape, full)
				for _, be := range blas.All() {
					for pname, opts := range planOptions(be) {
						for sname, sched := range schedules {
							if sched == nil {
								sched = make([]int, T)
								for i := range sched {
									sched[i] = 1
								}
							}
							t.Run(fmt.Sprintf("backend=%s/plan=%s/steps=%s/%s", be.Name(), pname, sname, sc.name()), func(t *testing.T) {
								l, err := xattn.New(cfg, w, opts...)
								if err != nil {
									t.Fatal(err)
								}
								fwd := make([]float32, b*T*r.OutDim)
								if err := l.ForwardInto(fwd, x, nil, sc.shape, full); err != nil {
									t.Fatal(err)
								}
								kv, err := l.NewKVCache(b, T+3)
								if err != nil {
									t.Fatal(err)
								}
								got := make([]float32, b*T*r.OutDim)
								n := 0
								for _, tq := range sched {
									xs := make([]float32, b*tq*r.QueryDim)
									for i := 0; i < b; i++ {
										copy(xs[i*tq*r.QueryDim:], x[(i*T+n)*r.QueryDim:][:tq*r.QueryDim])
									}
									ys := make([]float32, b*tq*r.OutDim)
									if err := l.ForwardStep(ys, xs, kv, tq, stepMask(full, b, r.Heads, T, n, tq)); err != nil {
										t.Fatal(err)
									}
									for i := 0; i < b; i++ {
										copy(got[(i*T+n)*r.OutDim:][:tq*r.OutDim], ys[i*tq*r.OutDim:])
									}
									n += tq
									if kv.Len() != n {
										t.Fatalf("Len() = %d after %d positions", kv.Len(), n)
									}
								}
								if n != T {
									t.Fatalf("schedule covers %d positions, want %d", n, T)
								}
								diff, norm := maxAbsDiff(got, want)
								if diff > tolerance(norm) || math.IsNaN(diff) {
									t.Fatalf("max |step−ref| = %.3g, bound %.3g", diff, tolerance(norm))
								}
								var dfull float64
								for i := range got {
									dfull = math.Max(dfull, math.Abs(float64(got[i]-fwd[i])))
								}
								if dfull > 2*tolerance(norm) {
									t.Fatalf("max |step−full| = %.3g, bound %.3g", dfull, 2*tolerance(norm))
								}
								worst = math.Max(worst, dfull/math.Max(1, norm))
							})
						}
					}
				}
			}
		}
	}
	t.Logf("largest |step − full forward| / max(1, ‖ref‖∞): %.3g", worst)
}

// TestKVCacheLifecycle checks Len, Cap, Batch and Reset, and that a second
// sequence after Reset decodes like the first.
func TestKVCacheLifecycle(t *testing.T) {
	cfg := xattn.Config{QueryDim: 16, Heads: 2, HeadDim: 8}
	w, _ := xattn.NewWeights(cfg, 1)
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := l.NewKVCache(2, 5)
	if err != nil {
		t.Fatal(err)
	}
	if kv.Len() != 0 || kv.Cap() != 5 || kv.Batch() != 2 {
		t.Fatalf("new cache: Len=%d Cap=%d Batch=%d", kv.Len(), kv.Cap(), kv.Batch())
	}
	rng := rand.New(rand.NewPCG(1, 1))
	x := randn(rng, 2*3*16)
	y1 := make([]float32, 2*3*16)
	y2 := make([]float32, 2*3*16)
	if err := l.ForwardStep(y1, x, kv, 3, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.ForwardStep(y2[:0], x[:0], kv, 0, nil); err != nil || kv.Len() != 3 {
		t.Fatalf("empty step: err=%v Len=%d", err, kv.Len())
	}
	if err := l.ForwardStep(y2, x, kv, 3, nil); !errors.Is(err, xattn.ErrShape) || kv.Len() != 3 {
		t.Fatalf("overflowing step: err=%v Len=%d, want ErrShape and 3", err, kv.Len())
	}
	kv.Reset()
	if kv.Len() != 0 || kv.Cap() != 5 {
		t.Fatalf("after Reset: Len=%d Cap=%d", kv.Len(), kv.Cap())
	}
	if err := l.ForwardStep(y2, x, kv, 3, nil); err != nil {
		t.Fatal(err)
	}
	if i := testutil.BitDiff(y2, y1); i >= 0 {
		t.Fatalf("after Reset y[%d] = %v, first time %v", i, y2[i], y1[i])
	}
}

// TestCacheErrors feeds the cache API every kind of bad input; each must
// return the sentinel, never panic, and leave a KV cache unchanged.
func TestCacheErrors(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := xattn.New(cfg, w)
	qkvCfg := xattn.Config{QueryDim: 8, ContextDim: 6, ValueDim: 5, Heads: 2, HeadDim: 4}
	qw, _ := xattn.NewWeights(qkvCfg, 1)
	qkv, _ := xattn.New(qkvCfg, qw)
	selfCfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	sw, _ := xattn.NewWeights(selfCfg, 1)
	self, _ := xattn.New(selfCfg, sw)
	selfOther, _ := xattn.New(selfCfg, sw)

	const b, tq, tk = 2, 3, 4
	x := make([]float32, b*tq*8)
	y := make([]float32, b*tq*8)
	ctxIn := make([]float32, b*tk*6)
	ctx, err := l.ProjectContext(ctxIn, b, tk)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := self.NewKVCache(b, 4)
	if err != nil {
		t.Fatal(err)
	}
	step := func(y, x []float32, kv *xattn.KVCache, tq int, m *xattn.Mask) func() error {
		return func() error { return self.ForwardStep(y, x, kv, tq, m) }
	}
	fc := func(y, x []float32, c *xattn.Context, tq int, m *xattn.Mask) func() error {
		return func() error { return l.ForwardContext(y, x, c, tq, m) }
	}
	for _, tc := range []struct {
		name string
		err  error
		call func() error
	}{
		{"project/value dim", xattn.ErrShape, func() error { _, err := qkv.ProjectContext(ctxIn, b, tk); return err }},
		{"project/negative batch", xattn.ErrShape, func() error { _, err := l.ProjectContext(ctxIn, -1, tk); return err }},
		{"project/short context", xattn.ErrShape, func() error { _, err := l.ProjectContext(ctxIn[1:], b, tk); return err }},
		{"project/tk mismatch", xattn.ErrShape, func() error { _, err := l.ProjectContext(ctxIn, b, tk+1); return err }},
		{"project/overflow", xattn.ErrShape, func() error { _, err := l.ProjectContext(ctxIn, 1<<40, 1<<40); return err }},
		{"projectkv/short value", xattn.ErrShape, func() error {
			_, err := qkv.ProjectKV(ctxIn, make([]float32, b*tk*5-1), b, tk)
			return err
		}},
		{"context/nil", xattn.ErrShape, fc(y, x, nil, tq, nil)},
		{"context/other layer", xattn.ErrShape, func() error { return other.ForwardContext(y, x, ctx, tq, nil) }},
		{"context/short x", xattn.ErrShape, fc(y, x[1:], ctx, tq, nil)},
		{"context/short y", xattn.ErrShape, fc(y[1:], x, ctx, tq, nil)},
		{"context/tq mismatch", xattn.ErrShape, fc(y, x, ctx, tq+1, nil)},
		{"context/negative tq", xattn.ErrShape, fc(y, x, ctx, -1, nil)},
		{"context/keylen", xattn.ErrMask, fc(y, x, ctx, tq, &xattn.Mask{KeyLen: []int{1, tk + 1}})},
		{"context/keep rows", xattn.ErrMask, fc(y, x, ctx, tq, &xattn.Mask{Keep: &xattn.KeepMask{Data: make([]bool, 2*tk), Batch: 1, Heads: 1, Rows: 2}})},
		{"kvcache/cross layer", xattn.ErrShape, func() error { _, err := l.NewKVCache(b, 4); return err }},
		{"kvcache/negative capacity", xattn.ErrShape, func() error { _, err := self.NewKVCache(b, -1); return err }},
		{"kvcache/negative batch", xattn.ErrShape, func() error { _, err := self.NewKVCache(-1, 4); return err }},
		{"kvcache/overflow", xattn.ErrShape, func() error { _, err := self.NewKVCache(1<<40, 1<<40); return err }},
		{"step/nil", xattn.ErrShape, step(y, x, nil, tq, nil)},
		{"step/other layer", xattn.ErrShape, func() error { return selfOther.ForwardStep(y, x, kv, tq, nil) }},
		{"step/capacity", xattn.ErrShape, step(make([]float32, b*5*8), make([]float32, b*5*8), kv, 5, nil)},
		{"step/negative tq", xattn.ErrShape, step(y, x, kv, -1, nil)},
		{"step/short x", xattn.ErrShape, step(y, x[1:], kv, tq, nil)},
		{"step/short y", xattn.ErrShape, step(y[:4], x, kv, tq, nil)},
		{"step/keylen past keys", xattn.ErrMask, step(y, x, kv, tq, &xattn.Mask{KeyLen: []int{tq, tq + 1}})},
		{"step/bias NaN", xattn.ErrMask, step(y, x, kv, tq, &xattn.Mask{Bias: &xattn.BiasMask{Data: []float32{0, float32(math.NaN()), 0}, Batch: 1, Heads: 1, Rows: 1}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := noPanic(t, func() error { return tc.call() })
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if kv.Len() != 0 {
				t.Fatalf("a failed step left Len() = %d", kv.Len())
			}
			t.Log(err)
		})
	}
}

// TestCacheAllocs shows that ForwardContext and ForwardStep allocate nothing
// once warm, serially and on several workers.
func TestCacheAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	cfg := xattn.Config{QueryDim: 64, Heads: 4, KVHeads: 2, HeadDim: 16, Bias: true}
	w, _ := xattn.NewWeights(cfg, 1)
	rng := rand.New(rand.NewPCG(5, 5))
	const b, tq, tk = 2, 40, 70
	x := randn(rng, b*tq*64)
	context := randn(rng, b*tk*64)
	y := make([]float32, b*tq*64)
	m := &xattn.Mask{KeyLen: []int{tk, 30}}
	for _, be := range blas.All() {
		for _, serial := range []bool{true, false} {
			t.Run(fmt.Sprintf("backend=%s/serial=%t", be.Name(), serial), func(t *testing.T) {
				sf := 0.0
				if serial {
					sf = 1e18
				}
				l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithTile(16, 32), xattn.WithSerialFLOPs(sf))
				if err != nil {
					t.Fatal(err)
				}
				ctx, err := l.ProjectContext(context, b, tk)
				if err != nil {
					t.Fatal(err)
				}
				fc := func() {
					if err := l.ForwardContext(y, x, ctx, tq, m); err != nil {
						t.Fatal(err)
					}
				}
				fc()
				if n := testing.AllocsPerRun(50, fc); n != 0 {
					t.Fatalf("ForwardContext allocates %v times per call", n)
				}
				kv, err := l.NewKVCache(b, 8)
				if err != nil {
					t.Fatal(err)
				}
				const steps = 3
				ys, xs := y[:b*steps*64], x[:b*steps*64]
				fs := func() {
					if kv.Len()+steps > kv.Cap() {
						kv.Reset()
					}
					if err := l.ForwardStep(ys, xs, kv, steps, nil); err != nil {
						t.Fatal(err)
					}
				}
				fs()
				if n := testing.AllocsPerRun(50, fs); n != 0 {
					t.Fatalf("ForwardStep allocates %v times per call", n)
				}
			})
		}
	}
}

// TestContextConcurrent shares one Context among 16 goroutines, each with
// its own queries and masks, on a multi-worker layer; every result must equal
// the serial one bit for bit, and the Context must not change. Run it under
// -race.
func TestContextConcurrent(t *testing.T) {
	cfg := xattn.Config{QueryDim: 32, ContextDim: 24, OutDim: 16, Heads: 4, KVHeads: 2, HeadDim: 8, Bias: true}
	w, _ := xattn.NewWeights(cfg, 5)
	rng := rand.New(rand.NewPCG(6, 6))
	const b, tk, goroutines = 2, 50, 16
	context := randn(rng, b*tk*24)
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(4), xattn.WithTile(8, 16), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			ctx, err := l.ProjectContext(context, b, tk)
			if err != nil {
				t.Fatal(err)
			}
			before, err := l.ProjectContext(context, b, tk)
			if err != nil {
				t.Fatal(err)
			}
			type job struct {
				x    []float32
				tq   int
				m    *xattn.Mask
				want []float32
			}
			jobs := make([]job, goroutines)
			for gi := range jobs {
				j := &jobs[gi]
				j.tq = 1 + 3*gi
				j.x = randn(rng, b*j.tq*32)
				j.m = makeMask(rng, maskKind(gi%6), xattn.Shape{Batch: b, Tq: j.tq, Tk: tk}, 4)
				j.want = make([]float32, b*j.tq*16)
				if err := l.ForwardContext(j.want, j.x, ctx, j.tq, j.m); err != nil {
					t.Fatal(err)
				}
			}
			testutil.Parallel(t, len(jobs), func(gi int) func() error {
				return func() error {
					j := &jobs[gi]
					y := make([]float32, len(j.want))
					for rep := 0; rep < 10; rep++ {
						if err := l.ForwardContext(y, j.x, ctx, j.tq, j.m); err != nil {
							return err
						}
						if i := testutil.BitDiff(y, j.want); i >= 0 {
							return fmt.Errorf("goroutine %d rep %d: y[%d] = %v, want %v", gi, rep, i, y[i], j.want[i])
						}
					}
					return nil
				}
			})
			// The Context is unchanged: a forward pass over it still
			// matches one over a fresh projection.
			y1 := make([]float32, b*5*16)
			y2 := make([]float32, b*5*16)
			x := randn(rng, b*5*32)
			if err := l.ForwardContext(y1, x, ctx, 5, nil); err != nil {
				t.Fatal(err)
			}
			if err := l.ForwardContext(y2, x, before, 5, nil); err != nil {
				t.Fatal(err)
			}
			if i := testutil.BitDiff(y1, y2); i >= 0 {
				t.Fatalf("the shared Context changed: y[%d] = %v, fresh %v", i, y1[i], y2[i])
			}
		})
	}
}

// decoderShape is the `decoder` workload of the benchmarks.
var decoderShape = benchShapes[1]

// BenchmarkDecoderStep times one cross-attention decoder step on the
// `decoder` shape (B=8, Tq=32, Tk=1500, dims 512, H=8, dh=64): with the
// encoder output projected once into a Context (mode=cached), and with
// ForwardInto projecting it again on every step (mode=recompute).
// GFLOP/s counts the work each mode does.
func BenchmarkDecoderStep(b *testing.B) {
	bs := decoderShape
	for _, be := range blas.All() {
		for _, mode := range []string{"cached", "recompute"} {
			b.Run("backend="+be.Name()+"/mode="+mode, func(b *testing.B) {
				w, err := xattn.NewWeights(bs.cfg, 1)
				if err != nil {
					b.Fatal(err)
				}
				l, err := xattn.New(bs.cfg, w, xattn.WithBackend(be))
				if err != nil {
					b.Fatal(err)
				}
				c, s := l.Config(), bs.shape
				rng := rand.New(rand.NewPCG(1, 2))
				x := randn(rng, s.Batch*s.Tq*c.QueryDim)
				enc := randn(rng, s.Batch*s.Tk*c.ContextDim)
				y := make([]float32, s.Batch*s.Tq*c.OutDim)
				ctx, err := l.ProjectContext(enc, s.Batch, s.Tk)
				if err != nil {
					b.Fatal(err)
				}
				step := func() error { return l.ForwardContext(y, x, ctx, s.Tq, nil) }
				flops := l.FLOPs(s) - l.FLOPs(xattn.Shape{Batch: s.Batch, Tk: s.Tk})
				if mode == "recompute" {
					step = func() error { return l.ForwardInto(y, x, enc, s, nil) }
					flops = l.FLOPs(s)
				}
				if err := step(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := step(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
	}
}

// BenchmarkSelfStep times one token of incremental self-attention decoding
// per sequence (B=8, dims 512, H=8, dh=64) after a 1024-position prefix held
// in a KVCache, against a causal ForwardInto over the whole 1025 positions.
func BenchmarkSelfStep(b *testing.B) {
	cfg := xattn.Config{QueryDim: 512, Heads: 8, HeadDim: 64}
	const batch, prefix = 8, 1024
	for _, be := range blas.All() {
		for _, mode := range []string{"cached", "recompute"} {
			b.Run("backend="+be.Name()+"/mode="+mode, func(b *testing.B) {
				w, _ := xattn.NewWeights(cfg, 1)
				l, err := xattn.New(cfg, w, xattn.WithBackend(be))
				if err != nil {
					b.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				seq := randn(rng, batch*(prefix+1)*512)
				x := randn(rng, batch*512)
				y := make([]float32, batch*512)
				kv, err := l.NewKVCache(batch, prefix+1)
				if err != nil {
					b.Fatal(err)
				}
				yp := make([]float32, batch*prefix*512)
				if err := l.ForwardStep(yp, seq[:batch*prefix*512], kv, prefix, nil); err != nil {
					b.Fatal(err)
				}
				step := func() error {
					kv.Truncate(prefix)
					return l.ForwardStep(y, x, kv, 1, nil)
				}
				if mode == "recompute" {
					yf := make([]float32, len(seq))
					m := &xattn.Mask{Causal: true}
					step = func() error {
						return l.ForwardInto(yf, seq, nil, xattn.Shape{Batch: batch, Tq: prefix + 1}, m)
					}
				}
				if err := step(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := step(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
