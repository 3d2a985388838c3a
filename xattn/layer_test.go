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

// tolerance is the bound the differential tests hold every backend to:
//
//	max |y − ref| ≤ 1e-5 · max(1, ‖ref‖∞)
//
// The float32 path rounds each product of the projections (up to 768 terms
// here), the scores (up to 160), the softmax and P·V (up to 1000+ keys) and the
// output projection; with inputs of unit size and weights of PyTorch's
// 1/√n scale every partial sum stays O(1). The worst error measured over the
// sweep is 2.2e-7·max(1, ‖ref‖∞) (the test logs it), so 1e-5 leaves ample room
// for other CPUs' summation orders while any wrong index, mask or missing
// rescale (errors of order ‖ref‖∞) still fails it.
func tolerance(norm float64) float64 { return 1e-5 * math.Max(1, norm) }

type route int

const (
	routeCross   route = iota // ForwardInto(x, context)
	routeSelf                 // ForwardInto(x, nil)
	routeQKV                  // ForwardQKV(x, key, value)
	routeSelfDoc              // ForwardSelfDoc(x, context)
)

func (r route) String() string {
	return [...]string{"cross", "self", "qkv", "selfdoc"}[r]
}

type maskKind int

const (
	maskNone maskKind = iota
	maskKeyLen
	maskCausal
	maskKeep
	maskBias
	maskAll
	maskWindow     // a sliding window, top-left or bottom-right
	maskLowerRight // bottom-right causal
	maskALiBi      // ALiBi, standard or given slopes, causal or not
	maskStructAll  // every structural part with KeyLen, Keep and Bias
)

// maskKinds is the number of mask kinds.
const maskKinds = int(maskStructAll) + 1

func (k maskKind) String() string {
	return [...]string{"none", "keylen", "causal", "keep", "bias", "all", "window", "lowerright", "alibi", "structall"}[k]
}

type sweepCase struct {
	cfg   xattn.Config
	shape xattn.Shape
	route route
	mask  maskKind
}

func (c sweepCase) name() string {
	r := resolved(c.cfg)
	return fmt.Sprintf("B=%d/Tq=%d/Tk=%d/H=%d/G=%d/dk=%d/dv=%d/D=%d-%d-%d/bias=%t/route=%s/mask=%s",
		c.shape.Batch, c.shape.Tq, c.shape.Tk, r.Heads, r.KVHeads, r.HeadDim, r.ValueHeadDim,
		r.QueryDim, r.ContextDim, r.OutDim, r.Bias, c.route, c.mask)
}

// inputs makes the inputs of a case and the matching reference output.
type caseData struct {
	w          *xattn.Weights
	xq, xk, xv []float32
	mask       *xattn.Mask
	want       []float64
}

