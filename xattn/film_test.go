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

// filmRef64 is the FiLM layer written plainly from its formula in float64:
//
//	γ_b = Wγ·c_b + bγ (+1),  β_b = Wβ·c_b + bβ,  y[b,t,:] = γ_b ⊙ x[b,t,:] + β_b
func filmRef64(cfg xattn.FiLMConfig, w *xattn.FiLMWeights, x, cond []float32, batch, t int) []float64 {
	d, k := cfg.Dim, cfg.CondDim
	gamma := linearRef64(cond, batch, k, w.Gamma, d, w.GammaBias)
	beta := linearRef64(cond, batch, k, w.Beta, d, w.BetaBias)
	y := make([]float64, batch*t*d)
	for b := 0; b < batch; b++ {
		for i := 0; i < t; i++ {
			for j := 0; j < d; j++ {
				g := gamma[b*d+j]
				if cfg.GammaPlusOne {
					g++
				}
				r := (b*t+i)*d + j
				y[r] = g*float64(x[r]) + beta[b*d+j]
			}
		}
	}
	return y
}

type filmCase struct {
	cfg      xattn.FiLMConfig
	batch, t int
}

func (c filmCase) name() string {
	return fmt.Sprintf("B=%d/T=%d/D=%d/C=%d/bias=%t/plus1=%t",
		c.batch, c.t, c.cfg.Dim, c.cfg.CondDim, c.cfg.Bias, c.cfg.GammaPlusOne)
}

type filmData struct {
	w       *xattn.FiLMWeights
	x, cond []float32
	want    []float64
}

func makeFiLMCase(t testing.TB, c filmCase, seed uint64) filmData {
	t.Helper()
	w, err := xattn.NewFiLMWeights(c.cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	d := filmData{w: w}
	d.x = randn(rng, c.batch*c.t*c.cfg.Dim)
	d.cond = randn(rng, c.batch*c.cfg.CondDim)
	d.want = filmRef64(c.cfg, w, d.x, d.cond, c.batch, c.t)
	return d
}

// filmCases sweeps 0, 1, primes, sizes around the 64-column blocks and
// Stable Diffusion's and DiT's widths, with and without bias and the +1.
func filmCases(short bool) []filmCase {
	shapes := []struct{ b, t, d, k int }{
		{1, 1, 1, 1},
		{1, 7, 3, 5},
		{3, 2, 63, 17},
		{2, 13, 65, 64},
		{5, 1, 129, 31},
		{2, 77, 320, 1280},
		{4, 16, 1152, 257},
		{0, 5, 8, 4},
		{3, 0, 8, 4},
		{0, 0, 8, 4},
	}
	if !short {
		shapes = append(shapes, struct{ b, t, d, k int }{2, 1031, 640, 768})
	}
	var cases []filmCase
	for i, s := range shapes {
		for _, bias := range []bool{false, true} {
			cfg := xattn.FiLMConfig{Dim: s.d, CondDim: s.k, Bias: bias, GammaPlusOne: (i+btoi(bias))%2 == 0}
			cases = append(cases, filmCase{cfg, s.b, s.t})
		}
	}
	return cases
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestFiLMMatchesReference compares every backend, serial and split over
// workers, out of place and in place, with the float64 reference.
func TestFiLMMatchesReference(t *testing.T) {
	worst := 0.0
	for i, c := range filmCases(testing.Short() || raceEnabled) {
		d := makeFiLMCase(t, c, uint64(i))
		for _, be := range blas.All() {
			t.Run("backend="+be.Name()+"/"+c.name(), func(t *testing.T) {
				for _, opts := range [][]xattn.Option{
					{xattn.WithBackend(be)},
					{xattn.WithBackend(be), xattn.WithThreads(3), xattn.WithSerialFLOPs(0)},
				} {
					f, err := xattn.NewFiLM(c.cfg, d.w, opts...)
					if err != nil {
						t.Fatal(err)
					}
					got, err := f.Forward(d.x, d.cond, c.batch, c.t)
					if err != nil {
						t.Fatalf("%v: %v", f, err)
					}
					if len(got) != len(d.want) {
						t.Fatalf("%v: len(y) = %d, want %d", f, len(got), len(d.want))
					}
					diff, norm := maxAbsDiff(got, d.want)
					if diff > tolerance(norm) || math.IsNaN(diff) {
						t.Fatalf("%v: max |y−ref| = %.3g, ‖ref‖∞ = %.3g, bound %.3g", f, diff, norm, tolerance(norm))
					}
					worst = math.Max(worst, diff/math.Max(1, norm))

					// In place gives the same bits.
					inPlace := append([]float32(nil), d.x...)
					if err := f.ForwardInto(inPlace, inPlace, d.cond, c.batch, c.t); err != nil {
						t.Fatal(err)
					}
					for j := range got {
						if inPlace[j] != got[j] {
							t.Fatalf("%v: in place y[%d] = %v, out of place %v", f, j, inPlace[j], got[j])
						}
					}
				}
			})
		}
	}
	t.Logf("worst relative error: %.3g", worst)
}

// TestFiLMPerToken shows conditioning per token as Batch·T sequences of one
// token, against the reference applied token by token.
func TestFiLMPerToken(t *testing.T) {
	cfg := xattn.FiLMConfig{Dim: 24, CondDim: 10, Bias: true}
	w, err := xattn.NewFiLMWeights(cfg, 8)
	if err != nil {
		t.Fatal(err)
	}
	const batch, tokens = 3, 5
	rng := rand.New(rand.NewPCG(1, 2))
	x := randn(rng, batch*tokens*cfg.Dim)
	cond := randn(rng, batch*tokens*cfg.CondDim) // [batch, tokens, CondDim]
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			f, err := xattn.NewFiLM(cfg, w, xattn.WithBackend(be))
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Forward(x, cond, batch*tokens, 1)
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < batch*tokens; r++ {
				want := filmRef64(cfg, w, x[r*cfg.Dim:(r+1)*cfg.Dim], cond[r*cfg.CondDim:(r+1)*cfg.CondDim], 1, 1)
				diff, norm := maxAbsDiff(got[r*cfg.Dim:(r+1)*cfg.Dim], want)
				if diff > tolerance(norm) {
					t.Fatalf("token %d: max diff %.3g", r, diff)
				}
			}
		})
	}
}

