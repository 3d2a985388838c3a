package xattn_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// batchCase is one request of a batch test with its expected output.
type batchCase struct {
	req  xattn.Request
	want []float64 // the float64 reference
}

// makeBatch draws n requests for l of every route its config allows
// (cross, self, cached), with mixed shapes, masks and empty requests. The Y
// slices lie in one buffer between NaN guard bands, which it returns.
func makeBatch(t testing.TB, l *xattn.Layer, w *xattn.Weights, n int, seed uint64) ([]batchCase, []float32) {
	t.Helper()
	c := l.Config()
	rng := rand.New(rand.NewPCG(seed, 9))
	self := c.ContextDim == c.QueryDim && c.ValueDim == c.QueryDim
	cross := c.ValueDim == c.ContextDim
	const guard = 7
	cases := make([]batchCase, n)
	var ylen []int
	total := guard
	for i := range cases {
		s := xattn.Shape{Batch: 1 + rng.IntN(3), Tq: 1 + rng.IntN(40), Tk: 1 + rng.IntN(70)}
		switch i % 11 {
		case 5:
			s.Batch = 0
		case 6:
			s.Tq = 0
		case 7:
			s.Tk = 0
		}
		route := i % 3 // 0 cross, 1 self, 2 cached
		if route == 1 && !self || route == 0 && !cross {
			route = 2
		}
		if route == 1 {
			s.Tk = s.Tq
		}
		r := xattn.Request{X: randn(rng, s.Batch*s.Tq*c.QueryDim), Shape: s}
		if s.Batch > 0 && s.Tq > 0 && s.Tk > 0 {
			r.Mask = makeMask(rng, maskKind(rng.IntN(6)), s, c.Heads)
		}
		var xk, xv []float32
		switch route {
		case 0:
			r.Context = randn(rng, s.Batch*s.Tk*c.ContextDim)
			xk, xv = r.Context, r.Context
		case 1:
			xk, xv = r.X, r.X
			if i%2 == 0 {
				r.Shape.Tk = 0 // means Tq, as for ForwardInto
			}
		case 2:
			xk = randn(rng, s.Batch*s.Tk*c.ContextDim)
			xv = xk
			if !cross {
				xv = randn(rng, s.Batch*s.Tk*c.ValueDim)
			}
			ctx, err := l.ProjectKV(xk, xv, s.Batch, s.Tk)
			if err != nil {
				t.Fatal(err)
			}
			r.Cached = ctx
			if i%2 == 0 {
				r.Shape.Tk = 0 // means the Context's
			}
		}
		cases[i] = batchCase{req: r, want: attentionRef64(c, w, r.X, xk, xv, s, r.Mask)}
		ylen = append(ylen, s.Batch*s.Tq*c.OutDim)
		total += ylen[i] + guard
	}
	buf := make([]float32, total)
	for i := range buf {
		buf[i] = float32(math.NaN())
	}
	off := guard
	for i := range cases {
		cases[i].req.Y = buf[off : off+ylen[i] : off+ylen[i]]
		off += ylen[i] + guard
	}
	return cases, buf
}

// separate runs one request the plain way.
func separate(l *xattn.Layer, r xattn.Request) ([]float32, error) {
	y := make([]float32, len(r.Y))
	if r.Cached != nil {
		return y, l.ForwardContext(y, r.X, r.Cached, r.Shape.Tq, r.Mask)
	}
	return y, l.ForwardInto(y, r.X, r.Context, r.Shape, r.Mask)
}