func makeCase(t testing.TB, c sweepCase, seed uint64) caseData {
	t.Helper()
	w, err := xattn.NewWeights(c.cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	return makeCaseW(t, c, seed, w)
}

// makeCaseW is makeCase with given weights.
func makeCaseW(t testing.TB, c sweepCase, seed uint64, w *xattn.Weights) caseData {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	r := resolved(c.cfg)
	s := c.shape
	var d caseData
	d.w = w
	d.xq = randn(rng, s.Batch*s.Tq*r.QueryDim)
	switch c.route {
	case routeSelf:
		d.xk, d.xv = d.xq, d.xq
	case routeCross:
		d.xk = randn(rng, s.Batch*s.Tk*r.ContextDim)
		d.xv = d.xk
	case routeQKV:
		d.xk = randn(rng, s.Batch*s.Tk*r.ContextDim)
		d.xv = randn(rng, s.Batch*s.Tk*r.ValueDim)
	case routeSelfDoc:
		d.xk = randn(rng, s.Batch*s.Tk*r.ContextDim)
		d.xv = d.xq
	}
	d.mask = makeMask(rng, c.mask, s, r.Heads)
	d.want = attentionRef64(c.cfg, w, d.xq, d.xk, d.xv, s, d.mask)
	return d
}

// makeMask draws a mask of the given kind; broadcast dimensions vary with the
// random stream so that the sweep covers both full and broadcast layouts.
func makeMask(rng *rand.Rand, k maskKind, s xattn.Shape, heads int) *xattn.Mask {
	if k == maskNone {
		return nil
	}
	m := &xattn.Mask{}
	pick := func(full int) int {
		if rng.IntN(2) == 0 {
			return 1
		}
		return full
	}
	if k >= maskWindow {
		structMask(rng, k, s, heads, m)
		if k != maskStructAll {
			return m
		}
	}
	if k == maskKeyLen || k == maskAll || k == maskStructAll {
		m.KeyLen = make([]int, s.Batch)
		for b := range m.KeyLen {
			m.KeyLen[b] = rng.IntN(s.Tk + 1)
		}
		m.KeyLen[0] = s.Tk // one full row, one possibly empty
	}
	if k == maskCausal || k == maskAll {
		m.Causal = true
	}
	if k == maskKeep || k == maskAll || k == maskStructAll {
		kb, kh, kr := pick(s.Batch), pick(heads), pick(s.Tq)
		data := make([]bool, kb*kh*kr*s.Tk)
		for i := range data {
			data[i] = rng.IntN(4) != 0
		}
		// A fully masked row for every (batch, head) the mask has.
		if len(data) > 0 {
			for i := 0; i < s.Tk; i++ {
				data[i] = false
			}
		}
		m.Keep = &xattn.KeepMask{Data: data, Batch: kb, Heads: kh, Rows: kr}
	}
	if k == maskBias || k == maskAll || k == maskStructAll {
		bb, bh, br := pick(s.Batch), pick(heads), pick(s.Tq)
		data := make([]float32, bb*bh*br*s.Tk)
		for i := range data {
			data[i] = float32(rng.NormFloat64())
			if rng.IntN(8) == 0 {
				data[i] = float32(math.Inf(-1))
			}
		}
		m.Bias = &xattn.BiasMask{Data: data, Batch: bb, Heads: bh, Rows: br}
	}
	return m
}

// run computes the case on l.
func runCase(l *xattn.Layer, c sweepCase, d caseData) ([]float32, error) {
	r := l.Config()
	y := make([]float32, c.shape.Batch*c.shape.Tq*r.OutDim)
	var err error
	switch c.route {
	case routeCross:
		err = l.ForwardInto(y, d.xq, d.xk, c.shape, d.mask)
	case routeSelf:
		err = l.ForwardInto(y, d.xq, nil, c.shape, d.mask)
	case routeQKV:
		err = l.ForwardQKV(y, d.xq, d.xk, d.xv, c.shape, d.mask)
	case routeSelfDoc:
		err = l.ForwardSelfDoc(y, d.xq, d.xk, c.shape, d.mask)
	}
	return y, err
}

// sweep returns the seeded differential sweep of the foundation issue: B ∈
// {1,3}, Tq, Tk ∈ {1,2,7,77,130,1000+}, HeadDim ∈ {1,8,40,64,72,80,160}, Heads ∈
// {1,3,8}, distinct QueryDim, ContextDim and OutDim, with and without bias,
// every mask kind and route. Every value of every axis appears; the
// combinations are drawn from a fixed stream.
func sweep(short bool) []sweepCase {
	rng := rand.New(rand.NewPCG(7, 11))
	bs := []int{1, 3}
	ts := []int{1, 2, 7, 77, 130, 1031}
	dhs := []int{1, 8, 40, 64, 72, 80, 160}
	hs := []int{1, 3, 8}
	n := 64
	if short {
		n = 24
	}
	var cases []sweepCase
	for i := 0; i < n; i++ {
		route := route(i % 4)
		mk := maskKind((i / 4) % 6)
		tq, tk := ts[i%len(ts)], ts[(i*5+1)%len(ts)]
		b := bs[i%2]
		// Keep the float64 reference affordable: one long axis at a time.
		if tq > 200 && tk > 200 {
			tk = ts[rng.IntN(4)]
		}
		if route == routeSelf || route == routeSelfDoc {
			tk = tq
		}
		if b*tq*tk > 200000 {
			b = 1
		}
		h := hs[i%len(hs)]
		dh := dhs[i%len(dhs)]
		cfg := xattn.Config{
			QueryDim:   16 + rng.IntN(48),
			ContextDim: 8 + rng.IntN(40),
			OutDim:     4 + rng.IntN(40),
			Heads:      h,
			HeadDim:    dh,
			Bias:       i%3 != 0,
		}
		switch route {
		case routeSelf:
			cfg.ContextDim = 0
		case routeQKV:
			cfg.ValueDim = 5 + rng.IntN(30)
		case routeSelfDoc:
			cfg.ValueDim = cfg.QueryDim
		}
		if i%5 == 4 && h%1 == 0 {
			cfg.ValueHeadDim = 1 + rng.IntN(24) // dv ≠ dk
		}
		cases = append(cases, sweepCase{cfg, xattn.Shape{Batch: b, Tq: tq, Tk: tk}, route, mk})
	}
	return cases
}

// TestForwardMatchesReference is the differential sweep, on every backend.
func TestForwardMatchesReference(t *testing.T) {
	worst := 0.0
	for i, c := range sweep(testing.Short() || raceEnabled) {
		d := makeCase(t, c, uint64(i))
		for _, be := range blas.All() {
			t.Run("backend="+be.Name()+"/"+c.name(), func(t *testing.T) {
				// Small tiles and a zero serial threshold force several
				// query and key blocks and the multi-worker path, and the
				// absorbed form wherever it is less work; the last plan
				// forbids it, so those cases also run projected.
				worst = math.Max(worst, checkPlans(t, c, d,
					[]xattn.Option{xattn.WithBackend(be)},
					[]xattn.Option{xattn.WithBackend(be), xattn.WithThreads(3), xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0)},
					[]xattn.Option{xattn.WithBackend(be), xattn.WithThreads(3), xattn.WithTile(5, 16), xattn.WithSerialFLOPs(0), xattn.WithAbsorb(false)}))
			})
		}
	}
	t.Logf("worst relative error over the sweep: %.3g", worst)
}

