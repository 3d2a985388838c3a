package xattn_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// lastRows returns the last n of the t rows of width d of each of the b
// sequences of x.
func lastRows[T any](x []T, b, t, n, d int) []T {
	out := make([]T, 0, b*n*d)
	for bi := range b {
		out = append(out, x[(bi*t+t-n)*d:(bi+1)*t*d]...)
	}
	return out
}

// ropeChunkMasks are the bottom-right aligned masks of a chunked prefill.
var ropeChunkMasks = []xattn.Mask{
	{CausalLowerRight: true},
	{CausalLowerRight: true, Window: 4},
	{CausalLowerRight: true, ALiBi: &xattn.ALiBi{}},
}

// TestRoPEChunkedPrefill checks the rule of WithRoPE for a bottom-right
// mask: a chunk of the last Tq of Tk tokens through ForwardInto (queries at
// Tk − Tq + i, keys at 0 … Tk−1) equals the last Tq rows of causal
// self-attention over all Tk tokens (the float64 reference), and so do
// ForwardContext over the projected tokens, ForwardStep over a cache of the
// first Tk − Tq tokens and the attention map of the chunk. With Tq > Tk the
// first queries sit at negative positions and see no key.
func TestRoPEChunkedPrefill(t *testing.T) {
	cfg := xattn.Config{QueryDim: 12, Heads: 4, KVHeads: 2, HeadDim: 6, Bias: true}
	w, err := xattn.NewWeights(cfg, 31)
	if err != nil {
		t.Fatal(err)
	}
	c := resolved(cfg)
	const b, tk = 2, 13
	for _, be := range structBackends(t) {
		for _, r := range ropeKinds {
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithRoPE(r), xattn.WithThreads(3), xattn.WithTile(2, 4), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(4, 5))
			all := randn(rng, b*tk*c.QueryDim)
			ctx, err := l.ProjectContext(all, b, tk)
			if err != nil {
				t.Fatal(err)
			}
			for mi := range ropeChunkMasks {
				m := &ropeChunkMasks[mi]
				full := attentionRoPERef64(cfg, w, all, all, all, xattn.Shape{Batch: b, Tq: tk, Tk: tk}, m, r, 0, 0)
				for _, tq := range []int{1, 5, tk} {
					name := fmt.Sprintf("backend=%s rope=%+v mask=%d Tq=%d", blas.Kernels(be), r, mi, tq)
					s := xattn.Shape{Batch: b, Tq: tq, Tk: tk}
					x := lastRows(all, b, tk, tq, c.QueryDim)
					want := lastRows(full, b, tk, tq, c.OutDim)
					y := make([]float32, b*tq*c.OutDim)
					if err := l.ForwardInto(y, x, all, s, m); err != nil {
						t.Fatal(err)
					}
					if diff, norm := maxAbsDiff(y, want); diff > tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%s ForwardInto: max |y−ref| = %.3g, bound %.3g", name, diff, tolerance(norm))
					}
					yc := make([]float32, len(y))
					if err := l.ForwardContext(yc, x, ctx, tq, m); err != nil {
						t.Fatal(err)
					}
					if diff, norm := maxAbsDiff(yc, want); diff > tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%s ForwardContext: max |y−ref| = %.3g, bound %.3g", name, diff, tolerance(norm))
					}
					kv, err := l.NewKVCache(b, tk)
					if err != nil {
						t.Fatal(err)
					}
					if tk > tq {
						pre := make([]float32, b*(tk-tq)*c.OutDim)
						head := make([]float32, 0, b*(tk-tq)*c.QueryDim)
						for bi := range b {
							head = append(head, all[bi*tk*c.QueryDim:][:(tk-tq)*c.QueryDim]...)
						}
						if err := l.ForwardStep(pre, head, kv, tk-tq, m); err != nil {
							t.Fatal(err)
						}
					}
					ys := make([]float32, len(y))
					if err := l.ForwardStep(ys, x, kv, tq, m); err != nil {
						t.Fatal(err)
					}
					if diff, norm := maxAbsDiff(ys, want); diff > tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%s ForwardStep: max |y−ref| = %.3g, bound %.3g", name, diff, tolerance(norm))
					}
					p, err := l.AttentionMap(x, all, s, m, true)
					if err != nil {
						t.Fatal(err)
					}
					pw, bound := probsRoPERef64(cfg, w, x, all, s, m, &r)
					checkProbs(t, p, pw, bound)
					if t.Failed() {
						t.Fatalf("%s AttentionMap", name)
					}
				}
			}
			// More queries than keys: queries at −3 … 3, the first three
			// see nothing.
			s := xattn.Shape{Batch: b, Tq: 7, Tk: 4}
			x, kx := randn(rng, b*s.Tq*c.QueryDim), randn(rng, b*s.Tk*c.QueryDim)
			m := &xattn.Mask{CausalLowerRight: true}
			y := make([]float32, b*s.Tq*c.OutDim)
			if err := l.ForwardInto(y, x, kx, s, m); err != nil {
				t.Fatal(err)
			}
			want := attentionRoPERef64(cfg, w, x, kx, kx, s, m, r, -3, 0)
			if diff, norm := maxAbsDiff(y, want); diff > tolerance(norm) || math.IsNaN(diff) {
				t.Fatalf("backend=%s rope=%+v Tq=7 > Tk=4: max |y−ref| = %.3g, bound %.3g", blas.Kernels(be), r, diff, tolerance(norm))
			}
		}
	}
}

