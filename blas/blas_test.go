package blas

import (
	"fmt"
	"math"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

// variant is one implementation of the row pass and attention core: a
// variant table of the OpenBLAS backend's C code ("avx512", "avx2",
// "scalar", "rows=avx512,gemm=openblas", …) or the pure backend ("pure").
// ok is false when this CPU cannot run it; packs is true when its products
// read packed weights (Pack returns them).
type variant struct {
	name  string
	be    Backend
	ok    bool
	packs bool
}

// forVariants runs f on every row pass variant in a sub-test
// backend=…/isa=…, skipping those the CPU lacks.
func forVariants(t *testing.T, f func(t *testing.T, be Backend)) {
	for _, v := range variants() {
		t.Run("backend="+v.be.Name()+"/isa="+v.name, func(t *testing.T) {
			if !v.ok {
				t.Skipf("CPU lacks %s", v.name)
			}
			f(t, v.be)
		})
	}
}

// forBackends runs f on every backend of All() in a sub-test backend=….
func forBackends(t *testing.T, f func(t *testing.T, be Backend)) {
	for _, be := range All() {
		t.Run("backend="+be.Name(), func(t *testing.T) { f(t, be) })
	}
}

func TestAllDefault(t *testing.T) {
	all := All()
	if len(all) == 0 || all[0].Name() != Default().Name() {
		t.Fatalf("All() = %v, want Default() %q first", all, Default().Name())
	}
	if all[len(all)-1].Name() != "pure" {
		t.Errorf("All() does not end with pure")
	}
	info := OpenBLASInfo()
	if info.Linked != haveOpenBLAS {
		t.Errorf("OpenBLASInfo().Linked = %v, want %v", info.Linked, haveOpenBLAS)
	}
	if !haveOpenBLAS && info != (Info{}) {
		t.Errorf("OpenBLASInfo() = %+v without OpenBLAS, want zero", info)
	}
	if haveOpenBLAS && (info.Config == "" || info.CoreName == "" || info.Threads != 1 || info.RowPass == "") {
		t.Errorf("OpenBLASInfo() = %+v, want config, core name, 1 thread and a row pass", info)
	}
}

// sgemmShape is the shape part of a Sgemm test case.
type sgemmShape struct {
	count, m, n, k int
	// heads lays the items out as column blocks of one matrix (LDA =
	// count·K + pad, StrideA = K), else as matrices one after another with
	// a gap between them.
	heads bool
}

func TestSgemm(t *testing.T) {
	small := []sgemmShape{
		{1, 1, 1, 1, false}, {1, 7, 13, 5, false}, {1, 17, 3, 11, false},
		{3, 5, 4, 3, false}, {4, 7, 5, 6, true}, {1, 3, 4, 0, false}, {2, 3, 4, 0, true},
		{1, 0, 5, 3, false}, {1, 4, 0, 3, false}, {0, 3, 3, 3, false}, {2, 2, 3, 1, false},
	}
	big := []sgemmShape{
		{1, 63, 64, 65, false}, {1, 65, 63, 64, false}, {1, 64, 64, 64, false},
		{2, 63, 65, 64, true}, {3, 64, 65, 63, false}, {1, 191, 193, 192, false}, {1, 193, 191, 64, false},
	}
	type scalars struct {
		alpha, beta float32
		bias        bool
	}
	var all []scalars
	for _, alpha := range []float32{0, 1, -0.7} {
		for _, beta := range []float32{0, 1, 1.3} {
			for _, bias := range []bool{false, true} {
				all = append(all, scalars{alpha, beta, bias})
			}
		}
	}
	few := []scalars{{1, 0, false}, {-0.7, 1.3, true}, {1, 1, false}}

	type tcase struct {
		name   string
		shape  sgemmShape
		transB bool
		pad    int
		sc     scalars
	}
	var cases []tcase
	add := func(shapes []sgemmShape, scs []scalars, pads []int) {
		for _, sh := range shapes {
			for _, transB := range []bool{false, true} {
				for _, pad := range pads {
					for _, sc := range scs {
						name := fmt.Sprintf("count=%d/M=%d/N=%d/K=%d/heads=%v/transB=%v/pad=%d/alpha=%g/beta=%g/bias=%v",
							sh.count, sh.m, sh.n, sh.k, sh.heads, transB, pad, sc.alpha, sc.beta, sc.bias)
						cases = append(cases, tcase{name, sh, transB, pad, sc})
					}
				}
			}
		}
	}
	add(small, all, []int{0, 3})
	add(big, few, []int{0, 5})

	forBackends(t, func(t *testing.T, be Backend) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if (testing.Short() || raceEnabled) && tc.shape.m*tc.shape.n*tc.shape.k > 1<<20 {
					t.Skip("large: not in -short or -race runs")
				}
				testSgemm(t, be, tc.shape, tc.transB, tc.pad, tc.sc.alpha, tc.sc.beta, tc.sc.bias, false)
			})
		}
	})
}

// TestSgemmPacked runs single products against weights prepared by the
// backend's Pack, on every variant: row counts around the kernel's 6-row
// strips, column counts around its 16-lane vectors and 64-column panels.
func TestSgemmPacked(t *testing.T) {
	forVariants(t, func(t *testing.T, be Backend) {
		for _, m := range []int{1, 5, 6, 7, 13, 100} {
			for _, n := range []int{1, 15, 16, 17, 40, 64, 65, 130, 320} {
				for _, k := range []int{1, 3, 40, 77, 300} {
					for _, sc := range []struct {
						alpha, beta float32
						bias        bool
					}{{1, 0, true}, {-0.7, 1.3, false}} {
						name := fmt.Sprintf("M=%d/N=%d/K=%d/alpha=%g/beta=%g/bias=%v", m, n, k, sc.alpha, sc.beta, sc.bias)
						t.Run(name, func(t *testing.T) {
							testSgemm(t, be, sgemmShape{1, m, n, k, false}, true, 0, sc.alpha, sc.beta, sc.bias, true)
						})
					}
				}
			}
		}
	})
}

// mustPanic fails t unless f panics with want.
func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if got := recover(); got != want {
			t.Errorf("panic %v, want %q", got, want)
		}
	}()
	f()
}