// checkPlans runs case c on a layer made with each of the option lists and
// holds it against the reference; it returns the worst error relative to
// max(1, ‖ref‖∞).
func checkPlans(t *testing.T, c sweepCase, d caseData, plans ...[]xattn.Option) float64 {
	t.Helper()
	worst := 0.0
	for _, opts := range plans {
		l, err := xattn.New(c.cfg, d.w, opts...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := runCase(l, c, d)
		if err != nil {
			t.Fatalf("%v: %v", l, err)
		}
		diff, norm := maxAbsDiff(got, d.want)
		if diff > tolerance(norm) || math.IsNaN(diff) {
			t.Fatalf("%v: max |y−ref| = %.3g, ‖ref‖∞ = %.3g, bound %.3g", l, diff, norm, tolerance(norm))
		}
		worst = math.Max(worst, diff/math.Max(1, norm))
	}
	return worst
}

// TestBackendsAgree compares every backend with the first on the same inputs.
func TestBackendsAgree(t *testing.T) {
	all := blas.All()
	if len(all) < 2 {
		t.Skip("one backend in this build")
	}
	c := sweepCase{xattn.Config{QueryDim: 48, ContextDim: 40, OutDim: 24, Heads: 3, HeadDim: 40, Bias: true},
		xattn.Shape{Batch: 2, Tq: 77, Tk: 130}, routeCross, maskAll}
	d := makeCase(t, c, 99)
	var first []float32
	for _, be := range all {
		l, err := xattn.New(c.cfg, d.w, xattn.WithBackend(be))
		if err != nil {
			t.Fatal(err)
		}
		got, err := runCase(l, c, d)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = got
			continue
		}
		_, norm := maxAbsDiff(got, d.want)
		for i := range got {
			if diff := math.Abs(float64(got[i] - first[i])); diff > 2*tolerance(norm) {
				t.Fatalf("backend %s vs %s: y[%d] = %v vs %v", be.Name(), all[0].Name(), i, got[i], first[i])
			}
		}
	}
}