// TestRoPELongDecode decodes past several sizes of the layer's shared table
// of angles (64, 128, 256, 512 positions), every step checked against the
// float64 reference at its absolute positions: a stale or short table is
// caught at the step that grows it.
func TestRoPELongDecode(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 7)
	for _, r := range []xattn.RoPE{{Base: 100}, {Interleaved: true, Base: 100}} {
		l, err := xattn.New(cfg, w, xattn.WithRoPE(r), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
		if err != nil {
			t.Fatal(err)
		}
		kv, err := l.NewKVCache(1, 300)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(2, 7))
		var seq []float32
		for _, tq := range []int{60, 4, 6, 1, 100, 120, 9} {
			x := randn(rng, tq*8)
			seq = append(seq, x...)
			n := kv.Len()
			y := make([]float32, tq*8)
			if err := l.ForwardStep(y, x, kv, tq, nil); err != nil {
				t.Fatal(err)
			}
			want := attentionRoPERef64(cfg, w, x, seq, seq, xattn.Shape{Batch: 1, Tq: tq, Tk: n + tq}, &xattn.Mask{CausalLowerRight: true}, r, n, 0)
			if diff, norm := maxAbsDiff(y, want); diff > tolerance(norm) || math.IsNaN(diff) {
				t.Fatalf("rope=%+v step of %d at %d: max |y−ref| = %.3g, bound %.3g", r, tq, n, diff, tolerance(norm))
			}
		}
	}
}

