package xattn_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// outGuard fills the values of an output buffer between and after its rows,
// which a call must leave alone.
const outGuard = -7777

// attnLayout is how a test lays out the operands of an Attention call.
type attnLayout int

const (
	layoutDense  attnLayout = iota // ForwardInto, exact lengths
	layoutPadded                   // ForwardStrided, every row padded, NaN between rows
	layoutFused                    // ForwardStrided over one [B·T, q|k|v] buffer (Tq = Tk), out padded
)

func (l attnLayout) String() string { return [...]string{"dense", "padded", "fused"}[l] }

// attnCase holds the operands of one call: dense float64 copies for the
// reference, and the buffers handed to the call.
type attnCase struct {
	c          xattn.Config // resolved, for coreRef64
	s          xattn.Shape
	q, k, v    []float64
	bq, bk, bv []float32 // the buffers, views per the layout
	out        []float32
	ld         xattn.Strides
	layout     attnLayout
	wo         int // a row's values in out
}

// newAttnCase draws the operands of shape s for cfg in layout lay.
func newAttnCase(rng *rand.Rand, cfg xattn.AttentionConfig, s xattn.Shape, lay attnLayout) *attnCase {
	c := resolved(xattn.Config{QueryDim: 1, Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim,
		ValueHeadDim: cfg.ValueHeadDim, Scale: cfg.Scale})
	h, g, dk, dv := c.Heads, c.KVHeads, c.HeadDim, c.ValueHeadDim
	ac := &attnCase{c: c, s: s, layout: lay, wo: h * dv}
	rq, rk := s.Batch*s.Tq, s.Batch*s.Tk
	wq, wk, wv := h*dk, g*dk, g*dv
	draw := func(rows, w int) []float64 {
		x := make([]float64, rows*w)
		for i := range x {
			x[i] = float64(float32(rng.NormFloat64()))
		}
		return x
	}
	ac.q, ac.k, ac.v = draw(rq, wq), draw(rk, wk), draw(rk, wv)
	// place writes the dense rows of x, w values each, at stride ld into a
	// buffer of NaN, or into buf from offset off.
	place := func(buf []float32, off int, x []float64, rows, w, ld int) []float32 {
		if buf == nil {
			n := 0
			if rows > 0 {
				n = (rows-1)*ld + w
			}
			buf = make([]float32, n+off)
			for i := range buf {
				buf[i] = float32(math.NaN())
			}
		}
		for r := range rows {
			for j := range w {
				buf[off+r*ld+j] = float32(x[r*w+j])
			}
		}
		return buf[off:]
	}
	var ldo int
	switch lay {
	case layoutDense:
		ac.bq, ac.bk, ac.bv = place(nil, 0, ac.q, rq, wq, wq), place(nil, 0, ac.k, rk, wk, wk), place(nil, 0, ac.v, rk, wv, wv)
		ldo = h * dv
	case layoutPadded:
		ac.ld = xattn.Strides{Q: wq + 3, K: wk + 1, V: wv + 5, Out: h*dv + 2}
		ac.bq, ac.bk, ac.bv = place(nil, 0, ac.q, rq, wq, ac.ld.Q), place(nil, 0, ac.k, rk, wk, ac.ld.K), place(nil, 0, ac.v, rk, wv, ac.ld.V)
		ldo = ac.ld.Out
	case layoutFused:
		w := wq + wk + wv
		ac.ld = xattn.Strides{Q: w, K: w, V: w, Out: h*dv + 1}
		buf := make([]float32, max(rq, 1)*w) // views of an empty call still start inside it
		place(buf, 0, ac.q, rq, wq, w)
		place(buf, wq, ac.k, rk, wk, w)
		place(buf, wq+wk, ac.v, rk, wv, w)
		ac.bq, ac.bk, ac.bv = buf, buf[wq:], buf[wq+wk:]
		ldo = ac.ld.Out
	}
	n := 0
	if rq > 0 {
		n = (rq-1)*ldo + h*dv
	}
	ac.out = make([]float32, n)
	for i := range ac.out {
		ac.out[i] = outGuard
	}
	return ac
}

// reset fills the output with outGuard again.
func (ac *attnCase) reset() {
	for i := range ac.out {
		ac.out[i] = outGuard
	}
}