// TestPack checks what Pack returns: the zero Packed where the backend reads
// B as it is, the AVX-512 kernel's panels otherwise; its views (Cols,
// Items) and sizes; and its panics.
func TestPack(t *testing.T) {
	w := make([]float32, 70*3)
	testutil.Fill(newRand(3), w, -1, 1)
	for _, v := range variants() {
		if !v.ok {
			continue
		}
		rows, cols := v.be.Steps()
		if rows < 1 || cols < 1 {
			t.Errorf("%s: Steps() = %d, %d, want positive", v.name, rows, cols)
		}
		p := v.be.Pack(w, 70, 3)
		if !v.packs {
			if !p.IsZero() {
				t.Errorf("%s: Pack returned %d bytes, want the zero Packed", v.name, p.Bytes())
			}
			continue
		}
		if p.N() != 70 || p.K() != 3 || p.Count() != 1 || p.Bytes() != 4*128*3 || cols != 64 {
			t.Fatalf("%s: Pack returned %d×%d (%d items, %d bytes), panels of %d; want 70×3, 1, %d, 64",
				v.name, p.N(), p.K(), p.Count(), p.Bytes(), cols, 4*128*3)
		}
		for j := range 128 {
			for q := range 3 {
				want := float32(0)
				if j < 70 {
					want = w[j*3+q]
				}
				if got := p.f32[j/64*64*3+q*64+j%64]; got != want {
					t.Fatalf("%s: packed (%d, %d) = %v, want %v", v.name, q, j, got, want)
				}
			}
		}
		if c, ok := p.Cols(64, 6); !ok || c.N() != 6 || c.panels(64)[0] != w[64*3] {
			t.Errorf("%s: Cols(64, 6) = %d columns, %v", v.name, c.N(), ok)
		}
		for _, jn := range [][2]int{{1, 6}, {63, 7}, {64, 7}, {0, 0}, {-64, 6}, {0, 71}} {
			if c, ok := p.Cols(jn[0], jn[1]); ok || !c.IsZero() {
				t.Errorf("%s: Cols(%d, %d) has a view", v.name, jn[0], jn[1])
			}
		}
		if c, ok := p.Items(0, 1); !ok || c.Count() != 1 {
			t.Errorf("%s: Items(0, 1) = %d items, %v", v.name, c.Count(), ok)
		}
		if _, ok := p.Items(1, 1); ok {
			t.Errorf("%s: Items(1, 1) of one item has a view", v.name)
		}
		if !v.be.Pack(w, 0, 3).IsZero() || !v.be.Pack(nil, 4, 0).IsZero() {
			t.Errorf("%s: Pack of an empty matrix is not zero", v.name)
		}
		// A view of another shape, or a Packed where B is not packable.
		g := &Batch{Count: 1, M: 2, N: 70, K: 3, TransB: true, Alpha: 1, A: w[:6], LDA: 3, B: w, LDB: 3,
			C: make([]float32, 140), LDC: 70}
		g.Packed, _ = p.Cols(0, 69)
		mustPanic(t, errPacked, func() { v.be.Sgemm(g) })
		g.Packed, g.TransB, g.LDB = p, false, 70
		mustPanic(t, errPacked, func() { v.be.Sgemm(g) })
	}
	for _, be := range All() {
		mustPanic(t, errShortB, func() { be.Pack(w, 71, 3) })
		mustPanic(t, errDim, func() { be.Pack(w, -1, 3) })
	}
}

// testSgemm runs one Sgemm case on be and holds it against sgemmRef64.
// With packed, B goes through be.Pack into Batch.Packed as well.
func testSgemm(t *testing.T, be Backend, sh sgemmShape, transB bool, pad int, alpha, beta float32, withBias, packed bool) {
	rng := newRand(uint64(sh.count*1000003 + sh.m*10007 + sh.n*101 + sh.k))
	g := &Batch{Count: sh.count, M: sh.m, N: sh.n, K: sh.k, TransB: transB, Alpha: alpha, Beta: beta}
	bRows, bCols := sh.k, sh.n
	if transB {
		bRows, bCols = sh.n, sh.k
	}
	// layout returns the leading dimension, the stride and the length of
	// count matrices rows×cols.
	layout := func(rows, cols, gap int) (ld, stride, length int) {
		if sh.heads {
			ld = max(1, sh.count*cols+pad)
			stride = cols
		} else {
			ld = max(1, cols) + pad
			stride = rows*ld + gap
		}
		if sh.count > 0 && rows > 0 && cols > 0 {
			length = need(sh.count, stride, rows, ld, cols)
		}
		return ld, stride, length
	}
	var la, lb, lc int
	g.LDA, g.StrideA, la = layout(sh.m, sh.k, 3)
	g.LDB, g.StrideB, lb = layout(bRows, bCols, 1)
	g.LDC, g.StrideC, lc = layout(sh.m, sh.n, 2)
	if la > 0 {
		g.A = make([]float32, la)
		testutil.Fill(rng, g.A, -1, 1)
	}
	if lb > 0 {
		g.B = make([]float32, lb)
		testutil.Fill(rng, g.B, -1, 1)
	}
	if withBias {
		g.Bias = make([]float32, sh.n)
		testutil.Fill(rng, g.Bias, -1, 1)
	}
	var checkGuards func() bool
	g.C, checkGuards = testutil.Guarded(lc, 16)
	owned := make([]bool, lc)
	for it := 0; it < sh.count; it++ {
		for i := 0; i < sh.m; i++ {
			for j := 0; j < sh.n; j++ {
				ci := it*g.StrideC + i*g.LDC + j
				owned[ci] = true
				if beta == 0 {
					g.C[ci] = float32(math.NaN()) // never read
				} else {
					g.C[ci] = 2*rng.Float32() - 1
				}
			}
		}
	}
	if packed {
		g.Packed = be.Pack(g.B, sh.n, sh.k)
	}
	var in snapshot
	in.floats(g.A, g.B, g.Bias, g.Packed.f32)
	want, scale := sgemmRef64(g)

	be.Sgemm(g)

	in.check(t)
	if !checkGuards() {
		t.Errorf("guard band around C overwritten")
	}
	bad := 0
	for i, got := range g.C {
		if !owned[i] {
			if !testutil.IsGuard(got) {
				t.Errorf("C[%d] = %v outside the products, want it untouched", i, got)
				bad++
			}
		} else if tol := testutil.ProductBound(sh.k+2, scale[i]) + 1e-35; !(math.Abs(float64(got)-want[i]) <= tol) {
			t.Errorf("C[%d] = %v, want %v ± %g", i, got, want[i], tol)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many errors")
		}
	}
}

