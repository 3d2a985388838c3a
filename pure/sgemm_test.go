package pure

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/xattn/xattn/internal/testutil"
)

// sgemmCases cross the tiling of Sgemm (tileM×tileN = 64×192) and gonum's
// 64×64 blocks at −1, 0 and +1, with primes and padded leading dimensions.
var sgemmCases = []struct {
	name             string
	m, n, k          int
	padA, padB, padC int  // ld = max(1, cols) + pad
	long             bool // only alpha = beta = 0.7, and skipped with -short
}{
	{name: "empty", m: 0, n: 0, k: 0},
	{name: "m=0", m: 0, n: 5, k: 3, padC: 2},
	{name: "n=0", m: 4, n: 0, k: 3, padA: 1},
	{name: "k=0", m: 5, n: 7, k: 0, padC: 3},
	{name: "k=0/tiles", m: 65, n: 193, k: 0, padA: 1, padB: 2, padC: 1},
	{name: "1x1x1", m: 1, n: 1, k: 1},
	{name: "1x1x1/padded", m: 1, n: 1, k: 1, padA: 2, padB: 3, padC: 4},
	{name: "2x3x1", m: 2, n: 3, k: 1},
	{name: "3x2x7", m: 3, n: 2, k: 7, padB: 1},
	{name: "7x7x7/padded", m: 7, n: 7, k: 7, padA: 3, padB: 5, padC: 7},
	{name: "1x257x3", m: 1, n: 257, k: 3},
	{name: "257x1x3", m: 257, n: 1, k: 3, padC: 2},
	{name: "63x63x63", m: 63, n: 63, k: 63},
	{name: "64x64x64", m: 64, n: 64, k: 64},
	{name: "65x65x65/padded", m: 65, n: 65, k: 65, padA: 1, padB: 1, padC: 1},
	{name: "64x192x7/one tile", m: 64, n: 192, k: 7},
	{name: "63x191x2/tile-1", m: 63, n: 191, k: 2, padC: 1},
	{name: "65x193x7/tile+1", m: 65, n: 193, k: 7, padA: 2, padB: 3, padC: 5},
	{name: "128x384x3/2x2 tiles", m: 128, n: 384, k: 3},
	{name: "129x385x1/padded", m: 129, n: 385, k: 1, padA: 4, padB: 1, padC: 3},
	{name: "191x192x64", m: 191, n: 192, k: 64},
	{name: "192x193x65/padded", m: 192, n: 193, k: 65, padA: 1, padB: 7, padC: 2},
	{name: "193x191x63", m: 193, n: 191, k: 63, padC: 1},
	{name: "2x65x191", m: 2, n: 65, k: 191, padB: 2},
	{name: "3x257x257", m: 3, n: 257, k: 257, padA: 5},
	{name: "65x2x257", m: 65, n: 2, k: 257, padC: 6},
	{name: "7x193x192", m: 7, n: 193, k: 192, padA: 1},
	{name: "257x257x3/padded", m: 257, n: 257, k: 3, padA: 1, padB: 1, padC: 1},
	{name: "64x193x1/ldc=n", m: 64, n: 193, k: 1},
	{name: "257x257x257", m: 257, n: 257, k: 257, padC: 3, long: true},
}

func TestSgemm(t *testing.T) {
	scalars := []float32{0, 1, 0.7}
	for _, tc := range sgemmCases {
		for _, transB := range []bool{false, true} {
			for _, alpha := range scalars {
				for _, beta := range scalars {
					name := fmt.Sprintf("%s/transB=%t/alpha=%v/beta=%v", tc.name, transB, alpha, beta)
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						if tc.long && (testing.Short() || alpha != 0.7 || beta != 0.7) {
							t.Skip("long: smaller cases cover the special alpha and beta")
						}
						testSgemm(t, transB, tc.m, tc.n, tc.k, tc.padA, tc.padB, tc.padC, alpha, beta)
					})
				}
			}
		}
	}
}

