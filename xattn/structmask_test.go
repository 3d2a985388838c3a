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

// structMask adds the structural parts of kind k to m: a window (of 1, of
// about Tk, larger than Tk, or random), bottom-right alignment, ALiBi with
// the standard or given slopes; maskStructAll draws all of them at once.
func structMask(rng *rand.Rand, k maskKind, s xattn.Shape, heads int, m *xattn.Mask) {
	window := func() int {
		switch rng.IntN(4) {
		case 0:
			return 1
		case 1:
			return s.Tk + 1 + rng.IntN(3) // larger than Tk
		default:
			return 1 + rng.IntN(max(s.Tk, 1)+1)
		}
	}
	alibi := func() *xattn.ALiBi {
		if rng.IntN(2) == 0 {
			return &xattn.ALiBi{} // the standard slopes
		}
		sl := make([]float32, heads)
		for h := range sl {
			sl[h] = float32(rng.Float64()*0.6 - 0.1) // some negative, some 0
		}
		sl[0] = 0
		return &xattn.ALiBi{Slopes: sl}
	}
	switch k {
	case maskWindow:
		m.Window = window()
		m.CausalLowerRight = rng.IntN(2) == 0
		m.Causal = rng.IntN(2) == 0
	case maskLowerRight:
		m.CausalLowerRight = true
		m.Causal = rng.IntN(2) == 0
	case maskALiBi:
		m.ALiBi = alibi()
		switch rng.IntN(3) {
		case 0:
			m.Causal = true
		case 1:
			m.CausalLowerRight = true
		}
	case maskStructAll:
		m.Window = window()
		m.CausalLowerRight = rng.IntN(2) == 0
		m.ALiBi = alibi()
	}
}

// structKinds are the mask kinds of the structural masks.
var structKinds = []maskKind{maskWindow, maskLowerRight, maskALiBi, maskStructAll}

// structBackends returns the pure backend and every variant of the
// OpenBLAS backend this CPU runs (XATTN_KERNELS forces one more, as
// blas.All()'s first).
func structBackends(t testing.TB) []blas.Backend {
	bes := blas.All()
	for _, name := range blas.Variants() {
		be, err := blas.OpenBLASVariant(name)
		if err != nil {
			t.Logf("variant %s: %v", name, err)
			continue
		}
		bes = append(bes, be)
	}
	return bes
}

// TestStructMaskParity holds the window, bottom-right causal and ALiBi
// masks, alone and with every other part, to the float64 reference on every
// backend and variant, on the phased path over several key blocks, the
// serial path, and the fused path: Tq = 1, Tk = 1, Tq > Tk (rows that see
// nothing under the bottom-right alignment), windows of 1 and past Tk.
func TestStructMaskParity(t *testing.T) {
	shapes := []xattn.Shape{
		{Batch: 1, Tq: 1, Tk: 1}, {Batch: 2, Tq: 1, Tk: 40}, {Batch: 1, Tq: 9, Tk: 1},
		{Batch: 2, Tq: 7, Tk: 13}, {Batch: 1, Tq: 13, Tk: 7}, {Batch: 2, Tq: 40, Tk: 70},
		{Batch: 1, Tq: 70, Tk: 70}, {Batch: 1, Tq: 33, Tk: 130},
	}
	bes := structBackends(t)
	n := 0
	for si, sh := range shapes {
		for _, mk := range structKinds {
			for rep := range 2 {
				cfg := xattn.Config{QueryDim: 24, ContextDim: 20, OutDim: 12, Heads: 4, KVHeads: 2 - si%2, HeadDim: 8, Bias: rep == 1}
				if si%3 == 2 {
					cfg.Heads, cfg.KVHeads = 3, 3 // standard slopes off a power of two
				}
				c := sweepCase{cfg, sh, routeCross, mk}
				if rep == 1 && sh.Tq == sh.Tk {
					c.route = routeSelf
					c.cfg.ContextDim = 0
				}
				d := makeCase(t, c, uint64(1000+n))
				n++
				for _, be := range bes {
					for pi, opts := range [][]xattn.Option{
						{xattn.WithThreads(3), xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0)},
						{xattn.WithThreads(2), xattn.WithTile(6, 32), xattn.WithSerialFLOPs(0)}, // fused where packed
						{xattn.WithThreads(1), xattn.WithSerialFLOPs(1e18)},
					} {
						l, err := xattn.New(c.cfg, d.w, append(opts, xattn.WithBackend(be), xattn.WithAbsorb(false))...)
						if err != nil {
							t.Fatal(err)
						}
						got, err := runCase(l, c, d)
						if err != nil {
							t.Fatalf("%s: %v", c.name(), err)
						}
						if diff, norm := maxAbsDiff(got, d.want); diff > tolerance(norm) || math.IsNaN(diff) {
							t.Fatalf("kernels=%s plan=%d %s mask=%+v: max |y−ref| = %.3g, bound %.3g",
								blas.Kernels(be), pi, c.name(), *d.mask, diff, tolerance(norm))
						}
					}
				}
			}
		}
	}
}