// rowsCase is a SoftmaxRows test case: an M×N block with optional bias and
// keep views (0 none, 1 one row for all, ld 0; 2 a full view with padded
// leading dimension), a causal limit and a number of blocks run in a row on
// the same running state.
type rowsCase struct {
	m, n, pad  int
	bias, keep int
	negInf     bool // some bias entries are −Inf
	wide       bool // scores over [−250, 10]: exponentials that underflow to 0 or to subnormals
	causal     bool
	lim0       int
	blocks     int
}

func (c rowsCase) String() string {
	return fmt.Sprintf("M=%d/N=%d/pad=%d/bias=%d/keep=%d/negInf=%v/wide=%v/causal=%v/lim0=%d/blocks=%d",
		c.m, c.n, c.pad, c.bias, c.keep, c.negInf, c.wide, c.causal, c.lim0, c.blocks)
}

func rowsCases() []rowsCase {
	var cases []rowsCase
	for _, mn := range [][2]int{{1, 1}, {3, 7}, {2, 8}, {5, 16}, {4, 17}, {3, 31}, {6, 77}, {2, 130}} {
		m, n := mn[0], mn[1]
		for _, blocks := range []int{1, 3} {
			base := rowsCase{m: m, n: n, blocks: blocks}
			with := func(f func(c *rowsCase)) rowsCase { c := base; f(&c); return c }
			cases = append(cases,
				base,
				with(func(c *rowsCase) { c.pad = 5 }),
				with(func(c *rowsCase) { c.bias, c.pad = 2, 3 }),
				with(func(c *rowsCase) { c.bias, c.negInf = 1, true }),
				with(func(c *rowsCase) { c.bias, c.negInf = 2, true }),
				with(func(c *rowsCase) { c.keep = 2 }),
				with(func(c *rowsCase) { c.wide = true }),
				with(func(c *rowsCase) { c.wide, c.bias, c.negInf = true, 2, true }),
				with(func(c *rowsCase) { c.keep = 1 }),
				with(func(c *rowsCase) { c.causal, c.lim0 = true, -2 }),
				with(func(c *rowsCase) { c.causal, c.lim0 = true, n/2 }),
				with(func(c *rowsCase) { c.causal, c.lim0 = true, n+5 }),
				with(func(c *rowsCase) { c.causal, c.lim0 = true, -n-10 }),
				with(func(c *rowsCase) { c.bias, c.keep, c.negInf, c.causal, c.lim0, c.pad = 2, 2, true, true, 1, 2 }),
			)
		}
	}
	return cases
}

func TestSoftmaxRows(t *testing.T) {
	cases := rowsCases()
	forVariants(t, func(t *testing.T, be Backend) {
		for _, tc := range cases {
			t.Run(tc.String(), func(t *testing.T) { testSoftmaxRows(t, be, tc) })
		}
	})
}

// testSoftmaxRows runs the blocks of tc through be and softmaxRowsRef64 side
// by side.
func testSoftmaxRows(t *testing.T, be Backend, tc rowsCase) {
	rng := newRand(uint64(tc.m*1009 + tc.n*31 + tc.bias*7 + tc.keep*3 + tc.blocks))
	m, n := tc.m, tc.n
	lds := n + tc.pad
	st := make([]rowState, m)
	mx, checkMx := testutil.Guarded(m, 4)
	sum, checkSum := testutil.Guarded(m, 4)
	corr, checkCorr := testutil.Guarded(m, 4)
	for i := range m {
		st[i] = rowState{max: math.Inf(-1)}
		mx[i], sum[i] = float32(math.Inf(-1)), 0
	}
	count := 0
	vmax := 0.0
	for blk := range tc.blocks {
		r := &Rows{M: m, N: n, LDS: lds, Causal: tc.causal, Lim0: tc.lim0 - blk, Max: mx, Sum: sum, Corr: corr}
		var checkS func() bool
		r.S, checkS = testutil.Guarded(m*lds, 8)
		for i := range m {
			if tc.wide {
				testutil.Fill(rng, r.S[i*lds:i*lds+n], -250, 10)
			} else {
				testutil.Fill(rng, r.S[i*lds:i*lds+n], -4, 4)
			}
		}
		if tc.bias > 0 {
			r.LDBias = 0
			rows := 1
			if tc.bias == 2 {
				r.LDBias, rows = n+2, m
			}
			r.Bias = make([]float32, need(1, 0, rows, r.LDBias, n))
			testutil.Fill(rng, r.Bias, -2, 2)
			if tc.negInf {
				for i := range r.Bias {
					if rng.IntN(5) == 0 {
						r.Bias[i] = float32(math.Inf(-1))
					}
				}
			}
		}
		if tc.keep > 0 {
			r.LDKeep = 0
			rows := 1
			if tc.keep == 2 {
				r.LDKeep, rows = n+1, m
			}
			r.Keep = make([]bool, need(1, 0, rows, r.LDKeep, n))
			for i := range r.Keep {
				r.Keep[i] = rng.IntN(4) != 0
			}
			if tc.keep == 2 {
				// Row (blk mod m) sees nothing in this block.
				clear(r.Keep[(blk%m)*r.LDKeep:][:n])
			}
		}
		var in snapshot
		in.floats(r.Bias)
		in.bools(r.Keep)
		for i := range m {
			for j := range n {
				v := float64(r.S[i*lds+j])
				if r.Bias != nil {
					v += float64(r.Bias[i*r.LDBias+j])
				}
				if !math.IsInf(v, 0) {
					vmax = max(vmax, math.Abs(v))
				}
			}
		}
		want, wantCorr := softmaxRowsRef64(r, st)
		count += n

		be.SoftmaxRows(r)

		in.check(t)
		if !checkS() || !checkMx() || !checkSum() || !checkCorr() {
			t.Fatalf("block %d: guard band overwritten", blk)
		}
		// The exponent's argument carries the rounding of v and of the
		// maximum; the exponential itself is good to a few ulp.
		rtol := 0x1p-22 * (8 + 2*vmax)
		for i := range m {
			for j := range lds {
				got := r.S[i*lds+j]
				if j >= n {
					if !testutil.IsGuard(got) {
						t.Fatalf("block %d: S[%d,%d] = %v past N, want it untouched", blk, i, j, got)
					}
					continue
				}
				w := want[i*n+j]
				if w == 0 {
					if got != 0 {
						t.Fatalf("block %d: masked S[%d,%d] = %v, want 0", blk, i, j, got)
					}
				} else if !(math.Abs(float64(got)-w) <= rtol*w+testutil.ProbFloor) {
					t.Fatalf("block %d: S[%d,%d] = %v, want %v", blk, i, j, got, w)
				}
			}
			if !(math.Abs(float64(corr[i])-wantCorr[i]) <= rtol*wantCorr[i]+testutil.ProbFloor) {
				t.Errorf("block %d: Corr[%d] = %v, want %v", blk, i, corr[i], wantCorr[i])
			}
			if math.IsInf(st[i].max, -1) {
				if !math.IsInf(float64(mx[i]), -1) || sum[i] != 0 || corr[i] != 1 {
					t.Errorf("block %d: row %d saw no key, got max %v sum %v corr %v, want -Inf 0 1", blk, i, mx[i], sum[i], corr[i])
				}
				continue
			}
			if !(math.Abs(float64(mx[i])-st[i].max) <= 0x1p-23*math.Abs(st[i].max)) {
				t.Errorf("block %d: Max[%d] = %v, want %v", blk, i, mx[i], st[i].max)
			}
			if tol := (rtol + float64(count)*0x1p-23) * st[i].sum; !(math.Abs(float64(sum[i])-st[i].sum) <= tol) {
				t.Errorf("block %d: Sum[%d] = %v, want %v ± %g", blk, i, sum[i], st[i].sum, tol)
			}
		}
	}
}