// TestForwardBatchMatches runs batches of mixed requests on every backend
// and plan, and checks each output against the float64 reference (the
// package's tolerance) and against the request run alone (twice the
// tolerance: both are within it of the reference). It logs how many outputs
// were also bit-identical to the separate calls. Nothing outside the Y
// slices is written.
func TestForwardBatchMatches(t *testing.T) {
	cfgs := []xattn.Config{
		{QueryDim: 48, Heads: 4, HeadDim: 12, Bias: true},                                             // every route
		{QueryDim: 40, ContextDim: 28, OutDim: 20, Heads: 8, KVHeads: 2, HeadDim: 8, ValueHeadDim: 6}, // GQA, dv ≠ dk
		{QueryDim: 32, ContextDim: 24, ValueDim: 16, Heads: 2, HeadDim: 16, Bias: true},               // cached only
	}
	n := 23
	if testing.Short() || raceEnabled {
		n = 11
	}
	identical, outputs := 0, 0
	for ci, cfg := range cfgs {
		w, err := xattn.NewWeights(cfg, uint64(ci))
		if err != nil {
			t.Fatal(err)
		}
		for _, be := range blas.All() {
			for pname, opts := range planOptions(be) {
				t.Run(fmt.Sprintf("backend=%s/plan=%s/cfg=%d", be.Name(), pname, ci), func(t *testing.T) {
					l, err := xattn.New(cfg, w, opts...)
					if err != nil {
						t.Fatal(err)
					}
					cases, buf := makeBatch(t, l, w, n, uint64(ci))
					reqs := make([]xattn.Request, len(cases))
					for i := range cases {
						reqs[i] = cases[i].req
					}
					inputs := make([][]float32, len(reqs))
					for i, r := range reqs {
						inputs[i] = append(append([]float32(nil), r.X...), r.Context...)
					}
					if err := l.ForwardBatch(reqs); err != nil {
						t.Fatal(err)
					}
					for i, bc := range cases {
						r := bc.req
						alone, err := separate(l, r)
						if err != nil {
							t.Fatalf("request %d alone: %v", i, err)
						}
						diff, norm := maxAbsDiff(r.Y, bc.want)
						if diff > tolerance(norm) || math.IsNaN(diff) {
							t.Fatalf("request %d %+v: max |y−ref| = %.3g, bound %.3g", i, r.Shape, diff, tolerance(norm))
						}
						var d float64
						for j := range alone {
							d = math.Max(d, math.Abs(float64(r.Y[j]-alone[j])))
						}
						if d > 2*tolerance(norm) {
							t.Fatalf("request %d: max |batch−alone| = %.3g", i, d)
						}
						if testutil.BitDiff(r.Y, alone) < 0 {
							identical++
						}
						outputs++
						if got := append(append([]float32(nil), r.X...), r.Context...); testutil.BitDiff(got, inputs[i]) >= 0 {
							t.Fatalf("request %d: an input changed", i)
						}
					}
					nan := 0
					for _, v := range buf {
						if math.IsNaN(float64(v)) {
							nan++
						}
					}
					written := 0
					for _, r := range reqs {
						written += len(r.Y)
					}
					if nan != len(buf)-written {
						t.Fatalf("%d NaN guard values left of %d", nan, len(buf)-written)
					}
				})
			}
		}
	}
	t.Logf("%d of %d request outputs bit-identical to separate calls", identical, outputs)
}