// TestStructMaskPaths runs the structural masks through the other paths:
// keys split over the workers (decode-like calls), the absorbed form, a
// projected Context and ForwardBatch, against the float64 reference.
func TestStructMaskPaths(t *testing.T) {
	bes := structBackends(t)
	check := func(t *testing.T, what string, be blas.Backend, c sweepCase, got []float32, want []float64) {
		t.Helper()
		if diff, norm := maxAbsDiff(got, want); diff > tolerance(norm) || math.IsNaN(diff) {
			t.Fatalf("%s kernels=%s %s: max |y−ref| = %.3g, bound %.3g", what, blas.Kernels(be), c.name(), diff, tolerance(norm))
		}
	}
	n := 0
	for _, mk := range structKinds {
		// Split keys: few tasks on 8 threads.
		for _, sh := range []xattn.Shape{{Batch: 1, Tq: 1, Tk: 1000}, {Batch: 1, Tq: 3, Tk: 257}, {Batch: 2, Tq: 2, Tk: 130}} {
			cfg := xattn.Config{QueryDim: 24, ContextDim: 20, OutDim: 12, Heads: 2, KVHeads: 1, HeadDim: 8, Bias: true}
			c := sweepCase{cfg, sh, routeCross, mk}
			d := makeCase(t, c, uint64(2000+n))
			n++
			for _, be := range bes {
				for _, tile := range []int{16, 64} {
					l, err := xattn.New(cfg, d.w, xattn.WithBackend(be), xattn.WithThreads(8), xattn.WithTile(4, tile),
						xattn.WithSerialFLOPs(0), xattn.WithAbsorb(false))
					if err != nil {
						t.Fatal(err)
					}
					got, err := runCase(l, c, d)
					if err != nil {
						t.Fatal(err)
					}
					check(t, "split", be, c, got, d.want)
				}
			}
		}
		// Absorbed form and Context.
		cfg := xattn.Config{QueryDim: 48, ContextDim: 96, OutDim: 40, Heads: 4, HeadDim: 16, Bias: true}
		c := sweepCase{cfg, xattn.Shape{Batch: 3, Tq: 3, Tk: 70}, routeCross, mk}
		d := makeCase(t, c, uint64(2000+n))
		n++
		for _, be := range bes {
			l, err := xattn.New(cfg, d.w, xattn.WithBackend(be), xattn.WithAbsorb(true), xattn.WithThreads(3),
				xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			if !l.Absorbs(c.shape) {
				t.Fatalf("%v: not absorbed", l)
			}
			got, err := runCase(l, c, d)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "absorbed", be, c, got, d.want)

			for _, tile := range []int{16, 64} {
				l, err = xattn.New(cfg, d.w, xattn.WithBackend(be), xattn.WithAbsorb(false), xattn.WithThreads(2),
					xattn.WithTile(6, tile), xattn.WithSerialFLOPs(0))
				if err != nil {
					t.Fatal(err)
				}
				ctx, err := l.ProjectContext(d.xk, c.shape.Batch, c.shape.Tk)
				if err != nil {
					t.Fatal(err)
				}
				got = make([]float32, len(d.want))
				if err := l.ForwardContext(got, d.xq, ctx, c.shape.Tq, d.mask); err != nil {
					t.Fatal(err)
				}
				check(t, "context", be, c, got, d.want)
			}
		}
		// ForwardBatch: requests of different shapes and masks in one call.
		bcfg := xattn.Config{QueryDim: 24, ContextDim: 20, OutDim: 12, Heads: 4, KVHeads: 2, HeadDim: 8, Bias: true}
		w, err := xattn.NewWeights(bcfg, 5)
		if err != nil {
			t.Fatal(err)
		}
		var cases []sweepCase
		var datas []caseData
		var reqs []xattn.Request
		for i, sh := range []xattn.Shape{{Batch: 2, Tq: 7, Tk: 13}, {Batch: 1, Tq: 13, Tk: 7}, {Batch: 1, Tq: 30, Tk: 50}} {
			kind := mk
			if i == 1 {
				kind = maskNone
			}
			c := sweepCase{bcfg, sh, routeCross, kind}
			d := makeCaseW(t, c, uint64(3000+n+i), w)
			cases, datas = append(cases, c), append(datas, d)
			reqs = append(reqs, xattn.Request{Y: make([]float32, sh.Batch*sh.Tq*bcfg.OutDim), X: d.xq, Context: d.xk, Shape: sh, Mask: d.mask})
		}
		for _, be := range bes {
			l, err := xattn.New(bcfg, w, xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithTile(4, 16), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.ForwardBatch(reqs); err != nil {
				t.Fatal(err)
			}
			for i := range reqs {
				check(t, fmt.Sprintf("batch request %d", i), be, cases[i], reqs[i].Y, datas[i].want)
			}
		}
	}
}

// TestWindowForwardStep decodes a sequence through a KVCache, a prompt and
// then steps of one and of several positions, under a window (and ALiBi),
// and holds it to one causal ForwardInto over the whole sequence with the
// same mask, and both to the float64 reference: the window and the slopes
// see the cache offset.
func TestWindowForwardStep(t *testing.T) {
	cfg := xattn.Config{QueryDim: 24, OutDim: 16, Heads: 4, KVHeads: 2, HeadDim: 8, Bias: true}
	w, err := xattn.NewWeights(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	const b, T = 2, 37
	rng := rand.New(rand.NewPCG(4, 5))
	x := randn(rng, b*T*cfg.QueryDim)
	for _, m := range []xattn.Mask{
		{Window: 1}, {Window: 5}, {Window: 16}, {Window: 64},
		{Window: 6, ALiBi: &xattn.ALiBi{}}, {ALiBi: &xattn.ALiBi{Slopes: []float32{0.3, 0.1, 0, -0.05}}},
		{Window: 9, CausalLowerRight: true},
	} {
		s := xattn.Shape{Batch: b, Tq: T, Tk: T}
		full := m
		full.Causal = true
		want := attentionRef64(cfg, w, x, x, x, s, &full)
		for _, be := range structBackends(t) {
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithTile(4, 16), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			ref := make([]float32, b*T*cfg.OutDim)
			if err := l.ForwardInto(ref, x, nil, s, &full); err != nil {
				t.Fatal(err)
			}
			if diff, norm := maxAbsDiff(ref, want); diff > tolerance(norm) {
				t.Fatalf("kernels=%s mask=%+v: ForwardInto max |y−ref| = %.3g", blas.Kernels(be), m, diff)
			}
			kv, err := l.NewKVCache(b, T)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, b*T*cfg.OutDim)
			step := make([]float32, b*T*cfg.OutDim)
			xs := make([]float32, b*T*cfg.QueryDim)
			for p := 0; p < T; {
				n := 1
				switch {
				case p == 0:
					n = 11
				case p > 20:
					n = min(3, T-p)
				}
				for bi := range b {
					copy(xs[bi*n*cfg.QueryDim:(bi+1)*n*cfg.QueryDim], x[(bi*T+p)*cfg.QueryDim:(bi*T+p+n)*cfg.QueryDim])
				}
				sm := m
				if err := l.ForwardStep(step[:b*n*cfg.OutDim], xs[:b*n*cfg.QueryDim], kv, n, &sm); err != nil {
					t.Fatal(err)
				}
				for bi := range b {
					copy(got[(bi*T+p)*cfg.OutDim:(bi*T+p+n)*cfg.OutDim], step[bi*n*cfg.OutDim:(bi+1)*n*cfg.OutDim])
				}
				p += n
			}
			if diff, norm := maxAbsDiff(got, want); diff > tolerance(norm) || math.IsNaN(diff) {
				t.Fatalf("kernels=%s mask=%+v: ForwardStep max |y−ref| = %.3g, bound %.3g", blas.Kernels(be), m, diff, tolerance(norm))
			}
		}
	}
}

// TestStructMaskErrors checks that bad structural masks are errors wrapping
// ErrMask that name the value, before any work.
func TestStructMaskErrors(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 8, Heads: 2, HeadDim: 4}
	l, err := xattn.New(cfg, mustWeights(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 3, Tk: 5}
	x, ctx, y := make([]float32, 3*8), make([]float32, 5*8), make([]float32, 3*8)
	nan := float32(math.NaN())
	for _, c := range []struct {
		m    xattn.Mask
		want string
	}{
		{xattn.Mask{Window: -3}, "Window=-3"},
		{xattn.Mask{ALiBi: &xattn.ALiBi{Slopes: []float32{1}}}, "1 slopes, want Heads=2"},
		{xattn.Mask{ALiBi: &xattn.ALiBi{Slopes: []float32{1, 2, 3}}}, "3 slopes"},
		{xattn.Mask{ALiBi: &xattn.ALiBi{Slopes: []float32{0.5, nan}}}, "Slopes[1] = NaN"},
		{xattn.Mask{ALiBi: &xattn.ALiBi{Slopes: []float32{float32(math.Inf(1)), 0}}}, "Slopes[0] = +Inf"},
		{xattn.Mask{ALiBi: &xattn.ALiBi{Slopes: []float32{0, -1e38}}}, "Slopes[1] = -1e+38"},
	} {
		err := noPanic(t, func() error { return l.ForwardInto(y, x, ctx, s, &c.m) })
		if !errors.Is(err, xattn.ErrMask) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mask %+v: %v, want ErrMask naming %q", c.m, err, c.want)
		}
	}
	// A window of any size is valid: past Tk+Tq it is plain causal.
	for _, w := range []int{math.MaxInt, 1 << 40, 9} {
		err := noPanic(t, func() error { return l.ForwardInto(y, x, ctx, s, &xattn.Mask{Window: w}) })
		if err != nil {
			t.Errorf("Window=%d: %v", w, err)
		}
	}
}