func TestSoftmaxRowsEmpty(t *testing.T) {
	forVariants(t, func(t *testing.T, be Backend) {
		// N = 0: nothing to exponentiate, the state only passes through.
		ninf := float32(math.Inf(-1))
		mx := []float32{ninf, 2}
		sum := []float32{0, 3}
		corr := []float32{7, 7}
		// checkRows asks nothing of S when N = 0, but pure.SoftmaxRows
		// slices S row by row, so it gets rows of length LDS here.
		be.SoftmaxRows(&Rows{M: 2, N: 0, S: make([]float32, 2), LDS: 1, Max: mx, Sum: sum, Corr: corr})
		if mx[0] != ninf || mx[1] != 2 || sum[0] != 0 || sum[1] != 3 || corr[0] != 1 || corr[1] != 1 {
			t.Errorf("N=0: max %v sum %v corr %v, want [-Inf 2] [0 3] [1 1]", mx, sum, corr)
		}
		// M = 0 touches nothing.
		be.SoftmaxRows(&Rows{M: 0, N: 3, LDS: 3})
	})
}

func TestScaleRows(t *testing.T) {
	nan := float32(math.NaN())
	forVariants(t, func(t *testing.T, be Backend) {
		for _, tc := range []struct{ m, n, pad int }{{1, 1, 0}, {3, 7, 2}, {4, 8, 0}, {5, 16, 1}, {6, 17, 3}, {2, 40, 0}, {3, 77, 5}} {
			t.Run(fmt.Sprintf("M=%d/N=%d/pad=%d", tc.m, tc.n, tc.pad), func(t *testing.T) {
				rng := newRand(uint64(tc.m*100 + tc.n))
				ldc := tc.n + tc.pad
				c, check := testutil.Guarded(tc.m*ldc, 8)
				f := make([]float32, tc.m)
				for i := range tc.m {
					testutil.Fill(rng, c[i*ldc:i*ldc+tc.n], -3, 3)
					switch i % 3 {
					case 0: // 0 clears whatever the row holds
						f[i] = 0
						c[i*ldc] = nan
					case 1: // 1 leaves the row alone, NaN included
						f[i] = 1
						c[i*ldc] = nan
					default:
						f[i] = -1.7
					}
				}
				before := append([]float32(nil), c...)
				be.ScaleRows(tc.m, tc.n, c, ldc, f)
				if !check() {
					t.Fatal("guard band overwritten")
				}
				for i := range tc.m {
					for j := range ldc {
						got, old := c[i*ldc+j], before[i*ldc+j]
						var want float32
						switch {
						case j >= tc.n || f[i] == 1:
							want = old
						case f[i] != 0:
							want = old * f[i]
						}
						if math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("c[%d,%d] = %v, want %v (f = %v)", i, j, got, want, f[i])
						}
					}
				}
			})
		}
	})
}

// attnCase is an Attend test case. Masks are "" (none) or a layout:
// "full" (one row per batch, head and query), "batch" (shared by the heads),
// "row" (one row for everything) or "padded" (shared by the batches, rows
// Tk+3 apart).
type attnCase struct {
	name                               string
	b, h, kvh, tq, tk, dk, dv, qb, kvb int
	keyLen                             []int32
	causal                             bool
	off                                int
	keep, bias                         string
	chunks                             int // Attend calls the tasks are split over
	// packKeys has the backend pack the keys (PackKeys) before attending.
	packKeys bool
	hb       int  // Attention.HeadBlock
	tight    bool // LDQ and LDO without padding: all heads side by side, stacked by the AVX-512 core
	window   int  // Attention.Window
	alibi    bool // Attention.ALiBi: a random slope per head, one of them 0
}