// ropeBatch returns requests of every route and alignment for a layer of
// cfg (QueryDim = ContextDim = ValueDim), the Y buffers zeroed, and the
// offsets of their queries under WithRoPE.
func ropeBatch(t testing.TB, l *xattn.Layer, rng *rand.Rand) []xattn.Request {
	c := l.Config()
	d := c.QueryDim
	cached := randn(rng, 2*8*d)
	ctx, err := l.ProjectContext(cached, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	req := func(s xattn.Shape, context bool, m *xattn.Mask) xattn.Request {
		r := xattn.Request{Shape: s, Mask: m, X: randn(rng, s.Batch*s.Tq*d), Y: make([]float32, s.Batch*s.Tq*c.OutDim)}
		if context {
			r.Context = randn(rng, s.Batch*s.Tk*d)
		}
		return r
	}
	reqs := []xattn.Request{
		req(xattn.Shape{Batch: 2, Tq: 5, Tk: 5}, false, &xattn.Mask{Causal: true}),
		req(xattn.Shape{Batch: 1, Tq: 3, Tk: 9}, true, nil),
		req(xattn.Shape{Batch: 2, Tq: 4, Tk: 11}, true, &xattn.Mask{CausalLowerRight: true}),
		req(xattn.Shape{Batch: 1, Tq: 6, Tk: 3}, true, &xattn.Mask{CausalLowerRight: true}),
		req(xattn.Shape{Batch: 1, Tq: 1, Tk: 17}, true, &xattn.Mask{CausalLowerRight: true, Window: 5}),
		req(xattn.Shape{Batch: 0, Tq: 2, Tk: 2}, false, nil),
	}
	cr := req(xattn.Shape{Batch: 2, Tq: 3, Tk: 8}, false, &xattn.Mask{CausalLowerRight: true, Window: 3})
	cr.Cached = ctx
	cr.Context = cached // for the reference; removed below
	return append(reqs, cr)
}

// TestRoPEBatch checks ForwardBatch with RoPE: each request's queries and
// keys at its own positions (keys from 0, queries from Tk − Tq under a
// bottom-right mask), against the float64 reference and against the
// request alone (within 1e-6·max(1, ‖ref‖∞)).
func TestRoPEBatch(t *testing.T) {
	cfg := xattn.Config{QueryDim: 12, Heads: 4, KVHeads: 2, HeadDim: 6, Bias: true}
	w, _ := xattn.NewWeights(cfg, 13)
	identical, outputs := 0, 0
	for _, be := range structBackends(t) {
		for _, r := range ropeKinds {
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithRoPE(r), xattn.WithThreads(3), xattn.WithTile(2, 4), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			reqs := ropeBatch(t, l, rand.New(rand.NewPCG(6, 1)))
			src := make([][]float32, len(reqs)) // each request's key source
			for i := range reqs {
				src[i] = reqs[i].Context
				if reqs[i].Cached != nil {
					reqs[i].Context = nil
				} else if src[i] == nil {
					src[i] = reqs[i].X
				}
			}
			if err := l.ForwardBatch(reqs); err != nil {
				t.Fatal(err)
			}
			for i, q := range reqs {
				s := q.Shape
				if s.Batch == 0 {
					continue
				}
				if s.Tk == 0 {
					s.Tk = s.Tq
				}
				name := fmt.Sprintf("backend=%s rope=%+v request %d %+v", blas.Kernels(be), r, i, s)
				want := attentionRoPERef64(cfg, w, q.X, src[i], src[i], s, q.Mask, r, refOffset(q.Mask, s.Tq, s.Tk), 0)
				diff, norm := maxAbsDiff(q.Y, want)
				if diff > tolerance(norm) || math.IsNaN(diff) {
					t.Fatalf("%s: max |y−ref| = %.3g, bound %.3g", name, diff, tolerance(norm))
				}
				alone, err := separate(l, q)
				if err != nil {
					t.Fatal(err)
				}
				var d float64
				for j := range alone {
					d = math.Max(d, math.Abs(float64(q.Y[j]-alone[j])))
				}
				if d > 1e-6*math.Max(1, norm) {
					t.Fatalf("%s: max |batch−alone| = %.3g", name, d)
				}
				if testutil.BitDiff(q.Y, alone) < 0 {
					identical++
				}
				outputs++
			}
		}
	}
	t.Logf("%d of %d request outputs bit-identical to separate calls", identical, outputs)
}

// TestRoPEParallelRotation checks that the rotate stage split over the
// call's threads gives the bits of the serial one: the same plan (so the
// same products) run on 3 threads and on the caller alone.
func TestRoPEParallelRotation(t *testing.T) {
	cfg := xattn.Config{QueryDim: 16, Heads: 4, KVHeads: 2, HeadDim: 8, Bias: true}
	w, _ := xattn.NewWeights(cfg, 17)
	for _, r := range ropeKinds {
		par, err := xattn.New(cfg, w, xattn.WithRoPE(r), xattn.WithThreads(3), xattn.WithSerialFLOPs(0))
		if err != nil {
			t.Fatal(err)
		}
		ser, err := xattn.New(cfg, w, xattn.WithRoPE(r), xattn.WithThreads(3), xattn.WithSerialFLOPs(1e300))
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, 3))
		s := xattn.Shape{Batch: 2, Tq: 37, Tk: 37}
		x := randn(rng, s.Batch*s.Tq*16)
		m := &xattn.Mask{Causal: true}
		yp, ys := make([]float32, len(x)), make([]float32, len(x))
		if err := par.ForwardInto(yp, x, nil, s, m); err != nil {
			t.Fatal(err)
		}
		if err := ser.ForwardInto(ys, x, nil, s, m); err != nil {
			t.Fatal(err)
		}
		if i := testutil.BitDiff(yp, ys); i >= 0 {
			t.Fatalf("rope=%+v ForwardInto: parallel y[%d] = %v, serial %v", r, i, yp[i], ys[i])
		}
		want := attentionRoPERef64(cfg, w, x, x, x, s, m, r, 0, 0)
		if diff, norm := maxAbsDiff(yp, want); diff > tolerance(norm) {
			t.Fatalf("rope=%+v: max |y−ref| = %.3g", r, diff)
		}
		rp, rs := ropeBatch(t, par, rand.New(rand.NewPCG(9, 9))), ropeBatch(t, ser, rand.New(rand.NewPCG(9, 9)))
		for i := range rp {
			if rp[i].Cached != nil {
				rp[i].Context, rs[i].Context = nil, nil
			}
		}
		if err := par.ForwardBatch(rp); err != nil {
			t.Fatal(err)
		}
		if err := ser.ForwardBatch(rs); err != nil {
			t.Fatal(err)
		}
		for i := range rp {
			if j := testutil.BitDiff(rp[i].Y, rs[i].Y); j >= 0 {
				t.Fatalf("rope=%+v ForwardBatch request %d: parallel y[%d] = %v, serial %v", r, i, j, rp[i].Y[j], rs[i].Y[j])
			}
		}
	}
}