// TestFiLMBackendsAgree compares every backend with the first.
func TestFiLMBackendsAgree(t *testing.T) {
	all := blas.All()
	if len(all) < 2 {
		t.Skip("one backend in this build")
	}
	c := filmCase{xattn.FiLMConfig{Dim: 320, CondDim: 1280, Bias: true, GammaPlusOne: true}, 2, 64}
	d := makeFiLMCase(t, c, 77)
	_, norm := maxAbsDiff(make([]float32, len(d.want)), d.want)
	var first []float32
	for _, be := range all {
		f, err := xattn.NewFiLM(c.cfg, d.w, xattn.WithBackend(be))
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Forward(d.x, d.cond, c.batch, c.t)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = got
			continue
		}
		for i := range got {
			if diff := math.Abs(float64(got[i] - first[i])); diff > 2*tolerance(norm) {
				t.Fatalf("backend %s vs %s: y[%d] = %v vs %v", be.Name(), all[0].Name(), i, got[i], first[i])
			}
		}
	}
}

// TestFiLMIdentity checks the +1 convention exactly: zero weights give
// y = x with GammaPlusOne and y = 0 without.
func TestFiLMIdentity(t *testing.T) {
	for _, plus1 := range []bool{false, true} {
		cfg := xattn.FiLMConfig{Dim: 9, CondDim: 4, Bias: true, GammaPlusOne: plus1}
		w := &xattn.FiLMWeights{
			Gamma: make([]float32, 36), Beta: make([]float32, 36),
			GammaBias: make([]float32, 9), BetaBias: make([]float32, 9),
		}
		rng := rand.New(rand.NewPCG(5, 6))
		x, cond := randn(rng, 2*3*9), randn(rng, 2*4)
		for _, be := range blas.All() {
			t.Run(fmt.Sprintf("backend=%s/plus1=%t", be.Name(), plus1), func(t *testing.T) {
				f, err := xattn.NewFiLM(cfg, w, xattn.WithBackend(be))
				if err != nil {
					t.Fatal(err)
				}
				y, err := f.Forward(x, cond, 2, 3)
				if err != nil {
					t.Fatal(err)
				}
				for i := range y {
					want := float32(0)
					if plus1 {
						want = x[i]
					}
					if y[i] != want {
						t.Fatalf("y[%d] = %v, want %v", i, y[i], want)
					}
				}
			})
		}
	}
}