func testSgemm(t *testing.T, transB bool, m, n, k, padA, padB, padC int, alpha, beta float32) {
	rng := rand.New(rand.NewPCG(1, 2))
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	lda, ldb, ldc := max(1, k)+padA, max(1, colsB)+padB, max(1, n)+padC

	gl := testutil.GuardLen
	ga, gb, gc := testutil.NewMatrix(m, k, lda, gl), testutil.NewMatrix(rowsB, colsB, ldb, gl), testutil.NewMatrix(m, n, ldc, gl)
	ga.Fill(rng, -1, 1)
	gb.Fill(rng, -1, 1)
	gc.Fill(rng, -1, 1)
	if beta == 0 {
		// C is not read: NaN in it must not reach the result.
		for i := range gc.Buf {
			if gc.In(i) {
				gc.Buf[i] = float32(math.NaN())
			}
		}
	}
	a, b, c := ga.Data(), gb.Data(), gc.Data()
	a0, b0, c0 := slices.Clone(ga.Buf), slices.Clone(gb.Buf), slices.Clone(c)
	var want, mag []float64 // with alpha = 0 or k = 0 the result is exact
	if alpha != 0 && k != 0 {
		want, mag = sgemmRef64(transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}

	Sgemm(transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

	if !testutil.SameBits(ga.Buf, a0) {
		t.Errorf("A modified")
	}
	if !testutil.SameBits(gb.Buf, b0) {
		t.Errorf("B modified")
	}
	gc.Check(t, "C")
	for i := range m {
		for j := range n {
			got := c[i*ldc+j]
			if alpha == 0 || k == 0 {
				// C = beta·C, one float32 product; beta = 0 stores +0.
				var w float32
				if beta != 0 {
					w = beta * c0[i*ldc+j]
				}
				if math.Float32bits(got) != math.Float32bits(w) {
					t.Fatalf("C[%d,%d] = %v, want %v exactly", i, j, got, w)
				}
				continue
			}
			// The rounding error of a float32 dot product of length k
			// (plus the rounding of beta·C) is below k·2⁻²³·Σ|terms|
			// to first order; 4× that leaves room for gonum's order of
			// summation.
			w := want[i*n+j]
			bound := testutil.ProductBound(max(k, 1), mag[i*n+j]) + 1e-30
			if d := math.Abs(float64(got) - w); !(d <= bound) {
				t.Fatalf("C[%d,%d] = %v, want %v: |error| %.3g > %.3g", i, j, got, w, d, bound)
			}
		}
	}
}

func TestSgemmPanics(t *testing.T) {
	buf := make([]float32, 1000)
	tests := []struct {
		name          string
		transB        bool
		m, n, k       int
		lda, ldb, ldc int
		lenA, lenB    int // 0 means len(buf)
		lenC          int
		want          string
	}{
		{name: "m<0", m: -1, n: 2, k: 2, lda: 2, ldb: 2, ldc: 2, want: "blas: m < 0"},
		{name: "n<0", m: 2, n: -1, k: 2, lda: 2, ldb: 2, ldc: 2, want: "blas: n < 0"},
		{name: "k<0", m: 2, n: 2, k: -1, lda: 2, ldb: 2, ldc: 2, want: "blas: k < 0"},
		{name: "lda<k", m: 2, n: 2, k: 3, lda: 2, ldb: 2, ldc: 2, want: "blas: bad leading dimension of A"},
		{name: "lda=0/k=0", m: 2, n: 2, k: 0, lda: 0, ldb: 2, ldc: 2, want: "blas: bad leading dimension of A"},
		{name: "ldb<n", m: 2, n: 3, k: 2, lda: 2, ldb: 2, ldc: 3, want: "blas: bad leading dimension of B"},
		{name: "transB/ldb<k", transB: true, m: 2, n: 3, k: 4, lda: 4, ldb: 3, ldc: 3, want: "blas: bad leading dimension of B"},
		{name: "ldc<n", m: 2, n: 3, k: 2, lda: 2, ldb: 3, ldc: 2, want: "blas: bad leading dimension of C"},
		{name: "m=0/ldc<n", m: 0, n: 3, k: 2, lda: 2, ldb: 3, ldc: 2, want: "blas: bad leading dimension of C"},
		// A leading dimension that is long enough for one tile (tileN
		// columns) but short for n: each tile alone passes gonum's check.
		{name: "n>tileN/ldb=tileN", m: 2, n: tileN + 8, k: 2, lda: 2, ldb: tileN, ldc: tileN + 8, want: "blas: bad leading dimension of B"},
		{name: "n>tileN/ldc=tileN", m: 2, n: tileN + 8, k: 2, lda: 2, ldb: tileN + 8, ldc: tileN, want: "blas: bad leading dimension of C"},
		{name: "transB/n>tileN/ldc=tileN", transB: true, m: 2, n: tileN + 8, k: 2, lda: 2, ldb: 2, ldc: tileN, want: "blas: bad leading dimension of C"},
		{name: "short A", m: 3, n: 2, k: 2, lda: 4, ldb: 2, ldc: 2, lenA: 9, want: "blas: insufficient length of a"},
		{name: "m>tileM/short A", m: tileM + 1, n: 2, k: 2, lda: 2, ldb: 2, ldc: 2, lenA: 2*tileM + 1, want: "blas: insufficient length of a"},
		{name: "short B", m: 2, n: 2, k: 3, lda: 3, ldb: 2, ldc: 2, lenB: 5, want: "blas: insufficient length of b"},
		{name: "transB/short B", transB: true, m: 2, n: 3, k: 2, lda: 2, ldb: 2, ldc: 3, lenB: 5, want: "blas: insufficient length of b"},
		{name: "short C", m: 2, n: 2, k: 2, lda: 2, ldb: 2, ldc: 3, lenC: 4, want: "blas: insufficient length of c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := func(l int) []float32 {
				if l == 0 {
					return buf
				}
				return buf[:l]
			}
			defer func() {
				if r := recover(); r != tt.want {
					t.Errorf("panic %v, want %q", r, tt.want)
				}
			}()
			Sgemm(tt.transB, tt.m, tt.n, tt.k, 1, sub(tt.lenA), tt.lda, sub(tt.lenB), tt.ldb, 0, sub(tt.lenC), tt.ldc)
		})
	}
}