// TestFullyMaskedRows checks that rows with no key give exactly the output
// bias (attention output 0), with no NaN, for each way a row can lose every key.
func TestFullyMaskedRows(t *testing.T) {
	cfg := xattn.Config{QueryDim: 16, ContextDim: 12, Heads: 2, HeadDim: 8, Bias: true}
	w, err := xattn.NewWeights(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 5}
	rng := rand.New(rand.NewPCG(1, 2))
	x := randn(rng, 2*3*16)
	ctx := randn(rng, 2*5*12)
	negInf := float32(math.Inf(-1))
	allBias := make([]float32, 5)
	for i := range allBias {
		allBias[i] = negInf
	}
	for _, tc := range []struct {
		name string
		m    *xattn.Mask
		rows []int // fully masked rows of y, as b*Tq+i
	}{
		{"keylen=0", &xattn.Mask{KeyLen: []int{5, 0}}, []int{3, 4, 5}},
		{"keep=false", &xattn.Mask{Keep: &xattn.KeepMask{Data: make([]bool, 5), Batch: 1, Heads: 1, Rows: 1}}, []int{0, 1, 2, 3, 4, 5}},
		{"bias=-inf", &xattn.Mask{Bias: &xattn.BiasMask{Data: allBias, Batch: 1, Heads: 1, Rows: 1}}, []int{0, 1, 2, 3, 4, 5}},
		{"tk=0", nil, []int{0, 1, 2, 3, 4, 5}},
	} {
		for _, be := range blas.All() {
			t.Run("backend="+be.Name()+"/mask="+tc.name, func(t *testing.T) {
				l, err := xattn.New(cfg, w, xattn.WithBackend(be))
				if err != nil {
					t.Fatal(err)
				}
				ss, c := s, ctx
				if tc.name == "tk=0" {
					ss.Tk, c = 0, []float32{}
				}
				y, err := l.Forward(x, c, ss, tc.m)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range y {
					if math.IsNaN(float64(v)) {
						t.Fatal("NaN in output")
					}
				}
				for _, r := range tc.rows {
					for j := 0; j < 16; j++ {
						if got := y[r*16+j]; got != w.OutBias[j] {
							t.Fatalf("row %d col %d = %v, want the output bias %v exactly", r, j, got, w.OutBias[j])
						}
					}
				}
			})
		}
	}
}

// TestConcurrent shares one Layer among 16 goroutines, each with its own
// shapes and masks, and checks every result against the reference. Run it
// under -race.
func TestConcurrent(t *testing.T) {
	cfg := xattn.Config{QueryDim: 32, ContextDim: 24, OutDim: 16, Heads: 4, HeadDim: 8, Bias: true}
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			w, err := xattn.NewWeights(cfg, 5)
			if err != nil {
				t.Fatal(err)
			}
			l, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(4), xattn.WithTile(8, 16), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			const goroutines = 16
			testutil.Parallel(t, goroutines, func(gi int) func() error {
				c := sweepCase{cfg, xattn.Shape{Batch: 1 + gi%3, Tq: 5 + gi, Tk: 17 + 3*gi}, routeCross, maskKind(gi % 6)}
				d := makeCaseW(t, c, uint64(100+gi), w)
				return func() error {
					for rep := 0; rep < 20; rep++ {
						got, err := runCase(l, c, d)
						if err != nil {
							return err
						}
						if diff, norm := maxAbsDiff(got, d.want); diff > tolerance(norm) {
							return fmt.Errorf("goroutine %d rep %d: max diff %.3g", gi, rep, diff)
						}
					}
					return nil
				}
			})
		})
	}
}