// TestForwardBatchErrors checks that a bad request makes the whole call fail
// with its index and sentinel, without panicking or writing any Y.
func TestForwardBatchErrors(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := xattn.New(cfg, w)
	crossCfg := xattn.Config{QueryDim: 8, ContextDim: 6, ValueDim: 5, Heads: 2, HeadDim: 4}
	cw, _ := xattn.NewWeights(crossCfg, 1)
	qkv, _ := xattn.New(crossCfg, cw)

	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 4}
	good := func() xattn.Request {
		y := make([]float32, 2*3*8)
		for i := range y {
			y[i] = float32(math.NaN())
		}
		return xattn.Request{Y: y, X: make([]float32, 2*3*8), Context: make([]float32, 2*4*8), Shape: s}
	}
	ctx, _ := l.ProjectContext(make([]float32, 2*4*8), 2, 4)
	otherCtx, _ := other.ProjectContext(make([]float32, 2*4*8), 2, 4)
	for _, tc := range []struct {
		name  string
		err   error
		layer *xattn.Layer
		bad   func(r *xattn.Request)
	}{
		{"short X", xattn.ErrShape, l, func(r *xattn.Request) { r.X = r.X[1:] }},
		{"short Y", xattn.ErrShape, l, func(r *xattn.Request) { r.Y = r.Y[1:] }},
		{"long Context", xattn.ErrShape, l, func(r *xattn.Request) { r.Context = append(r.Context, 0) }},
		{"negative shape", xattn.ErrShape, l, func(r *xattn.Request) { r.Shape.Tq = -1 }},
		{"self Tk", xattn.ErrShape, l, func(r *xattn.Request) { r.Context = nil }},
		{"overflow", xattn.ErrShape, l, func(r *xattn.Request) { r.Shape = xattn.Shape{Batch: 1 << 40, Tq: 1 << 40, Tk: 1} }},
		{"cached and context", xattn.ErrShape, l, func(r *xattn.Request) { r.Cached = ctx }},
		{"cached other layer", xattn.ErrShape, l, func(r *xattn.Request) { r.Context, r.Cached = nil, otherCtx }},
		{"cached batch", xattn.ErrShape, l, func(r *xattn.Request) { r.Context, r.Cached, r.Shape.Batch = nil, ctx, 1 }},
		{"cached tk", xattn.ErrShape, l, func(r *xattn.Request) { r.Context, r.Cached, r.Shape.Tk = nil, ctx, 5 }},
		{"keylen", xattn.ErrMask, l, func(r *xattn.Request) { r.Mask = &xattn.Mask{KeyLen: []int{1}} }},
		{"bias inf", xattn.ErrMask, l, func(r *xattn.Request) {
			r.Mask = &xattn.Mask{Bias: &xattn.BiasMask{Data: []float32{0, float32(math.Inf(1)), 0, 0}, Batch: 1, Heads: 1, Rows: 1}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := []xattn.Request{good(), good(), good()}
			tc.bad(&reqs[1])
			err := noPanic(t, func() error { return tc.layer.ForwardBatch(reqs) })
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if want := "request 1: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
				t.Fatalf("err = %q does not name request 1", err)
			}
			for i, v := range reqs[0].Y {
				if !math.IsNaN(float64(v)) {
					t.Fatalf("a failed batch wrote Y[%d] of request 0", i)
				}
			}
			t.Log(err)
		})
	}
	t.Run("value dim", func(t *testing.T) {
		r := xattn.Request{Y: make([]float32, 8), X: make([]float32, 8), Context: make([]float32, 6), Shape: xattn.Shape{Batch: 1, Tq: 1, Tk: 1}}
		if err := qkv.ForwardBatch([]xattn.Request{r}); !errors.Is(err, xattn.ErrShape) {
			t.Fatalf("err = %v, want ErrShape", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if err := l.ForwardBatch(nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestForwardBatchAllocs shows that ForwardBatch allocates nothing once warm.
func TestForwardBatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	cfg := xattn.Config{QueryDim: 48, Heads: 4, HeadDim: 12, Bias: true}
	w, _ := xattn.NewWeights(cfg, 2)
	for _, be := range blas.All() {
		for _, serial := range []bool{true, false} {
			t.Run(fmt.Sprintf("backend=%s/serial=%t", be.Name(), serial), func(t *testing.T) {
				sf := 0.0
				if serial {
					sf = 1e18
				}
				l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithSerialFLOPs(sf))
				if err != nil {
					t.Fatal(err)
				}
				cases, _ := makeBatch(t, l, w, 12, 3)
				reqs := make([]xattn.Request, len(cases))
				for i := range cases {
					reqs[i] = cases[i].req
				}
				run := func() {
					if err := l.ForwardBatch(reqs); err != nil {
						t.Fatal(err)
					}
				}
				run()
				if n := testing.AllocsPerRun(30, run); n != 0 {
					t.Fatalf("ForwardBatch allocates %v times per call", n)
				}
			})
		}
	}
}

// TestForwardBatchConcurrent runs batches from 8 goroutines at once on one
// layer, all reading one shared Cached context. Run it under -race.
func TestForwardBatchConcurrent(t *testing.T) {
	cfg := xattn.Config{QueryDim: 32, Heads: 4, KVHeads: 2, HeadDim: 8}
	w, _ := xattn.NewWeights(cfg, 4)
	rng := rand.New(rand.NewPCG(8, 8))
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(3), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			shared, err := l.ProjectContext(randn(rng, 2*30*32), 2, 30)
			if err != nil {
				t.Fatal(err)
			}
			const goroutines = 8
			type job struct {
				reqs []xattn.Request
				want [][]float32
			}
			jobs := make([]job, goroutines)
			for gi := range jobs {
				j := &jobs[gi]
				for k := 0; k < 5; k++ {
					tq := 1 + rng.IntN(9)
					r := xattn.Request{X: randn(rng, 2*tq*32), Y: make([]float32, 2*tq*32), Shape: xattn.Shape{Batch: 2, Tq: tq}}
					if k%2 == 0 {
						r.Cached = shared
					} else {
						r.Shape.Tk = 11
						r.Context = randn(rng, 2*11*32)
					}
					j.reqs = append(j.reqs, r)
				}
				if err := l.ForwardBatch(j.reqs); err != nil {
					t.Fatal(err)
				}
				for _, r := range j.reqs {
					j.want = append(j.want, append([]float32(nil), r.Y...))
				}
			}
			testutil.Parallel(t, len(jobs), func(gi int) func() error {
				return func() error {
					j := &jobs[gi]
					for rep := 0; rep < 10; rep++ {
						if err := l.ForwardBatch(j.reqs); err != nil {
							return err
						}
						for k, r := range j.reqs {
							if i := testutil.BitDiff(r.Y, j.want[k]); i >= 0 {
								return fmt.Errorf("goroutine %d rep %d request %d: y[%d] differs", gi, rep, k, i)
							}
						}
					}
					return nil
				}
			})
		})
	}
}

