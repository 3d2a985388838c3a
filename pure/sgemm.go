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
	if m == 0 || n == 0 {
		return
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
			if transB {
				bj = b[j*ldb:]
			} else {
				bj = b[j:]
			}
			impl.Sgemm(blas.NoTrans, tB, mi, nj, k, alpha, ai, lda, bj, ldb, beta, ci[j:], ldc)
		}
	}
}
