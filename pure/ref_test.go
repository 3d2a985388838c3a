package pure

import (
	"math"

	"github.com/xattn/xattn/internal/testutil"
)

// Naive float64 references. They follow the documented formulas, not the
// kernels, and take float32 operands so that tests hand both sides the same
// data.

// sgemmRef64 returns C = alpha·A·op(B) + beta·C in float64, an m×n matrix
// with leading dimension n, together with the element-wise magnitude
// |alpha|·(|A|·|op(B)|) + |beta|·|C| that bounds its rounding error. With
// beta = 0, C is not read.
func sgemmRef64(transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, mag []float64) {
	want = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, abs float64
			for l := 0; l < k; l++ {
				var bv float32
				if transB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				p := float64(a[i*lda+l]) * float64(bv)
				s += p
				abs += math.Abs(p)
			}
			s *= float64(alpha)
			abs *= math.Abs(float64(alpha))
			if beta != 0 {
				cv := float64(beta) * float64(c[i*ldc+j])
				s += cv
				abs += math.Abs(cv)
			}
			want[i*n+j] = s
			mag[i*n+j] = abs
		}
	}
	return want, mag
}

// softmaxRowRef64 is SoftmaxRows on one row of scores s in float64, from
// its documented formulas: with valid(j) = j < lim && (keep == nil ||
// keep[j]) and v_j = s_j + bias_j,
//
//	mNew = max(mOld, max_{valid j} v_j)
//	p_j  = exp(v_j − mNew) if valid(j), else 0
//	corr = exp(mOld − mNew)
//	sum  = sumOld·corr + Σ_j p_j
//
// and p = 0, corr = 1, sum = sumOld when mNew = −Inf. With mOld = −Inf and
// sumOld = 0 it is a single-pass softmax (p/sum) over the row. vmax is the
// largest finite |v_j| over the valid j, for error bounds. keep and bias may
// be nil.
func softmaxRowRef64(s, bias []float32, keep []bool, lim int, mOld, sumOld float64) (p []float64, mNew, sum, corr, vmax float64) {
	n := len(s)
	p = make([]float64, n)
	v := make([]float64, n)
	mNew = mOld
	for j := range n {
		v[j] = math.Inf(-1)
		if j >= lim || (keep != nil && !keep[j]) {
			continue
		}
		v[j] = float64(s[j])
		if bias != nil {
			v[j] += float64(bias[j])
		}
		mNew = math.Max(mNew, v[j])
		if !math.IsInf(v[j], 0) {
			vmax = math.Max(vmax, math.Abs(v[j]))
		}
	}
	if math.IsInf(mNew, -1) {
		return p, mNew, sumOld, 1, vmax
	}
	for j := range n {
		p[j] = testutil.ExpProb64(v[j] - mNew) // 0 for the invalid j
		sum += p[j]
	}
	corr = testutil.ExpProb64(mOld - mNew)
	return p, mNew, sumOld*corr + sum, corr, vmax
}