func attnCases() []attnCase {
	return []attnCase{
		{name: "one", b: 1, h: 1, kvh: 1, tq: 1, tk: 1, dk: 1, dv: 1, qb: 1, kvb: 1, chunks: 1},
		{name: "small", b: 1, h: 2, kvh: 2, tq: 5, tk: 7, dk: 3, dv: 2, qb: 2, kvb: 3, chunks: 2},
		{name: "gqa", b: 2, h: 4, kvh: 2, tq: 7, tk: 13, dk: 5, dv: 3, qb: 3, kvb: 4, chunks: 3},
		{name: "mqa", b: 2, h: 3, kvh: 1, tq: 11, tk: 17, dk: 8, dv: 6, qb: 4, kvb: 5, chunks: 1},
		{name: "sd77", b: 2, h: 2, kvh: 2, tq: 19, tk: 77, dk: 40, dv: 40, qb: 8, kvb: 77, chunks: 2},
		{name: "sd77blocks", b: 1, h: 2, kvh: 2, tq: 23, tk: 77, dk: 40, dv: 24, qb: 16, kvb: 32, chunks: 1},
		{name: "long", b: 1, h: 2, kvh: 1, tq: 13, tk: 131, dk: 16, dv: 17, qb: 13, kvb: 29, chunks: 2},
		// Key blocks over several panels of 64 and head widths over 64, for
		// the AVX-512 kernel's panel walk and its column tails.
		{name: "panels", b: 1, h: 2, kvh: 1, tq: 29, tk: 300, dk: 64, dv: 80, qb: 13, kvb: 130, chunks: 2},
		{name: "wide", b: 1, h: 1, kvh: 1, tq: 9, tk: 70, dk: 160, dv: 161, qb: 7, kvb: 70, chunks: 1},
		// Keys packed once, read block by block (KVBlock a multiple of 64)
		// or, with other blocks, ignored.
		{name: "packed-keys", b: 2, h: 4, kvh: 2, tq: 9, tk: 200, dk: 40, dv: 24, qb: 5, kvb: 64, chunks: 2, packKeys: true},
		{name: "packed-keys-masked", b: 3, h: 2, kvh: 1, tq: 11, tk: 300, dk: 17, dv: 8, qb: 4, kvb: 128,
			keyLen: []int32{300, 100, 0}, causal: true, off: 200, bias: "batch", chunks: 1, packKeys: true},
		{name: "packed-keys-odd-block", b: 1, h: 2, kvh: 2, tq: 5, tk: 100, dk: 8, dv: 8, qb: 5, kvb: 48, chunks: 1, packKeys: true},
		// Tasks of several heads sharing a key/value head: one walk of the
		// keys (and one repacking of each block) for all of them, with
		// per-head masks, packed keys, and heads in blocks of 1 … group.
		{name: "head-block", b: 2, h: 4, kvh: 1, tq: 9, tk: 150, dk: 70, dv: 65, qb: 6, kvb: 64, chunks: 3, hb: 4, keep: "full"},
		{name: "head-block-gqa", b: 2, h: 6, kvh: 2, tq: 7, tk: 100, dk: 16, dv: 24, qb: 4, kvb: 30, chunks: 2, hb: 3,
			keyLen: []int32{100, 33}, bias: "full", causal: true, off: 50},
		{name: "head-block-packed", b: 2, h: 8, kvh: 2, tq: 5, tk: 200, dk: 40, dv: 40, qb: 5, kvb: 128, chunks: 2, hb: 2,
			packKeys: true, keyLen: []int32{200, 0}},
		// All heads of a task over one key/value head, Q and O without
		// padding: the AVX-512 core runs both products once for all heads.
		{name: "head-block-stacked", b: 2, h: 4, kvh: 1, tq: 9, tk: 150, dk: 70, dv: 65, qb: 6, kvb: 64, chunks: 3, hb: 4,
			tight: true, keep: "full", bias: "full", causal: true, off: 100},
		{name: "head-block-stacked-packed", b: 2, h: 3, kvh: 1, tq: 13, tk: 200, dk: 32, dv: 48, qb: 7, kvb: 128, chunks: 2, hb: 3,
			tight: true, packKeys: true, keyLen: []int32{200, 0}},
		{name: "head-block-stacked-keylen", b: 3, h: 8, kvh: 1, tq: 2, tk: 90, dk: 16, dv: 8, qb: 2, kvb: 40, chunks: 1, hb: 8,
			tight: true, keyLen: []int32{90, 50, 1}, keep: "batch"},
		{name: "tk0", b: 2, h: 2, kvh: 2, tq: 3, tk: 0, dk: 4, dv: 4, qb: 2, kvb: 4, chunks: 1},
		{name: "dk0", b: 1, h: 2, kvh: 1, tq: 3, tk: 5, dk: 0, dv: 3, qb: 2, kvb: 2, chunks: 1},
		{name: "keylen", b: 3, h: 2, kvh: 1, tq: 5, tk: 11, dk: 4, dv: 5, qb: 3, kvb: 4, keyLen: []int32{0, 7, 20}, chunks: 2},
		{name: "keylen-neg", b: 2, h: 1, kvh: 1, tq: 3, tk: 6, dk: 3, dv: 3, qb: 2, kvb: 4, keyLen: []int32{-1, 6}, chunks: 1},
		{name: "causal", b: 2, h: 2, kvh: 1, tq: 13, tk: 13, dk: 6, dv: 5, qb: 4, kvb: 3, causal: true, chunks: 2},
		{name: "causal+off", b: 1, h: 2, kvh: 2, tq: 7, tk: 17, dk: 5, dv: 4, qb: 3, kvb: 5, causal: true, off: 10, chunks: 1},
		{name: "causal-off", b: 1, h: 2, kvh: 2, tq: 11, tk: 9, dk: 5, dv: 4, qb: 3, kvb: 2, causal: true, off: -3, chunks: 1},
		{name: "causal-all", b: 1, h: 1, kvh: 1, tq: 4, tk: 5, dk: 3, dv: 3, qb: 3, kvb: 2, causal: true, off: -10, chunks: 1},
		{name: "keep-full", b: 2, h: 2, kvh: 1, tq: 7, tk: 19, dk: 5, dv: 6, qb: 3, kvb: 8, keep: "full", chunks: 2},
		{name: "keep-batch", b: 2, h: 3, kvh: 3, tq: 5, tk: 11, dk: 4, dv: 4, qb: 2, kvb: 5, keep: "batch", chunks: 1},
		{name: "keep-row", b: 2, h: 2, kvh: 2, tq: 5, tk: 9, dk: 4, dv: 4, qb: 5, kvb: 4, keep: "row", chunks: 1},
		{name: "bias-full", b: 2, h: 2, kvh: 1, tq: 7, tk: 19, dk: 5, dv: 6, qb: 3, kvb: 8, bias: "full", chunks: 2},
		{name: "bias-padded", b: 2, h: 2, kvh: 2, tq: 6, tk: 10, dk: 3, dv: 7, qb: 4, kvb: 3, bias: "padded", chunks: 1},
		{name: "bias-row", b: 1, h: 4, kvh: 2, tq: 5, tk: 9, dk: 4, dv: 4, qb: 2, kvb: 9, bias: "row", chunks: 1},
		{name: "everything", b: 3, h: 4, kvh: 2, tq: 17, tk: 37, dk: 9, dv: 11, qb: 5, kvb: 7,
			keyLen: []int32{37, 20, 3}, causal: true, off: 15, keep: "padded", bias: "batch", chunks: 3},
		// Structural masks: a sliding window (tasks start their keys late,
		// on a panel where the keys are packed) and ALiBi slopes.
		{name: "window", b: 2, h: 2, kvh: 1, tq: 13, tk: 13, dk: 6, dv: 5, qb: 4, kvb: 3, causal: true, window: 3, chunks: 2},
		{name: "window1", b: 1, h: 2, kvh: 2, tq: 7, tk: 17, dk: 5, dv: 4, qb: 3, kvb: 5, causal: true, off: 10, window: 1, chunks: 1},
		{name: "window-nocausal", b: 1, h: 2, kvh: 2, tq: 9, tk: 20, dk: 5, dv: 4, qb: 3, kvb: 4, off: 5, window: 4, chunks: 1},
		{name: "window-packed", b: 3, h: 2, kvh: 1, tq: 11, tk: 300, dk: 17, dv: 8, qb: 4, kvb: 64,
			keyLen: []int32{300, 100, 0}, causal: true, off: 250, window: 70, bias: "batch", chunks: 1, packKeys: true},
		{name: "window-stacked", b: 2, h: 4, kvh: 1, tq: 9, tk: 150, dk: 70, dv: 65, qb: 6, kvb: 64, chunks: 3, hb: 4,
			tight: true, keep: "full", causal: true, off: 100, window: 40, alibi: true},
		{name: "alibi", b: 2, h: 3, kvh: 3, tq: 5, tk: 11, dk: 4, dv: 4, qb: 2, kvb: 5, alibi: true, chunks: 1},
		{name: "alibi-everything", b: 3, h: 4, kvh: 2, tq: 17, tk: 37, dk: 9, dv: 11, qb: 5, kvb: 7,
			keyLen: []int32{37, 20, 3}, causal: true, off: 15, window: 9, alibi: true, keep: "padded", bias: "batch", chunks: 3},
	}
}