// run calls a on the case.
func (ac *attnCase) run(a *xattn.Attention, m *xattn.Mask) error {
	if ac.layout == layoutDense {
		return a.ForwardInto(ac.out, ac.bq, ac.bk, ac.bv, ac.s, m)
	}
	return a.ForwardStrided(ac.out, ac.bq, ac.bk, ac.bv, ac.s, m, ac.ld)
}

// check compares the output rows with the float64 reference and the guard
// values between them with outGuard.
func (ac *attnCase) check(name string, m *xattn.Mask) error {
	want := coreRef64(ac.c, ac.q, ac.k, ac.v, ac.s, m)
	ldo := ac.wo
	if ac.ld.Out != 0 {
		ldo = ac.ld.Out
	}
	got := make([]float32, len(want))
	for r := range ac.s.Batch * ac.s.Tq {
		copy(got[r*ac.wo:(r+1)*ac.wo], ac.out[r*ldo:])
		for j := r*ldo + ac.wo; j < min((r+1)*ldo, len(ac.out)); j++ {
			if ac.out[j] != outGuard {
				return fmt.Errorf("%s: out[%d] = %v between rows: written", name, j, ac.out[j])
			}
		}
	}
	diff, norm := maxAbsDiff(got, want)
	if diff > tolerance(norm) || math.IsNaN(diff) {
		return fmt.Errorf("%s: max |out−ref| = %.3g, bound %.3g", name, diff, tolerance(norm))
	}
	return nil
}

// attnConfigs are MHA with dv ≠ dk, GQA, MQA with a given scale, and one head.
var attnConfigs = []xattn.AttentionConfig{
	{Heads: 3, HeadDim: 5, ValueHeadDim: 7},
	{Heads: 4, KVHeads: 2, HeadDim: 8},
	{Heads: 6, KVHeads: 1, HeadDim: 17, ValueHeadDim: 3, Scale: 0.3},
	{Heads: 1, HeadDim: 4},
}

// TestAttentionParity holds Attention to the float64 reference on every
// backend and variant, GQA and MQA, every mask kind, odd shapes (Tq = 1,
// Tk = 1, Tq ≠ Tk either way, empty ones, split keys for one head over 70
// keys), dense, padded and fused-QKV layouts, several tiles and threads;
// the values between output rows are left alone.
func TestAttentionParity(t *testing.T) {
	shapes := []xattn.Shape{
		{Batch: 1, Tq: 1, Tk: 1}, {Batch: 2, Tq: 1, Tk: 13}, {Batch: 1, Tq: 7, Tk: 13}, {Batch: 2, Tq: 13, Tk: 7},
		{Batch: 1, Tq: 9, Tk: 9}, {Batch: 3, Tq: 5, Tk: 70}, {Batch: 1, Tq: 1, Tk: 70}, {Batch: 2, Tq: 11, Tk: 11},
		{Batch: 1, Tq: 0, Tk: 4}, {Batch: 2, Tq: 3, Tk: 0}, {Batch: 0, Tq: 3, Tk: 3},
	}
	rng := rand.New(rand.NewPCG(17, 1))
	for _, be := range structBackends(t) {
		for ci, cfg := range attnConfigs {
			opts := [][]xattn.Option{
				{xattn.WithBackend(be), xattn.WithTile(4, 8), xattn.WithThreads(3), xattn.WithSerialFLOPs(0)},
				{xattn.WithBackend(be), xattn.WithThreads(1)},
			}
			for oi, o := range opts {
				a, err := xattn.NewAttention(cfg, o...)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range shapes {
					for mk := range maskKinds {
						for _, lay := range []attnLayout{layoutDense, layoutPadded, layoutFused} {
							if lay == layoutFused && s.Tq != s.Tk || s.Batch == 0 && mk != int(maskNone) {
								continue // makeMask needs a batch
							}
							m := makeMask(rng, maskKind(mk), s, cfg.Heads)
							ac := newAttnCase(rng, cfg, s, lay)
							name := fmt.Sprintf("backend=%s/cfg=%d/opts=%d/B=%d/Tq=%d/Tk=%d/mask=%v/layout=%v",
								blas.Kernels(be), ci, oi, s.Batch, s.Tq, s.Tk, maskKind(mk), lay)
							if err := ac.run(a, m); err != nil {
								t.Fatalf("%s: %v", name, err)
							}
							if err := ac.check(name, m); err != nil {
								t.Fatal(err)
							}
						}
					}
				}
			}
		}
	}
}