// TestFiLMWeightsCopied checks that NewFiLM copies the weights: changing
// them afterwards changes nothing.
func TestFiLMWeightsCopied(t *testing.T) {
	c := filmCase{xattn.FiLMConfig{Dim: 16, CondDim: 8, Bias: true}, 2, 3}
	d := makeFiLMCase(t, c, 12)
	f, err := xattn.NewFiLM(c.cfg, d.w)
	if err != nil {
		t.Fatal(err)
	}
	before, err := f.Forward(d.x, d.cond, c.batch, c.t)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]float32{d.w.Gamma, d.w.Beta, d.w.GammaBias, d.w.BetaBias} {
		for i := range s {
			s[i] = 7
		}
	}
	after, err := f.Forward(d.x, d.cond, c.batch, c.t)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if before[i] != after[i] {
			t.Fatal("the layer shares the caller's weights")
		}
	}
}

// TestFiLMBuffersUntouched checks that inputs are unchanged and that
// nothing is written outside y, which sits between NaN guard bands.
func TestFiLMBuffersUntouched(t *testing.T) {
	c := filmCase{xattn.FiLMConfig{Dim: 70, CondDim: 9, Bias: true}, 3, 5}
	d := makeFiLMCase(t, c, 4)
	for _, be := range blas.All() {
		for _, threads := range []int{1, 3} {
			t.Run(fmt.Sprintf("backend=%s/threads=%d", be.Name(), threads), func(t *testing.T) {
				f, err := xattn.NewFiLM(c.cfg, d.w, xattn.WithBackend(be), xattn.WithThreads(threads), xattn.WithSerialFLOPs(0))
				if err != nil {
					t.Fatal(err)
				}
				x, cond := append([]float32(nil), d.x...), append([]float32(nil), d.cond...)
				y, intact := testutil.Guarded(c.batch*c.t*c.cfg.Dim, 37)
				if err := f.ForwardInto(y, d.x, d.cond, c.batch, c.t); err != nil {
					t.Fatal(err)
				}
				testutil.CheckWritten(t, "y", y, intact)
				if !testutil.SameBits(x, d.x) || !testutil.SameBits(cond, d.cond) {
					t.Fatal("x or cond changed")
				}
			})
		}
	}
}