// TestForwardIntoAllocs shows the steady state of ForwardInto allocates
// nothing, on the serial and the multi-worker path, with every mask kind.
func TestForwardIntoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	cfg := xattn.Config{QueryDim: 64, ContextDim: 48, Heads: 4, HeadDim: 16, Bias: true}
	c := sweepCase{cfg, xattn.Shape{Batch: 2, Tq: 40, Tk: 70}, routeCross, maskAll}
	d := makeCase(t, c, 1)
	for _, be := range blas.All() {
		// Query tiles of 16 rows run phase by phase; of 6, 14 blocks of rows
		// take the fused path where the backend packs its weights.
		for _, mode := range []struct {
			serial bool
			qTile  int
		}{{true, 16}, {false, 16}, {false, 6}} {
			serial := mode.serial
			t.Run(fmt.Sprintf("backend=%s/serial=%t/qtile=%d", be.Name(), serial, mode.qTile), func(t *testing.T) {
				l, err := xattn.New(cfg, d.w, xattn.WithBackend(be), xattn.WithThreads(2), xattn.WithTile(mode.qTile, 32), serialOpt(serial))
				if err != nil {
					t.Fatal(err)
				}
				checkNoAllocs(t, l, c, &d, 50)
			})
		}
	}
}

// serialOpt is the option that runs every call of a layer on the caller
// (serial), or every call on the layer's threads.
func serialOpt(serial bool) xattn.Option {
	if serial {
		return xattn.WithSerialFLOPs(1e18)
	}
	return xattn.WithSerialFLOPs(0)
}

// checkNoAllocs fails t unless ForwardInto of case c on l allocates
// nothing once warm (runs calls counted).
func checkNoAllocs(t *testing.T, l *xattn.Layer, c sweepCase, d *caseData, runs int) {
	t.Helper()
	y := make([]float32, c.shape.Batch*c.shape.Tq*l.Config().OutDim)
	run := func() {
		if err := l.ForwardInto(y, d.xq, d.xk, c.shape, d.mask); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if n := testing.AllocsPerRun(runs, run); n != 0 {
		t.Fatalf("ForwardInto allocates %v times per call", n)
	}
}

// TestBuffersUntouched checks that inputs are unchanged and that nothing is
// written outside y: y sits between NaN guard bands.
func TestBuffersUntouched(t *testing.T) {
	cfg := xattn.Config{QueryDim: 24, ContextDim: 20, OutDim: 12, Heads: 2, HeadDim: 8}
	c := sweepCase{cfg, xattn.Shape{Batch: 2, Tq: 9, Tk: 13}, routeCross, maskAll}
	d := makeCase(t, c, 4)
	for _, be := range blas.All() {
		t.Run("backend="+be.Name(), func(t *testing.T) {
			l, err := xattn.New(cfg, d.w, xattn.WithBackend(be))
			if err != nil {
				t.Fatal(err)
			}
			xq, xk := append([]float32(nil), d.xq...), append([]float32(nil), d.xk...)
			y, intact := testutil.Guarded(2*9*12, 37)
			if err := l.ForwardInto(y, d.xq, d.xk, c.shape, d.mask); err != nil {
				t.Fatal(err)
			}
			testutil.CheckWritten(t, "y", y, intact)
			if !testutil.SameBits(xq, d.xq) || !testutil.SameBits(xk, d.xk) {
				t.Fatal("x or context changed")
			}
		})
	}
}

// TestErrors feeds every kind of bad input a caller can pass and checks the
// sentinel; none may panic. TestHostile runs the same cases with a bound on
// what each may allocate.
func TestErrors(t *testing.T) {
	for _, tc := range layerErrorCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			err := noPanic(t, func() error { return tc.call() })
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			t.Log(err)
		})
	}
}

// errorCase is a call that must fail with an error wrapping err.
type errorCase struct {
	name string
	err  error
	call func() error
}