// TestAttentionMatchesLayer checks that a Layer's core is Attention's: a
// layer with identity projections (exact in float32) and the Attention of
// the same plan give the same bits (the pure backend: the same to
// rounding, see below), on every mask kind and the paths a layer takes
// (phased, serial, split keys).
func TestAttentionMatchesLayer(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, be := range structBackends(t) {
		for _, cfg := range attnConfigs {
			h, g, dk := cfg.Heads, cfg.KVHeads, cfg.HeadDim
			if g == 0 {
				g = h
			}
			dv := cfg.ValueHeadDim
			if dv == 0 {
				dv = dk
			}
			lc := xattn.Config{QueryDim: h * dk, ContextDim: g * dk, ValueDim: g * dv, OutDim: h * dv,
				Heads: h, KVHeads: g, HeadDim: dk, ValueHeadDim: dv, Scale: cfg.Scale}
			w, err := xattn.NewWeights(lc, 1)
			if err != nil {
				t.Fatal(err)
			}
			eye := func(n int) []float32 {
				e := make([]float32, n*n)
				for i := range n {
					e[i*n+i] = 1
				}
				return e
			}
			w.Q, w.K, w.V, w.Out, w.OutBias = eye(h*dk), eye(g*dk), eye(g*dv), eye(h*dv), nil
			for _, o := range [][]xattn.Option{
				{xattn.WithBackend(be), xattn.WithTile(4, 8), xattn.WithThreads(3), xattn.WithSerialFLOPs(0), xattn.WithAbsorb(false)},
				{xattn.WithBackend(be), xattn.WithThreads(1), xattn.WithAbsorb(false)},
			} {
				l, err := xattn.New(lc, w, o...)
				if err != nil {
					t.Fatal(err)
				}
				a, err := xattn.NewAttention(cfg, o...)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []xattn.Shape{{Batch: 2, Tq: 7, Tk: 13}, {Batch: 1, Tq: 1, Tk: 70}, {Batch: 1, Tq: 20, Tk: 20}} {
					for mk := range maskKinds {
						m := makeMask(rng, maskKind(mk), s, h)
						ac := newAttnCase(rng, cfg, s, layoutDense)
						if err := ac.run(a, m); err != nil {
							t.Fatal(err)
						}
						y := make([]float32, len(ac.out))
						if err := l.ForwardQKV(y, ac.bq, ac.bk, ac.bv, s, m); err != nil {
							t.Fatal(err)
						}
						if be.Name() == "pure" {
							// gonum's float32 dot products sum in an order that
							// depends on the operands' alignment: equal to rounding.
							want := make([]float64, len(y))
							for i, x := range y {
								want[i] = float64(x)
							}
							if diff, norm := maxAbsDiff(ac.out, want); diff > 1e-6*max(1, norm) {
								t.Fatalf("backend=pure %+v %v mask=%v: max |out−layer| = %.3g", cfg, s, maskKind(mk), diff)
							}
							continue
						}
						for i := range y {
							if math.Float32bits(y[i]) != math.Float32bits(ac.out[i]) {
								t.Fatalf("backend=%s %+v %v mask=%v: out[%d] = %v, the layer's %v", blas.Kernels(be), cfg, s, maskKind(mk), i, ac.out[i], y[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestAttentionErrors feeds Attention bad configurations and calls: each is
// an error wrapping the right sentinel and naming the value, never a panic,
// and out is left alone.
func TestAttentionErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  xattn.AttentionConfig
		want string
	}{
		{xattn.AttentionConfig{Heads: 0, HeadDim: 4}, "Heads=0"},
		{xattn.AttentionConfig{Heads: 2, HeadDim: -1}, "HeadDim=-1"},
		{xattn.AttentionConfig{Heads: 3, KVHeads: 2, HeadDim: 4}, "KVHeads=2"},
		{xattn.AttentionConfig{Heads: 2, HeadDim: 4, ValueHeadDim: -3}, "ValueHeadDim=-3"},
		{xattn.AttentionConfig{Heads: 2, HeadDim: 4, Scale: float32(math.NaN())}, "Scale=NaN"},
		{xattn.AttentionConfig{Heads: 1 << 20, HeadDim: 1 << 20}, "overflows"},
	} {
		_, err := xattn.NewAttention(c.cfg)
		if !errors.Is(err, xattn.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewAttention(%+v) = %v, want ErrConfig naming %q", c.cfg, err, c.want)
		}
	}
	if _, err := xattn.NewAttention(xattn.AttentionConfig{Heads: 1, HeadDim: 1}, xattn.WithThreads(0)); !errors.Is(err, xattn.ErrConfig) {
		t.Errorf("WithThreads(0): %v, want ErrConfig", err)
	}
	var nilA *xattn.Attention
	if err := nilA.ForwardInto(nil, nil, nil, nil, xattn.Shape{}, nil); !errors.Is(err, xattn.ErrConfig) {
		t.Errorf("nil Attention: %v, want ErrConfig", err)
	}
	if err := new(xattn.Attention).ForwardInto(nil, nil, nil, nil, xattn.Shape{}, nil); !errors.Is(err, xattn.ErrConfig) {
		t.Errorf("zero Attention: %v, want ErrConfig", err)
	}
	if nilA.String() == "" || nilA.Plan() != (xattn.Plan{}) || nilA.Config() != (xattn.AttentionConfig{}) || nilA.FLOPs(xattn.Shape{Batch: 1, Tq: 1, Tk: 1}) != 0 {
		t.Error("nil Attention's getters are not zero")
	}

	cfg := xattn.AttentionConfig{Heads: 4, KVHeads: 2, HeadDim: 3, ValueHeadDim: 5}
	a, err := xattn.NewAttention(cfg, xattn.WithFiniteCheck())
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 4}
	nq, nk, nv, no := 2*3*4*3, 2*4*2*3, 2*4*2*5, 2*3*4*5
	q, k, v := make([]float32, nq), make([]float32, nk), make([]float32, nv)
	out := make([]float32, no)
	big := make([]float32, 1000)
	nan := make([]float32, nk)
	nan[2*6+3] = float32(math.Inf(1)) // k[0, 2, 1, 0]
	for _, c := range []struct {
		name         string
		out, q, k, v []float32
		s            xattn.Shape
		m            *xattn.Mask
		ld           *xattn.Strides
		sentinel     error
		want         string
	}{
		{"negative", out, q, k, v, xattn.Shape{Batch: 2, Tq: -1, Tk: 4}, nil, nil, xattn.ErrShape, "Tq=-1"},
		{"huge Tk", out, q, k, v, xattn.Shape{Batch: 1, Tq: 1, Tk: 1 << 40}, nil, nil, xattn.ErrShape, "Tk=1099511627776"},
		{"short q", out, q[:nq-1], k, v, s, nil, nil, xattn.ErrShape, "q has 71 values"},
		{"long k", out, q, append(k, 0), v, s, nil, nil, xattn.ErrShape, "k has 49 values"},
		{"short v", out, q, k, v[:1], s, nil, nil, xattn.ErrShape, "v has 1 values"},
		{"short out", out[:5], q, k, v, s, nil, nil, xattn.ErrShape, "out has 5 values"},
		{"stride below", out, q, k, v, s, nil, &xattn.Strides{K: 5}, xattn.ErrShape, "Strides.K=5"},
		{"negative stride", out, q, k, v, s, nil, &xattn.Strides{Out: -1}, xattn.ErrShape, "Strides.Out=-1"},
		{"huge stride", out, q, k, v, s, nil, &xattn.Strides{Q: 1 << 40}, xattn.ErrShape, "Strides.Q=1099511627776"},
		{"strided short", out, q, k, v, s, nil, &xattn.Strides{Q: 13}, xattn.ErrShape, "q has 72 values, want 77"},
		{"overlap q", big[:no], big[no-1:][:nq], k, v, s, nil, nil, xattn.ErrShape, "out overlaps the q"},
		{"overlap v", big[:no], q, k, big[10:][:nv], s, nil, nil, xattn.ErrShape, "out overlaps the v"},
		{"keylen", out, q, k, v, s, &xattn.Mask{KeyLen: []int{1}}, nil, xattn.ErrMask, "KeyLen has 1 entries"},
		{"keylen value", out, q, k, v, s, &xattn.Mask{KeyLen: []int{1, 9}}, nil, xattn.ErrMask, "9"},
		{"window", out, q, k, v, s, &xattn.Mask{Window: -2}, nil, xattn.ErrMask, "Window=-2"},
		{"alibi", out, q, k, v, s, &xattn.Mask{ALiBi: &xattn.ALiBi{Slopes: []float32{1}}}, nil, xattn.ErrMask, "ALiBi has 1 slopes"},
		{"keep", out, q, k, v, s, &xattn.Mask{Keep: &xattn.KeepMask{Data: make([]bool, 3), Batch: 1, Heads: 1, Rows: 1}}, nil, xattn.ErrMask, "Keep"},
		{"empty keylen", out, q, k, v, xattn.Shape{Batch: 2, Tq: 0, Tk: 4}, &xattn.Mask{KeyLen: []int{1}}, nil, xattn.ErrMask, "KeyLen"},
		{"non-finite", out, q, nan, v, s, nil, nil, xattn.ErrNonFinite, "k[0, 2, 3] = +Inf"},
	} {
		if c.name == "empty keylen" {
			c.out, c.q = c.out[:0], c.q[:0]
		}
		for i := range out {
			out[i] = outGuard
		}
		err := noPanic(t, func() error {
			if c.ld != nil {
				return a.ForwardStrided(c.out, c.q, c.k, c.v, c.s, c.m, *c.ld)
			}
			return a.ForwardInto(c.out, c.q, c.k, c.v, c.s, c.m)
		})
		if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.sentinel, c.want)
		}
		for i, x := range out {
			if x != outGuard {
				t.Fatalf("%s: out[%d] = %v written on error", c.name, i, x)
			}
		}
	}
}

// TestAttentionAllocs checks that warm calls allocate nothing, with the
// masks that keep state in the workspace (key lengths, standard ALiBi
// slopes) and split keys, on every backend in FP32 and with every BF16
// kernel this CPU runs.
func TestAttentionAllocs(t *testing.T) {
	cfg := xattn.AttentionConfig{Heads: 4, KVHeads: 2, HeadDim: 16}
	bes := blas.All()
	for _, b := range bf16Backends(t) { // every BF16 kernel this CPU runs
		bes = append(bes, b.be)
	}
	for _, be := range bes {
		a, err := xattn.NewAttention(cfg, xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithTile(8, 16), xattn.WithSerialFLOPs(0))
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(5, 6))
		for _, s := range []xattn.Shape{{Batch: 2, Tq: 33, Tk: 50}, {Batch: 1, Tq: 1, Tk: 200}} {
			for _, m := range []*xattn.Mask{nil, {KeyLen: []int{s.Tk - 1, s.Tk}[:s.Batch], Window: 9, ALiBi: &xattn.ALiBi{}}} {
				ac := newAttnCase(rng, cfg, s, layoutPadded)
				if err := ac.run(a, m); err != nil {
					t.Fatal(err)
				}
				if n := testing.AllocsPerRun(20, func() {
					if err := ac.run(a, m); err != nil {
						t.Fatal(err)
					}
				}); n != 0 {
					t.Errorf("backend=%s %v mask=%v: %v allocations per warm call", blas.Kernels(be), s, m != nil, n)
				}
			}
		}
	}
}

// TestAttentionConcurrent runs one Attention from many goroutines on
// different shapes, masks and layouts (meant for -race), each checked
// against the reference.
func TestAttentionConcurrent(t *testing.T) {
	cfg := xattn.AttentionConfig{Heads: 4, KVHeads: 1, HeadDim: 8, ValueHeadDim: 6}
	a, err := xattn.NewAttention(cfg, xattn.WithThreads(3), xattn.WithTile(4, 8), xattn.WithSerialFLOPs(0))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for gi := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(gi), 9))
			for it := range 8 {
				s := xattn.Shape{Batch: 1 + rng.IntN(2), Tq: 1 + rng.IntN(12), Tk: 1 + rng.IntN(40)}
				lay := attnLayout(rng.IntN(2))
				if it%3 == 0 {
					s.Tk, lay = s.Tq, layoutFused
				}
				mk := maskKind(rng.IntN(maskKinds))
				m := makeMask(rng, mk, s, cfg.Heads)
				ac := newAttnCase(rng, cfg, s, lay)
				if err := ac.run(a, m); err != nil {
					t.Error(err)
					return
				}
				if err := ac.check(fmt.Sprintf("goroutine %d call %d %v mask=%v layout=%v", gi, it, s, mk, lay), m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