// TestFiLMErrors feeds every kind of bad input a caller can pass and checks
// the sentinel; none may panic.
func TestFiLMErrors(t *testing.T) {
	cfg := xattn.FiLMConfig{Dim: 8, CondDim: 6}
	w, err := xattn.NewFiLMWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	f, err := xattn.NewFiLM(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	biasCfg := xattn.FiLMConfig{Dim: 8, CondDim: 6, Bias: true}
	bw, err := xattn.NewFiLMWeights(biasCfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	const batch, tokens = 2, 3
	x := make([]float32, batch*tokens*8)
	y := make([]float32, batch*tokens*8)
	cond := make([]float32, batch*6)
	fwd := func(y, x, cond []float32, batch, tokens int) func() error {
		return func() error { return f.ForwardInto(y, x, cond, batch, tokens) }
	}
	newW := func(cfg xattn.FiLMConfig, edit func(w *xattn.FiLMWeights)) func() error {
		return func() error {
			w2, err := xattn.NewFiLMWeights(cfg, 2)
			if err != nil {
				return err
			}
			edit(w2)
			_, err = xattn.NewFiLM(cfg, w2)
			return err
		}
	}
	for _, tc := range []struct {
		name string
		err  error
		call func() error
	}{
		{"config/zero", xattn.ErrConfig, func() error { _, err := xattn.NewFiLM(xattn.FiLMConfig{}, w); return err }},
		{"config/no cond", xattn.ErrConfig, func() error { _, err := xattn.NewFiLM(xattn.FiLMConfig{Dim: 8}, w); return err }},
		{"config/negative dim", xattn.ErrConfig, func() error {
			_, err := xattn.NewFiLM(xattn.FiLMConfig{Dim: -8, CondDim: 6}, w)
			return err
		}},
		{"config/dim too large", xattn.ErrConfig, func() error {
			_, err := xattn.NewFiLMWeights(xattn.FiLMConfig{Dim: 1 << 31, CondDim: 1}, 1)
			return err
		}},
		{"config/cond too large", xattn.ErrConfig, func() error {
			_, err := xattn.NewFiLMWeights(xattn.FiLMConfig{Dim: 1 << 30, CondDim: 1 << 31}, 1)
			return err
		}},
		{"option/nil", xattn.ErrConfig, func() error { _, err := xattn.NewFiLM(cfg, w, nil); return err }},
		{"option/backend", xattn.ErrConfig, func() error { _, err := xattn.NewFiLM(cfg, w, xattn.WithBackend(nil)); return err }},
		{"option/threads", xattn.ErrConfig, func() error { _, err := xattn.NewFiLM(cfg, w, xattn.WithThreads(0)); return err }},
		{"option/serial", xattn.ErrConfig, func() error {
			_, err := xattn.NewFiLM(cfg, w, xattn.WithSerialFLOPs(-1))
			return err
		}},
		{"option/tile", xattn.ErrConfig, func() error { _, err := xattn.NewFiLM(cfg, w, xattn.WithTile(8, 16)); return err }},
		{"weights/nil", xattn.ErrWeights, func() error { _, err := xattn.NewFiLM(cfg, nil); return err }},
		{"weights/short gamma", xattn.ErrWeights, newW(cfg, func(w *xattn.FiLMWeights) { w.Gamma = w.Gamma[1:] })},
		{"weights/long beta", xattn.ErrWeights, newW(cfg, func(w *xattn.FiLMWeights) { w.Beta = append(w.Beta, 0) })},
		{"weights/unexpected bias", xattn.ErrWeights, newW(cfg, func(w *xattn.FiLMWeights) { w.BetaBias = make([]float32, 8) })},
		{"weights/missing bias", xattn.ErrWeights, newW(biasCfg, func(w *xattn.FiLMWeights) { w.GammaBias = nil })},
		{"weights/short bias", xattn.ErrWeights, newW(biasCfg, func(w *xattn.FiLMWeights) { w.BetaBias = w.BetaBias[:7] })},
		{"weights/NaN", xattn.ErrWeights, newW(cfg, func(w *xattn.FiLMWeights) { w.Beta[5] = float32(math.NaN()) })},
		{"weights/Inf bias", xattn.ErrWeights, newW(biasCfg, func(w *xattn.FiLMWeights) { w.GammaBias[2] = float32(math.Inf(-1)) })},
		{"weights/bias for the other config", xattn.ErrWeights, func() error { _, err := xattn.NewFiLM(cfg, bw); return err }},
		{"shape/negative batch", xattn.ErrShape, fwd(y, x, cond, -1, tokens)},
		{"shape/negative t", xattn.ErrShape, fwd(y, x, cond, batch, -3)},
		{"shape/short x", xattn.ErrShape, fwd(y, x[1:], cond, batch, tokens)},
		{"shape/long x", xattn.ErrShape, fwd(y, append(x, 0), cond, batch, tokens)},
		{"shape/short y", xattn.ErrShape, fwd(y[:5], x, cond, batch, tokens)},
		{"shape/short cond", xattn.ErrShape, fwd(y, x, cond[1:], batch, tokens)},
		{"shape/cond per token", xattn.ErrShape, fwd(y, x, make([]float32, batch*tokens*6), batch, tokens)},
		{"shape/nil cond", xattn.ErrShape, fwd(y, x, nil, batch, tokens)},
		{"shape/batch mismatch", xattn.ErrShape, fwd(y, x, cond, 3, 2)},
		{"shape/cond with t=0", xattn.ErrShape, fwd(nil, nil, nil, batch, 0)},
		{"shape/batch too large", xattn.ErrShape, fwd(y, x, cond, 1<<32, 0)},
		{"shape/overflow", xattn.ErrShape, fwd(y, x, cond, 1<<30, 1<<40)},
		{"shape/forward overflow", xattn.ErrShape, func() error {
			_, err := f.Forward(x, cond, 1<<30, 1<<40)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := noPanic(t, func() error { return tc.call() })
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			t.Log(err)
		})
	}
}

// TestFiLMEmpty checks that empty batches and sequences are valid no-ops
// that still check the lengths they are given.
func TestFiLMEmpty(t *testing.T) {
	cfg := xattn.FiLMConfig{Dim: 8, CondDim: 6, Bias: true}
	w, _ := xattn.NewFiLMWeights(cfg, 1)
	for _, be := range blas.All() {
		f, err := xattn.NewFiLM(cfg, w, xattn.WithBackend(be))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []struct{ b, t int }{{0, 0}, {0, 4}, {3, 0}} {
			y, err := f.Forward(make([]float32, s.b*s.t*8), make([]float32, s.b*6), s.b, s.t)
			if err != nil || len(y) != 0 {
				t.Fatalf("%s %+v: y=%v err=%v", be.Name(), s, y, err)
			}
			if err := f.ForwardInto(nil, nil, make([]float32, s.b*6), s.b, s.t); err != nil {
				t.Fatalf("%s %+v: ForwardInto(nil, nil, …) = %v", be.Name(), s, err)
			}
		}
	}
}

// TestFiLMConcurrent shares one FiLM among 16 goroutines, each with its own
// shapes, and checks every result against the reference. Run it under -race.
func TestFiLMConcurrent(t *testing.T) {
	cfg := xattn.FiLMConfig{Dim: 96, CondDim: 20, Bias: true, GammaPlusOne: true}
	w, err := xattn.NewFiLMWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			f, err := xattn.NewFiLM(cfg, w, xattn.WithBackend(be), xattn.WithThreads(4), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			filmConcurrently(t, f, w, 20, tolerance)
		})
	}
}