// maskStrides returns the strides and length of a mask laid out as kind.
func (c attnCase) maskStrides(kind string) (s [3]int, n int) {
	switch kind {
	case "full":
		s = [3]int{c.h * c.tq * c.tk, c.tq * c.tk, c.tk}
	case "batch":
		s = [3]int{c.tq * c.tk, 0, c.tk}
	case "row":
		s = [3]int{0, 0, 0}
	case "padded":
		s = [3]int{0, c.tq * (c.tk + 3), c.tk + 3}
	default:
		return s, 0
	}
	return s, maskNeed(s, c.b, c.h, c.tq, c.tk)
}

// attention builds the Attention of c with padded leading dimensions and
// gaps between batches, random Q, K, V and masks, and O filled with NaN
// where the heads go and testutil.Guard elsewhere.
func (c attnCase) attention(seed uint64) (a *Attention, owned []bool, checkO func() bool) {
	rng := newRand(seed)
	a = &Attention{
		Batch: c.b, Heads: c.h, KVHeads: c.kvh, Tq: c.tq, Tk: c.tk, DK: c.dk, DV: c.dv,
		Scale: 1 / float32(math.Sqrt(float64(max(c.dk, 1)))),
		LDQ:   c.h*c.dk + 3, LDK: c.kvh*c.dk + 1, LDV: c.kvh*c.dv + 2, LDO: c.h*c.dv + 4,
		KeyLen: c.keyLen, Causal: c.causal, CausalOffset: c.off, Window: c.window,
		QBlock: c.qb, KVBlock: c.kvb, HeadBlock: c.hb,
	}
	if c.alibi {
		a.ALiBi = make([]float32, c.h)
		testutil.Fill(rng, a.ALiBi[1:], -0.2, 0.7)
	}
	if c.tight {
		a.LDQ, a.LDO = c.h*c.dk, c.h*c.dv
	}
	a.BatchQ, a.BatchK, a.BatchV, a.BatchO = c.tq*a.LDQ+5, c.tk*a.LDK, c.tk*a.LDV+1, c.tq*a.LDO+3
	mk := func(rows, ld, stride int) []float32 {
		s := make([]float32, need(c.b, stride, max(rows, 1), ld, ld))
		testutil.Fill(rng, s, -1, 1)
		return s
	}
	a.Q = mk(c.tq, a.LDQ, a.BatchQ)
	a.K = mk(c.tk, a.LDK, a.BatchK)
	a.V = mk(c.tk, a.LDV, a.BatchV)
	if c.keep != "" {
		var n int
		a.KeepStride, n = c.maskStrides(c.keep)
		a.Keep = make([]bool, n)
		for i := range a.Keep {
			a.Keep[i] = rng.IntN(10) < 7
		}
		// Query 1 of batch 0, head 0 (and whatever shares its row) sees nothing.
		if c.tq > 1 && a.KeepStride[2] > 0 {
			clear(a.Keep[a.KeepStride[2]:][:c.tk])
		}
	}
	if c.bias != "" {
		var n int
		a.BiasStride, n = c.maskStrides(c.bias)
		a.Bias = make([]float32, n)
		testutil.Fill(rng, a.Bias, -1, 1)
		for i := range a.Bias {
			if rng.IntN(10) == 0 {
				a.Bias[i] = float32(math.Inf(-1))
			}
		}
		// Query 0 of batch 0, head 0 (and whatever shares its row) sees only −Inf.
		if a.BiasStride[2] > 0 {
			for j := range c.tk {
				a.Bias[j] = float32(math.Inf(-1))
			}
		}
	}
	lo := need(c.b, a.BatchO, c.tq, a.LDO, a.LDO)
	a.O, checkO = testutil.Guarded(lo, 16)
	owned = make([]bool, lo)
	for b := range c.b {
		for i := range c.tq {
			for d := range c.h * c.dv {
				k := b*a.BatchO + i*a.LDO + d
				owned[k] = true
				a.O[k] = float32(math.NaN())
			}
		}
	}
	return a, owned, checkO
}

func TestAttend(t *testing.T) {
	forVariants(t, func(t *testing.T, be Backend) {
		for _, tc := range attnCases() {
			t.Run(tc.name, func(t *testing.T) { testAttend(t, be, tc) })
		}
	})
}