// TestRoPEConcurrentTable runs calls that grow the layer's shared table
// (fresh layer, positions up to 64·2^k) from several goroutines at once
// (meant for -race), each checked against the reference.
func TestRoPEConcurrentTable(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 19)
	r := xattn.RoPE{Base: 1000}
	l, err := xattn.New(cfg, w, xattn.WithRoPE(r), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for gi := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(gi), 8))
			for k := range 3 {
				s := xattn.Shape{Batch: 1, Tq: 3, Tk: 40 + 70*gi + 90*k}
				x, kx := randn(rng, s.Tq*8), randn(rng, s.Tk*8)
				m := &xattn.Mask{CausalLowerRight: true}
				y := make([]float32, s.Tq*8)
				if err := l.ForwardInto(y, x, kx, s, m); err != nil {
					errs <- err
					return
				}
				want := attentionRoPERef64(cfg, w, x, kx, kx, s, m, r, s.Tk-s.Tq, 0)
				if diff, norm := maxAbsDiff(y, want); diff > tolerance(norm) || math.IsNaN(diff) {
					errs <- fmt.Errorf("goroutine %d Tk=%d: max |y−ref| = %.3g", gi, s.Tk, diff)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkRoPECrossAttention is a perceiver-sized cross-attention with
// RoPE: 64 queries over 8192 context rows, 4 heads of 64 values, whose
// angles (8192·32 of them) a call once computed.
func BenchmarkRoPECrossAttention(b *testing.B) {
	cfg := xattn.Config{QueryDim: 256, ContextDim: 128, Heads: 4, HeadDim: 64}
	w, _ := xattn.NewWeights(cfg, 1)
	l, err := xattn.New(cfg, w, xattn.WithRoPE(xattn.RoPE{}))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	s := xattn.Shape{Batch: 1, Tq: 64, Tk: 8192}
	x, ctx := randn(rng, s.Tq*256), randn(rng, s.Tk*128)
	y := make([]float32, s.Tq*256)
	for b.Loop() {
		if err := l.ForwardInto(y, x, ctx, s, nil); err != nil {
			b.Fatal(err)
		}
	}
}