// BenchmarkForwardBatch serves 64 requests of the `tiny` shape (B=1, Tq=10,
// Tk=20, dims 512, H=8, dh=64): in one ForwardBatch (mode=batch), as 64
// ForwardInto calls in a row (mode=separate), and as 64 ForwardInto calls
// spread over GOMAXPROCS goroutines on a layer of one thread each
// (mode=goroutines, what a server without the batch API would do).
func BenchmarkForwardBatch(b *testing.B) {
	bs := benchShapes[3]
	const n = 64
	for _, be := range blas.All() {
		for _, mode := range []string{"batch", "separate", "goroutines"} {
			b.Run("shape=tiny/requests=64/backend="+be.Name()+"/mode="+mode, func(b *testing.B) {
				w, err := xattn.NewWeights(bs.cfg, 1)
				if err != nil {
					b.Fatal(err)
				}
				opts := []xattn.Option{xattn.WithBackend(be)}
				if mode == "goroutines" {
					opts = append(opts, xattn.WithThreads(1))
				}
				l, err := xattn.New(bs.cfg, w, opts...)
				if err != nil {
					b.Fatal(err)
				}
				c, s := l.Config(), bs.shape
				rng := rand.New(rand.NewPCG(1, 2))
				reqs := make([]xattn.Request, n)
				for i := range reqs {
					reqs[i] = xattn.Request{
						Y:       make([]float32, s.Batch*s.Tq*c.OutDim),
						X:       randn(rng, s.Batch*s.Tq*c.QueryDim),
						Context: randn(rng, s.Batch*s.Tk*c.ContextDim),
						Shape:   s,
					}
				}
				var run func() error
				switch mode {
				case "batch":
					run = func() error { return l.ForwardBatch(reqs) }
				case "separate":
					run = func() error {
						for _, r := range reqs {
							if err := l.ForwardInto(r.Y, r.X, r.Context, r.Shape, nil); err != nil {
								return err
							}
						}
						return nil
					}
				case "goroutines":
					procs := runtime.GOMAXPROCS(0)
					errs := make([]error, procs)
					run = func() error {
						var wg sync.WaitGroup
						for p := 0; p < procs; p++ {
							wg.Add(1)
							go func() {
								defer wg.Done()
								for i := p; i < n; i += procs {
									r := &reqs[i]
									if err := l.ForwardInto(r.Y, r.X, r.Context, r.Shape, nil); err != nil {
										errs[p] = err
									}
								}
							}()
						}
						wg.Wait()
						return errors.Join(errs...)
					}
				}
				if err := run(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := run(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(n*l.FLOPs(s)*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
	}
}