// testAttend runs tc through be in tc.chunks calls and holds the result
// against attentionRef64.
func testAttend(t *testing.T, be Backend, tc attnCase) {
	a, owned, checkO := tc.attention(uint64(len(tc.name)*7919 + tc.tk))
	var in snapshot
	in.floats(a.Q, a.K, a.V, a.Bias)
	in.bools(a.Keep)
	in.ints(a.KeyLen)
	if tc.packKeys {
		packed := be.PackKeys(a)
		if !packed && !be.Pack(make([]float32, 64*64), 64, 64).IsZero() {
			t.Fatal("PackKeys = false on a backend that packs weights (the AVX-512 variant)")
		}
		if packed {
			in.floats(a.KT.f32) // the keys are read, never written
		}
	}
	want, wantStats := attentionRef64(a)
	a.Stats = make([]float32, len(wantStats))
	for i := range a.Stats {
		a.Stats[i] = float32(math.NaN())
	}
	tasks := a.Tasks()
	for c := range tc.chunks {
		scratch := make([]float32, a.ScratchLen())
		for i := range scratch {
			scratch[i] = float32(math.NaN())
		}
		be.Attend(a, c*tasks/tc.chunks, (c+1)*tasks/tc.chunks, scratch)
	}
	in.check(t)
	if !checkO() {
		t.Fatal("guard band around O overwritten")
	}
	vmax := 0.0
	for _, v := range a.V {
		vmax = max(vmax, math.Abs(float64(v)))
	}
	tol := 1e-5 * max(vmax, 1e-30)
	worst := 0.0
	for i, got := range a.O {
		switch {
		case !owned[i]:
			if !testutil.IsGuard(got) {
				t.Fatalf("O[%d] = %v outside the heads, want it untouched", i, got)
			}
		case want[i] == 0:
			if got != 0 {
				t.Fatalf("O[%d] = %v, want exactly 0", i, got)
			}
		default:
			d := math.Abs(float64(got) - want[i])
			if !(d <= tol) {
				t.Fatalf("O[%d] = %v, want %v ± %g", i, got, want[i], tol)
			}
			worst = max(worst, d/tol)
		}
	}
	t.Logf("worst error %.3g of the tolerance", worst)
	// The statistics: the maximum to float32 rounding of the scores, the sum
	// relative to the maximum found, to the rounding of Tk exponentials.
	checkStats(t, a.Stats, wantStats, 1e-5, 1e-5*float64(max(a.Tk, 1)))
}

// checkStats holds the row statistics got (maximum, sum per row, as
// Attention.Stats) to the float64 reference want: a row with no visible
// key exactly −Inf, 0; else the maximum within maxTol·max(1, |max|), the sum
// (rescaled to the maximum found) within sumTol of itself.
func checkStats(t *testing.T, got []float32, want []float64, maxTol, sumTol float64) {
	t.Helper()
	for i := 0; i < len(want); i += 2 {
		gm, gs := float64(got[i]), float64(got[i+1])
		wm, ws := want[i], want[i+1]
		if math.IsInf(wm, -1) {
			if !math.IsInf(gm, -1) || gs != 0 {
				t.Fatalf("Stats[%d:%d] = %v, %v, want -Inf, 0 for a row with no visible key", i, i+2, gm, gs)
			}
			continue
		}
		if d := math.Abs(gm - wm); !(d <= maxTol*max(1, math.Abs(wm))) {
			t.Fatalf("Stats[%d] = %v, want max %v", i, gm, wm)
		}
		ws *= math.Exp(wm - gm)
		if d := math.Abs(gs - ws); !(d <= sumTol*ws) {
			t.Fatalf("Stats[%d] = %v, want sum %v", i+1, gs, ws)
		}
	}
}

// TestVariantsAgree runs the same blocks through every row pass variant,
// NaN inputs included, and holds them against pure to a few ulp: the
// variants compute the same function.
func TestVariantsAgree(t *testing.T) {
	vs := variants()
	ref := vs[len(vs)-1] // pure
	for _, tc := range rowsCases() {
		t.Run(tc.String(), func(t *testing.T) {
			run := func(be Backend) (s, mx, sum, corr []float32) {
				rng := newRand(uint64(tc.m*31 + tc.n))
				lds := tc.n + tc.pad
				mx = make([]float32, tc.m)
				sum = make([]float32, tc.m)
				corr = make([]float32, tc.m)
				for i := range mx {
					mx[i] = float32(math.Inf(-1))
				}
				for blk := range tc.blocks {
					s = make([]float32, tc.m*lds)
					testutil.Fill(rng, s, -30, 30)
					if blk == 1 {
						s[0] = float32(math.NaN()) // Go's max keeps NaN: row 0 turns NaN
					}
					r := &Rows{M: tc.m, N: tc.n, S: s, LDS: lds, Causal: tc.causal, Lim0: tc.lim0, Max: mx, Sum: sum, Corr: corr}
					if tc.bias > 0 {
						r.Bias = make([]float32, tc.n)
						testutil.Fill(rng, r.Bias, -1, 1)
						r.Bias[0] = float32(math.Inf(-1))
					}
					be.SoftmaxRows(r)
				}
				return s, mx, sum, corr
			}
			ws, wmx, wsum, wcorr := run(ref.be)
			for _, v := range vs[:len(vs)-1] {
				if !v.ok {
					continue
				}
				gs, gmx, gsum, gcorr := run(v.be)
				for _, p := range []struct {
					what      string
					got, want []float32
					ulps      int64
				}{{"S", gs, ws, 4}, {"Max", gmx, wmx, 0}, {"Sum", gsum, wsum, 4 + int64(tc.n)}, {"Corr", gcorr, wcorr, 4}} {
					for i := range p.want {
						if d := ulpDiff(p.got[i], p.want[i]); d > p.ulps {
							t.Fatalf("isa=%s: %s[%d] = %v, pure has %v (%d ulp)", v.name, p.what, i, p.got[i], p.want[i], d)
						}
					}
				}
			}
		})
	}
}

// ulpDiff returns how many float32 values lie between a and b: 0 for equal
// values and for two NaNs, MaxInt64 when only one is NaN.
func ulpDiff(a, b float32) int64 {
	an, bn := a != a, b != b
	switch {
	case an && bn:
		return 0
	case an || bn:
		return math.MaxInt64
	}
	key := func(x float32) int64 {
		u := int64(math.Float32bits(x))
		if u&(1<<31) != 0 {
			return -(u &^ (1 << 31))
		}
		return u
	}
	d := key(a) - key(b)
	if d < 0 {
		d = -d
	}
	return d
}