// filmConcurrently runs f from 16 goroutines at once, reps calls each on
// its own shape and inputs, each call against the float64 reference of w
// within bound.
func filmConcurrently(t *testing.T, f *xattn.FiLM, w *xattn.FiLMWeights, reps int, bound func(norm float64) float64) {
	t.Helper()
	cfg := f.Config()
	testutil.Parallel(t, 16, func(gi int) func() error {
		batch, tokens := 1+gi%4, 3+5*gi
		rng := rand.New(rand.NewPCG(uint64(gi), 9))
		x, cond := randn(rng, batch*tokens*cfg.Dim), randn(rng, batch*cfg.CondDim)
		want := filmRef64(cfg, w, x, cond, batch, tokens)
		return func() error {
			y := make([]float32, len(x))
			for rep := range reps {
				if err := f.ForwardInto(y, x, cond, batch, tokens); err != nil {
					return err
				}
				if diff, norm := maxAbsDiff(y, want); diff > bound(norm) {
					return fmt.Errorf("goroutine %d rep %d: max diff %.3g", gi, rep, diff)
				}
			}
			return nil
		}
	})
}

// TestFiLMForwardIntoAllocs shows the steady state of ForwardInto allocates
// nothing, on the serial and the multi-worker path, in and out of place.
func TestFiLMForwardIntoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := filmCase{xattn.FiLMConfig{Dim: 200, CondDim: 48, Bias: true, GammaPlusOne: true}, 3, 40}
	d := makeFiLMCase(t, c, 1)
	for _, be := range blas.All() {
		for _, serial := range []bool{true, false} {
			t.Run(fmt.Sprintf("backend=%s/serial=%t", be.Name(), serial), func(t *testing.T) {
				opts := []xattn.Option{xattn.WithBackend(be), xattn.WithThreads(2)}
				if serial {
					opts = append(opts, xattn.WithSerialFLOPs(1e18))
				} else {
					opts = append(opts, xattn.WithSerialFLOPs(0))
				}
				f, err := xattn.NewFiLM(c.cfg, d.w, opts...)
				if err != nil {
					t.Fatal(err)
				}
				y := make([]float32, len(d.x))
				run := func() {
					if err := f.ForwardInto(y, d.x, d.cond, c.batch, c.t); err != nil {
						t.Fatal(err)
					}
					if err := f.ForwardInto(y, y, d.cond, c.batch, c.t); err != nil {
						t.Fatal(err)
					}
				}
				run()
				if n := testing.AllocsPerRun(50, run); n != 0 {
					t.Fatalf("ForwardInto allocates %v times per call", n)
				}
			})
		}
	}
}