// TestALiBiSlopes checks the standard slopes against BLOOM's values: 1/2 …
// 1/256 for 8 heads, and the interleaved extra slopes off a power of two.
func TestALiBiSlopes(t *testing.T) {
	got := xattn.ALiBiSlopes(8)
	for h, g := range got {
		if want := float32(1 / math.Pow(2, float64(h+1))); g != want {
			t.Errorf("8 heads: slope %d = %v, want %v", h, g, want)
		}
	}
	// 12 heads: the 8 slopes of 8 heads, then 2^(−0.5·k) for k = 1, 3, 5, 7.
	got = xattn.ALiBiSlopes(12)
	for k, want := range []float64{math.Pow(2, -0.5), math.Pow(2, -1.5), math.Pow(2, -2.5), math.Pow(2, -3.5)} {
		if g := got[8+k]; math.Abs(float64(g)-want) > 1e-7 {
			t.Errorf("12 heads: slope %d = %v, want %v", 8+k, g, want)
		}
	}
	for _, h := range []int{1, 2, 3, 5, 6, 7, 12, 16, 20, 40, 64} {
		want := refSlopes(&xattn.Mask{ALiBi: &xattn.ALiBi{}}, h)
		for i, g := range xattn.ALiBiSlopes(h) {
			if math.Abs(float64(g)-want[i]) > 1e-7*want[i] {
				t.Errorf("%d heads: slope %d = %v, want %v", h, i, g, want[i])
			}
		}
	}
}