func TestPanics(t *testing.T) {
	f := func(n int) []float32 { return make([]float32, n) }
	gemm := func(mod func(g *Batch)) func(Backend) {
		return func(be Backend) {
			g := &Batch{Count: 2, M: 2, N: 3, K: 4, Alpha: 1, A: f(16), B: f(24), C: f(12),
				LDA: 4, LDB: 3, LDC: 3, StrideA: 8, StrideB: 12, StrideC: 6}
			mod(g)
			be.Sgemm(g)
		}
	}
	rows := func(mod func(r *Rows)) func(Backend) {
		return func(be Backend) {
			r := &Rows{M: 2, N: 3, S: f(6), LDS: 3, Max: f(2), Sum: f(2), Corr: f(2)}
			mod(r)
			be.SoftmaxRows(r)
		}
	}
	attn := func(mod func(a *Attention, t0, t1 *int, scratch *[]float32)) func(Backend) {
		return func(be Backend) {
			a := &Attention{Batch: 2, Heads: 2, KVHeads: 1, Tq: 3, Tk: 4, DK: 2, DV: 3, Scale: 1,
				Q: f(24), K: f(16), V: f(24), O: f(36), LDQ: 4, LDK: 2, LDV: 3, LDO: 6,
				BatchQ: 12, BatchK: 8, BatchV: 12, BatchO: 18, QBlock: 2, KVBlock: 2}
			t0, t1 := 0, a.Tasks()
			scratch := f(a.ScratchLen())
			mod(a, &t0, &t1, &scratch)
			be.Attend(a, t0, t1, scratch)
		}
	}
	cases := []struct {
		name string
		call func(Backend)
		want string
	}{
		{"sgemm/count", gemm(func(g *Batch) { g.Count = -1 }), errCount},
		{"sgemm/M", gemm(func(g *Batch) { g.M = -1 }), errDim},
		{"sgemm/stride", gemm(func(g *Batch) { g.StrideB = -1 }), errStride},
		{"sgemm/LDA", gemm(func(g *Batch) { g.LDA = 3 }), errLDA},
		{"sgemm/LDB", gemm(func(g *Batch) { g.LDB = 2 }), errLDB},
		{"sgemm/LDB-trans", gemm(func(g *Batch) { g.TransB = true }), errLDB},
		{"sgemm/LDC", gemm(func(g *Batch) { g.LDC = 2 }), errLDC},
		{"sgemm/too-large", gemm(func(g *Batch) { g.LDC = math.MaxInt32 + 1 }), errTooLarge},
		{"sgemm/short-A", gemm(func(g *Batch) { g.A = g.A[:15] }), errShortA},
		{"sgemm/short-B", gemm(func(g *Batch) { g.B = g.B[:23] }), errShortB},
		{"sgemm/short-C", gemm(func(g *Batch) { g.C = g.C[:11] }), errShortC},
		{"sgemm/short-bias", gemm(func(g *Batch) { g.Bias = f(2) }), errShortBia},
		{"rows/M", rows(func(r *Rows) { r.M = -1 }), errDim},
		{"rows/LDS", rows(func(r *Rows) { r.LDS = 2 }), errLDS},
		{"rows/LDBias", rows(func(r *Rows) { r.LDBias = 2 }), errLDMask},
		{"rows/LDKeep", rows(func(r *Rows) { r.LDKeep = -1 }), errLDMask},
		{"rows/short-S", rows(func(r *Rows) { r.S = r.S[:5] }), errShortS},
		{"rows/short-max", rows(func(r *Rows) { r.Sum = r.Sum[:1] }), errShortRow},
		{"rows/short-bias", rows(func(r *Rows) { r.Bias, r.LDBias = f(5), 3 }), errShortMsk},
		{"rows/short-keep", rows(func(r *Rows) { r.Keep = make([]bool, 2) }), errShortMsk},
		{"scale/n", func(be Backend) { be.ScaleRows(1, -1, f(3), 3, f(1)) }, errDim},
		{"scale/ldc", func(be Backend) { be.ScaleRows(2, 3, f(6), 2, f(2)) }, errLDC},
		{"scale/short-f", func(be Backend) { be.ScaleRows(2, 3, f(6), 3, f(1)) }, errShortRow},
		{"scale/short-c", func(be Backend) { be.ScaleRows(2, 3, f(5), 3, f(2)) }, errShortC},
		{"attend/dim", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.DV = -1 }), errDim},
		{"attend/block", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.KVBlock = 0 }), errBlock},
		{"attend/heads", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.KVHeads = 3 }), errHeads},
		{"attend/LDO", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.LDO = 5 }), errLD},
		{"attend/stride", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.BatchK = -1 }), errStride},
		{"attend/mask-ld", attn(func(a *Attention, _, _ *int, _ *[]float32) {
			a.Keep, a.KeepStride = make([]bool, 100), [3]int{0, 0, 3}
		}), errLDMask},
		{"attend/tasks", attn(func(a *Attention, _, t1 *int, _ *[]float32) { *t1++ }), errTasks},
		{"attend/scratch", attn(func(_ *Attention, _, _ *int, s *[]float32) { *s = (*s)[:len(*s)-1] }), errScratch},
		{"attend/short-O", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.O = a.O[:35] }), errShortO},
		{"attend/short-Q", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.Q = a.Q[:23] }), errShortQ},
		{"attend/short-K", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.K = a.K[:15] }), errShortK},
		{"attend/short-V", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.V = a.V[:23] }), errShortV},
		{"attend/keylen", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.KeyLen = []int32{1} }), errKeyLen},
		{"attend/short-KT", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.KT = newPanels(2, 3, 2, 64) }), errShortKT},
		{"attend/KT-items", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.KT = newPanels(1, 4, 2, 64) }), errShortKT},
		{"attend/KT-depth", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.KT = newPanels(2, 4, 3, 64) }), errShortKT},
		{"attend/stats", attn(func(a *Attention, _, _ *int, _ *[]float32) { a.Stats = f(2*2*2*3 - 1) }), errStats},
		{"attend/short-bias", attn(func(a *Attention, _, _ *int, _ *[]float32) {
			a.Bias, a.BiasStride = f(12), [3]int{12, 0, 4}
		}), errShortMsk},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forVariants(t, func(t *testing.T, be Backend) {
				defer func() {
					if got := recover(); got != tc.want {
						t.Errorf("panic %v, want %q", got, tc.want)
					}
				}()
				tc.call(be)
			})
		})
	}
}