// layerErrorCases are the bad inputs of TestErrors.
func layerErrorCases(t *testing.T) []errorCase {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 4}
	x := make([]float32, 2*3*8)
	ctx := make([]float32, 2*4*6)
	y := make([]float32, 2*3*8)
	nanBias := make([]float32, 4)
	nanBias[2] = float32(math.NaN())
	infBias := make([]float32, 4)
	infBias[1] = float32(math.Inf(1))
	fwd := func(y, x, ctx []float32, s xattn.Shape, m *xattn.Mask) func() error {
		return func() error { return l.ForwardInto(y, x, ctx, s, m) }
	}
	selfCfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	sw, _ := xattn.NewWeights(selfCfg, 1)
	self, _ := xattn.New(selfCfg, sw)

	return []errorCase{
		{"config/zero", xattn.ErrConfig, func() error { _, err := xattn.New(xattn.Config{}, w); return err }},
		{"config/negative heads", xattn.ErrConfig, func() error { _, err := xattn.New(xattn.Config{QueryDim: 8, Heads: -1, HeadDim: 4}, w); return err }},
		{"config/negative outdim", xattn.ErrConfig, func() error {
			_, err := xattn.New(xattn.Config{QueryDim: 8, Heads: 1, HeadDim: 4, OutDim: -3}, w)
			return err
		}},
		{"config/heads overflow", xattn.ErrConfig, func() error {
			_, err := xattn.New(xattn.Config{QueryDim: 8, Heads: 1 << 40, HeadDim: 1 << 40}, w)
			return err
		}},
		{"config/kvheads", xattn.ErrConfig, func() error {
			_, err := xattn.New(xattn.Config{QueryDim: 8, Heads: 3, KVHeads: 2, HeadDim: 4}, w)
			return err
		}},
		{"config/scale NaN", xattn.ErrConfig, func() error {
			_, err := xattn.New(xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4, Scale: float32(math.NaN())}, w)
			return err
		}},
		{"option/threads", xattn.ErrConfig, func() error { _, err := xattn.New(cfg, w, xattn.WithThreads(0)); return err }},
		{"option/tile", xattn.ErrConfig, func() error { _, err := xattn.New(cfg, w, xattn.WithTile(0, 8)); return err }},
		{"option/backend", xattn.ErrConfig, func() error { _, err := xattn.New(cfg, w, xattn.WithBackend(nil)); return err }},
		{"option/serial", xattn.ErrConfig, func() error {
			_, err := xattn.New(cfg, w, xattn.WithSerialFLOPs(math.NaN()))
			return err
		}},
		{"weights/nil", xattn.ErrWeights, func() error { _, err := xattn.New(cfg, nil); return err }},
		{"weights/short Q", xattn.ErrWeights, func() error {
			w2 := *w
			w2.Q = w2.Q[1:]
			_, err := xattn.New(cfg, &w2)
			return err
		}},
		{"weights/unexpected bias", xattn.ErrWeights, func() error {
			w2 := *w
			w2.QBias = make([]float32, 8)
			_, err := xattn.New(cfg, &w2)
			return err
		}},
		{"weights/NaN", xattn.ErrWeights, func() error {
			w2 := *w
			w2.K = append([]float32(nil), w.K...)
			w2.K[3] = float32(math.NaN())
			_, err := xattn.New(cfg, &w2)
			return err
		}},
		{"shape/negative", xattn.ErrShape, fwd(y, x, ctx, xattn.Shape{Batch: -1, Tq: 3, Tk: 4}, nil)},
		{"shape/short x", xattn.ErrShape, fwd(y, x[1:], ctx, s, nil)},
		{"shape/long context", xattn.ErrShape, fwd(y, x, append(ctx, 0), s, nil)},
		{"shape/short y", xattn.ErrShape, fwd(y[:5], x, ctx, s, nil)},
		{"shape/batch mismatch", xattn.ErrShape, fwd(y, x, ctx, xattn.Shape{Batch: 3, Tq: 2, Tk: 4}, nil)},
		{"shape/overflow", xattn.ErrShape, fwd(y, x, ctx, xattn.Shape{Batch: 1 << 40, Tq: 1 << 40, Tk: 4}, nil)},
		{"shape/self needs equal dims", xattn.ErrShape, fwd(y, x, nil, s, nil)},
		{"shape/self Tk", xattn.ErrShape, func() error {
			return self.ForwardInto(y, x, nil, xattn.Shape{Batch: 2, Tq: 3, Tk: 2}, nil)
		}},
		{"shape/selfdoc Tq≠Tk", xattn.ErrShape, func() error { return l.ForwardSelfDoc(y, x, ctx, s, nil) }},
		{"shape/forward overflow", xattn.ErrShape, func() error {
			_, err := l.Forward(x, ctx, xattn.Shape{Batch: 1 << 62, Tq: 1 << 62, Tk: 1}, nil)
			return err
		}},
		{"mask/keylen count", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{KeyLen: []int{4}})},
		{"mask/keylen range", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{KeyLen: []int{4, 5}})},
		{"mask/keylen negative", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{KeyLen: []int{-1, 2}})},
		{"mask/keep length", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{Keep: &xattn.KeepMask{Data: make([]bool, 5), Batch: 1, Heads: 1, Rows: 1}})},
		{"mask/keep heads", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{Keep: &xattn.KeepMask{Data: make([]bool, 3*4), Batch: 1, Heads: 3, Rows: 1}})},
		{"mask/bias rows", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{Bias: &xattn.BiasMask{Data: make([]float32, 2*4), Batch: 1, Heads: 1, Rows: 2}})},
		{"mask/bias NaN", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{Bias: &xattn.BiasMask{Data: nanBias, Batch: 1, Heads: 1, Rows: 1}})},
		{"mask/bias +Inf", xattn.ErrMask, fwd(y, x, ctx, s, &xattn.Mask{Bias: &xattn.BiasMask{Data: infBias, Batch: 1, Heads: 1, Rows: 1}})},
	}
}

