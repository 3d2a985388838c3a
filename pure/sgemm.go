package pure

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Tile sizes that keep gonum's Sgemm serial: it fans out over goroutines only
// when a product has at least 4 blocks of 64×64 in C, and one tile here has
// at most 1×3 of them.
const (
	tileM = 64
	tileN = 192
)

// Sgemm computes
//
//	C = alpha·A·op(B) + beta·C,   op(B) = Bᵀ if transB, else B
//
// for row-major A (m×k, leading dimension lda), B (k×n, or n×k when transB,
// leading dimension ldb) and C (m×n, leading dimension ldc), on the calling
// goroutine. It is gonum's Go Sgemm applied tile by tile, so gonum never
// starts goroutines of its own. C must not overlap A or B.
//
// Sgemm panics, like gonum, on negative sizes, short leading dimensions or
// short slices.
func Sgemm(transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	// Check the whole product here: gonum checks each tile only, so it would
	// miss negative sizes (no tile at all) and a leading dimension of B or C
	// that is shorter than n but not than the tile width.
	switch {
	case m < 0:
		panic("blas: m < 0")
	case n < 0:
		panic("blas: n < 0")
	case k < 0:
		panic("blas: k < 0")
	case lda < max(1, k):
		panic("blas: bad leading dimension of A")
	case transB && ldb < max(1, k), !transB && ldb < max(1, n):
		panic("blas: bad leading dimension of B")
	case ldc < max(1, n):
		panic("blas: bad leading dimension of C")
	}
	if m == 0 || n == 0 {
		return
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	switch {
	case len(a) < (m-1)*lda+k:
		panic("blas: insufficient length of a")
	case len(b) < (rowsB-1)*ldb+colsB:
		panic("blas: insufficient length of b")
	case len(c) < (m-1)*ldc+n:
		panic("blas: insufficient length of c")
	}
	tB := blas.NoTrans
	if transB {
		tB = blas.Trans
	}
	var impl gonum.Implementation
	for i := 0; i < m; i += tileM {
		mi := min(tileM, m-i)
		ai := a[i*lda:]
		ci := c[i*ldc:]
		for j := 0; j < n; j += tileN {
			nj := min(tileN, n-j)
			var bj []float32
			switch {
			case transB:
				bj = b[j*ldb:]
			case k > 0: // with k = 0, B has no rows and may be empty
				bj = b[j:]
			}
			impl.Sgemm(blas.NoTrans, tB, mi, nj, k, alpha, ai, lda, bj, ldb, beta, ci[j:], ldc)
		}
	}
}