// TestStructMaskAllocs shows that the structural masks allocate nothing
// once warm: the window and the standard slopes on the serial, the
// multi-worker and the fused path, and a KVCache step under a window.
func TestStructMaskAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	cfg := xattn.Config{QueryDim: 64, Heads: 4, HeadDim: 16, Bias: true}
	w := mustWeights(t, cfg)
	s := xattn.Shape{Batch: 2, Tq: 40, Tk: 40}
	rng := rand.New(rand.NewPCG(1, 2))
	x := randn(rng, s.Batch*s.Tq*cfg.QueryDim)
	y := make([]float32, len(x))
	m := &xattn.Mask{Window: 9, ALiBi: &xattn.ALiBi{}, KeyLen: []int{40, 30}}
	for _, be := range blas.All() {
		for _, opts := range [][]xattn.Option{
			{xattn.WithThreads(2), xattn.WithSerialFLOPs(1e18)},
			{xattn.WithThreads(2), xattn.WithTile(16, 32), xattn.WithSerialFLOPs(0)},
			{xattn.WithThreads(2), xattn.WithTile(6, 32), xattn.WithSerialFLOPs(0)},
		} {
			l, err := xattn.New(cfg, w, append(opts, xattn.WithBackend(be))...)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.ForwardInto(y, x, nil, s, m); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(20, func() {
				if err := l.ForwardInto(y, x, nil, s, m); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%v: %.1f allocations per ForwardInto with a window and ALiBi", l, n)
			}
			kv, err := l.NewKVCache(2, 100)
			if err != nil {
				t.Fatal(err)
			}
			step := &xattn.Mask{Window: 5, ALiBi: &xattn.ALiBi{}}
			if err := l.ForwardStep(y[:2*cfg.QueryDim], x[:2*cfg.QueryDim], kv, 1, step); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(20, func() {
				if err := l.ForwardStep(y[:2*cfg.QueryDim], x[:2*cfg.QueryDim], kv, 1, step); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%v: %.1f allocations per ForwardStep with a window and ALiBi", l, n)
			}
		}
	}
}

// TestStructMaskConcurrent runs one layer from several goroutines with the
// standard slopes and a window (run it under -race): every call gives the
// bits of a call alone.
func TestStructMaskConcurrent(t *testing.T) {
	cfg := xattn.Config{QueryDim: 32, Heads: 4, HeadDim: 8, Bias: true}
	w := mustWeights(t, cfg)
	s := xattn.Shape{Batch: 2, Tq: 30, Tk: 30}
	rng := rand.New(rand.NewPCG(3, 4))
	x := randn(rng, s.Batch*s.Tq*cfg.QueryDim)
	for _, be := range blas.All() {
		l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
		if err != nil {
			t.Fatal(err)
		}
		masks := []*xattn.Mask{{Window: 7, ALiBi: &xattn.ALiBi{}}, {ALiBi: &xattn.ALiBi{}, CausalLowerRight: true}, {Window: 3}}
		want := make([][]float32, len(masks))
		for i, m := range masks {
			want[i] = make([]float32, len(x))
			if err := l.ForwardInto(want[i], x, nil, s, m); err != nil {
				t.Fatal(err)
			}
		}
		errs := make(chan error, 4)
		for g := range 4 {
			go func() {
				y := make([]float32, len(x))
				for n := range 10 {
					i := (g + n) % len(masks)
					if err := l.ForwardInto(y, x, nil, s, masks[i]); err != nil {
						errs <- err
						return
					}
					for j := range y {
						if y[j] != want[i][j] {
							errs <- fmt.Errorf("goroutine %d call %d mask %d: y[%d] = %v, alone %v", g, n, i, j, y[j], want[i][j])
							return
						}
					}
				}
				errs <- nil
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", be.Name(), err)
			}
		}
	}
}