// TestSgemmSerial checks that Sgemm starts no goroutines on a product that
// gonum alone would split over goroutines: gonum's parallel path allocates (a
// channel, closures), so zero allocations show the serial path.
// runtime.NumGoroutine before and after could not tell, as gonum waits for
// its workers.
//
// AllocsPerRun counts the allocations of the whole process, so this test
// must not call t.Parallel: a sequential test never runs beside another.
func TestSgemmSerial(t *testing.T) {
	const m, n, k = 512, 320, 320
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = 2*rng.Float32() - 1
	}
	for i := range b {
		b[i] = 2*rng.Float32() - 1
	}
	c, cg := make([]float32, m*n), make([]float32, m*n)

	var impl gonum.Implementation
	if allocs := testing.AllocsPerRun(2, func() {
		impl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, b, n, 0, cg, n)
	}); allocs == 0 {
		t.Fatalf("gonum's Sgemm made no allocation on %d×%d×%d: the premise of this test is gone", m, n, k)
	}
	for _, transB := range []bool{false, true} {
		if allocs := testing.AllocsPerRun(2, func() {
			Sgemm(transB, m, n, k, 1, a, k, b, n, 0, c, n)
		}); allocs != 0 {
			t.Errorf("transB=%t: Sgemm made %v allocations on %d×%d×%d, want 0 (no goroutines)", transB, allocs, m, n, k)
		}
	}
	// Without transB, gonum adds the k products of each element in the
	// same order whether it runs serially or not, so tiling changes no bit.
	Sgemm(false, m, n, k, 1, a, k, b, n, 0, c, n)
	if !testutil.SameBits(c, cg) {
		t.Errorf("Sgemm differs from gonum's Sgemm on the whole product")
	}
}