// TestNewFiLMWeights checks the seeding and PyTorch's default Linear
// initialisation: uniform in ±1/√CondDim, biases only with Bias.
func TestNewFiLMWeights(t *testing.T) {
	cfg := xattn.FiLMConfig{Dim: 64, CondDim: 100, Bias: true}
	w, err := xattn.NewFiLMWeights(cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := xattn.NewFiLMWeights(cfg, 42)
	w3, _ := xattn.NewFiLMWeights(cfg, 43)
	if w.Gamma[17] != w2.Gamma[17] || w.Gamma[17] == w3.Gamma[17] {
		t.Fatal("seeding is not reproducible or ignores the seed")
	}
	bound := 1 / math.Sqrt(100)
	for name, s := range map[string][]float32{"Gamma": w.Gamma, "Beta": w.Beta, "GammaBias": w.GammaBias, "BetaBias": w.BetaBias} {
		var sq float64
		for _, v := range s {
			if math.Abs(float64(v)) > bound {
				t.Fatalf("%s: %v outside ±%v", name, v, bound)
			}
			sq += float64(v) * float64(v)
		}
		if v, want := sq/float64(len(s)), bound*bound/3; math.Abs(v-want) > 0.3*want {
			t.Errorf("%s: mean square %.3g, want about %.3g", name, v, want)
		}
	}
	nb, _ := xattn.NewFiLMWeights(xattn.FiLMConfig{Dim: 4, CondDim: 3}, 1)
	if nb.GammaBias != nil || nb.BetaBias != nil {
		t.Fatal("biases without FiLMConfig.Bias")
	}
}

// TestFiLMString checks what FiLM reports about itself.
func TestFiLMString(t *testing.T) {
	cfg := xattn.FiLMConfig{Dim: 4, CondDim: 3, GammaPlusOne: true}
	w, _ := xattn.NewFiLMWeights(cfg, 1)
	f, err := xattn.NewFiLM(cfg, w, xattn.WithBackend(blas.Pure()), xattn.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.String(), "pure threads=2 serial<0.131MFLOP"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := cfg.String(), "dim=4 cond=3 bias=false gamma+1=true"; got != want {
		t.Errorf("Config.String() = %q, want %q", got, want)
	}
	if f.Config() != cfg || f.Backend().Name() != "pure" || f.Plan().Threads != 2 {
		t.Errorf("accessors: %+v %s %+v", f.Config(), f.Backend().Name(), f.Plan())
	}
	if got, want := f.FLOPs(2, 5), float64(2*2*8*3+2*2*5*4); got != want {
		t.Errorf("FLOPs(2, 5) = %v, want %v", got, want)
	}
}

// filmBenchShapes: Stable Diffusion's time embedding (1280) on the 64×64
// UNet level, DiT-XL's adaLN on 256 tokens, and a tiny call.
var filmBenchShapes = []struct {
	name     string
	cfg      xattn.FiLMConfig
	batch, t int
	large    bool
}{
	{"sd_unet64", xattn.FiLMConfig{Dim: 320, CondDim: 1280, Bias: true, GammaPlusOne: true}, 2, 4096, true},
	{"dit_xl", xattn.FiLMConfig{Dim: 1152, CondDim: 1152, Bias: true, GammaPlusOne: true}, 8, 256, true},
	{"tiny", xattn.FiLMConfig{Dim: 512, CondDim: 512, Bias: true}, 1, 10, false},
}

// BenchmarkFiLM times ForwardInto with reused buffers on every backend and
// reports GFLOP/s, and the bandwidth of reading x and writing y (the limit
// of the modulation).
func BenchmarkFiLM(b *testing.B) {
	for _, bs := range filmBenchShapes {
		if bs.large && (testing.Short() || raceEnabled) {
			continue
		}
		for _, be := range blas.All() {
			b.Run("shape="+bs.name+"/backend="+be.Name(), func(b *testing.B) {
				w, err := xattn.NewFiLMWeights(bs.cfg, 1)
				if err != nil {
					b.Fatal(err)
				}
				f, err := xattn.NewFiLM(bs.cfg, w, xattn.WithBackend(be))
				if err != nil {
					b.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				x := randn(rng, bs.batch*bs.t*bs.cfg.Dim)
				cond := randn(rng, bs.batch*bs.cfg.CondDim)
				y := make([]float32, len(x))
				if err := f.ForwardInto(y, x, cond, bs.batch, bs.t); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(8 * len(x)))
				b.ReportAllocs()
				for b.Loop() {
					if err := f.ForwardInto(y, x, cond, bs.batch, bs.t); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(f.FLOPs(bs.batch, bs.t)*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
	}
}