// TestEmpty checks that empty batches and sequences are valid no-ops.
func TestEmpty(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []xattn.Shape{{0, 3, 4}, {2, 0, 4}} {
		y, err := l.Forward(make([]float32, s.Batch*s.Tq*8), make([]float32, s.Batch*s.Tk*6), s, nil)
		if err != nil || len(y) != 0 {
			t.Fatalf("%+v: y=%v err=%v", s, y, err)
		}
	}
}

// TestNewWeightsDistribution checks PyTorch's default Linear initialisation:
// uniform in ±1/√in, mean 0, variance 1/(3·in), reproducible from the seed.
func TestNewWeightsDistribution(t *testing.T) {
	cfg := xattn.Config{QueryDim: 256, ContextDim: 64, Heads: 4, HeadDim: 32, Bias: true}
	w, err := xattn.NewWeights(cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := xattn.NewWeights(cfg, 42)
	w3, _ := xattn.NewWeights(cfg, 43)
	if w.Q[17] != w2.Q[17] || w.Q[17] == w3.Q[17] {
		t.Fatal("seeding is not reproducible or ignores the seed")
	}
	for _, tc := range []struct {
		name string
		v    []float32
		in   int
	}{{"Q", w.Q, 256}, {"K", w.K, 64}, {"QBias", w.QBias, 256}, {"Out", w.Out, 128}} {
		bound := 1 / math.Sqrt(float64(tc.in))
		var sum, sq float64
		for _, v := range tc.v {
			if math.Abs(float64(v)) > bound {
				t.Fatalf("%s: %v outside ±%v", tc.name, v, bound)
			}
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
		n := float64(len(tc.v))
		mean, variance := sum/n, sq/n-(sum/n)*(sum/n)
		want := bound * bound / 3
		if math.Abs(mean) > 5*math.Sqrt(want/n) || math.Abs(variance-want) > 0.1*want+5*want/math.Sqrt(n) {
			t.Errorf("%s: mean %.3g variance %.3g, want 0 and %.3g", tc.name, mean, variance, want)
		}
	}
}
