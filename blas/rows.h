//go:build cgo && !purego

/*
 * What the row-pass files (rows.c, rows_avx2.c, rows_avx512.c) share: the
 * constants of the exponential and the steps of a row that every variant
 * takes alike. The scalar code of rows.c is the reference for the vector
 * variants and follows package pure line by line.
 */
#ifndef XATTN_ROWS_H
#define XATTN_ROWS_H

#include <math.h>
#include <string.h>

#include "internal.h"

/*
 * Constants of pure.Exp (pure/exp.go), rounded to float32 exactly as Go
 * rounds its untyped constants: Cody–Waite range reduction with ln 2 split in
 * a high part exact in float32 and a low correction, and the Cephes expf
 * polynomial for (e^r − 1 − r)/r² on |r| ≤ ln2/2.
 */
#define EXP_HI 88.72283935546875f
#define EXP_LO -103.97208404541016f
/*
 * PROB_LO is pure.ProbLo: the exponentials of the row pass (probabilities
 * e^(s − max) and corrections e^(mold − mnew), arguments ≤ 0) are 0 below
 * it, so that no probability is subnormal: e^−87 ≈ 1.6e-38 is above the
 * smallest normal float32, 2^−126 ≈ 1.2e-38, and a subnormal probability
 * costs a microcode assist in every product it enters (ALiBi's standard
 * slopes put most of a long row's probabilities in e^−104 … e^−87).
 */
#define PROB_LO -87.0f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* gomax is Go's max for two floats: NaN if either is NaN. */
static inline float gomax(float a, float b) {
	if (a != a)
		return a;
	if (b != b)
		return b;
	return a > b ? a : b;
}

/*
 * row_start takes the maximum of a row over the block and returns the new
 * running maximum; when that is −Inf (no valid score yet) it zeroes the n
 * values of the row and sets corr = 1, leaving sum alone, as
 * pure.SoftmaxRows does, so −Inf never meets −Inf in a subtraction.
 */
static inline float row_start(float rowmax, float *row, int n, float *mx, float *corr) {
	float mnew = gomax(*mx, rowmax);
	if (mnew == -INFINITY) {
		memset(row, 0, (size_t)n * sizeof *row);
		*corr = 1.0f;
	}
	return mnew;
}

/*
 * xattn_row_bad ends a row that met a non-finite score on a visible column, or
 * whose running maximum is NaN from an earlier block, as pure.SoftmaxRows
 * does: NaN on its visible columns, 0 on every masked one, and NaN for max,
 * sum and corr, so that the row's output becomes NaN and nothing else does.
 */
void xattn_row_bad(float *row, int lim, int n, const float *b, const unsigned char *k, float *mx, float *sum,
		float *corr);

/*
 * row_end stores corr, sum and max of a row after its exponentials summing to
 * acc, and zeroes its columns [lim, n). c is e^(old max − mnew), computed by the
 * caller with its own variant's exponential: calling the SSE-encoded
 * exp_scalar from AVX-512 code with live upper register halves costs a
 * state transition per call, measured at 7% of the attention core.
 */
static inline void row_end(float *row, int lim, int n, float mnew, float c, float acc, float *mx, float *sum, float *corr) {
	if (lim < n)
		memset(row + lim, 0, (size_t)(n - lim) * sizeof *row);
	*corr = c;
	*sum = *sum * c + acc;
	*mx = mnew;
}

/*
 * scale_row returns row r of c for a variant's ScaleRows to multiply by
 * f[r], or NULL when f[r] is 1 (nothing to do) or 0 (it stores the zeros
 * itself, whatever the row held).
 */
static inline __attribute__((always_inline)) float *scale_row(int r, int n, float *c, int ldc, const float *f) {
	if (f[r] == 1.0f)
		return NULL;
	float *row = c + (int64_t)r * ldc;
	if (f[r] == 0.0f) {
		memset(row, 0, (size_t)n * sizeof *row);
		return NULL;
	}
	return row;
}

/*
 * row_open ends pass 1 of row r of a row pass, whose visible scores held a
 * non-finite value if bad, and whose maximum is rowmax: it returns 0 when
 * the row is done (bad, or a NaN or −Inf running maximum: see xattn_row_bad
 * and row_start), else 1 with the new running maximum in *mnew.
 */
static inline __attribute__((always_inline)) int row_open(int bad, float rowmax, float *row, int lim, int n,
		const float *b, const unsigned char *k, float *mx, float *sum, float *corr, float *mnew) {
	if (bad || *mx != *mx) {
		xattn_row_bad(row, lim, n, b, k, mx, sum, corr);
		return 0;
	}
	*mnew = row_start(rowmax, row, n, mx, corr);
	return *mnew != -INFINITY;
}

/*
 * row_shift opens row r of a masked row pass (rm, xattn_rowmask in shim.h)
 * over row, an n-column row of scores: it zeroes the columns before the
 * first visible one, st, and returns st with *lim the row's limit and *d0
 * its diagonal, both counted from st on, so that the pass runs unchanged
 * on the row from st on (row + st, *lim, n − st, bias and keep rows moved
 * alike): a window is a shift of the row's view.
 */
static inline __attribute__((always_inline)) int row_shift(float *row, int n, const xattn_rowmask *rm, int r,
		int *lim, int64_t *d0) {
	int st;
	int l = row_span(n, rm, r, &st);
	if (st > 0)
		memset(row, 0, (size_t)st * sizeof *row);
	*lim = l - st;
	*d0 = rm->lim0 - 1 + r - st;
	return st;
}

/*
 * The steps of a row pass that differ by ISA, which row_pass runs: pass 1
 * masks, adds the ALiBi term slope·(j − d0) (when slope is not 0: column j's
 * distance from the diagonal d0, the product rounded before the sum) and
 * biases the lim scores of row in place and sets *rowmax to their maximum,
 * and returns whether a visible one is not finite (bias row b and keep row
 * k may be NULL); pass 2 replaces them by e^(score − mnew) and returns their
 * sum; corr returns e^(mx − mnew), the correction of the sum so far, with
 * the ISA's own exponential (see row_end).
 */
typedef int (*row_pass1_fn)(float *row, int lim, const float *b, const unsigned char *k, float slope, int64_t d0,
		float *rowmax);
typedef float (*row_pass2_fn)(float *row, int lim, float mnew);
typedef float (*row_corr_fn)(float mx, float mnew);

/*
 * row_pass is pure.SoftmaxRowsMasked with the steps of one ISA: every
 * variant's xattn_rowsm_<isa> is this driver with its steps, and the mask
 * (causal limit, window, ALiBi) is applied here once for all of them: a
 * window shifts each row's view to its first visible column (row_shift),
 * ALiBi is pass 1's slope. Always inlined, with constant steps that are
 * always inlined too, so a step costs no call, and pass 1 called with
 * literal NULL masks and a zero slope loses every test of them.
 */
static inline __attribute__((always_inline)) void row_pass(int m, int n, float *s, int lds, const float *bias,
		int ldbias, const unsigned char *keep, int ldkeep, const xattn_rowmask *rm, float *mx, float *sum,
		float *corr, row_pass1_fn pass1, row_pass2_fn pass2, row_corr_fn corrf) {
	const float slope = rm->slope;
	for (int r = 0; r < m; r++) {
		float *row = s + (int64_t)r * lds;
		int lim;
		int64_t d0;
		const int st = row_shift(row, n, rm, r, &lim, &d0);
		row += st;
		const int nr = n - st;
		const float *b = bias ? bias + (int64_t)r * ldbias + st : NULL;
		const unsigned char *k = keep ? keep + (int64_t)r * ldkeep + st : NULL;
		float rowmax, mnew;
		int bad = b || k || slope != 0.0f ? pass1(row, lim, b, k, slope, d0, &rowmax)
						  : pass1(row, lim, NULL, NULL, 0.0f, 0, &rowmax);
		if (!row_open(bad, rowmax, row, lim, nr, b, k, &mx[r], &sum[r], &corr[r], &mnew))
			continue;
		float acc = pass2(row, lim, mnew);
		row_end(row, lim, nr, mnew, corrf(mx[r], mnew), acc, &mx[r], &sum[r], &corr[r]);
	}
}

/*
 * XATTN_ROWS_CAUSAL(isa) defines xattn_rows_<isa>, the table's rows entry:
 * xattn_rowsm_<isa> with a causal limit alone (no window, no ALiBi).
 */
#define XATTN_ROWS_CAUSAL(isa)                                                                              \
	void xattn_rows_##isa(int m, int n, float *s, int lds, const float *bias, int ldbias,                 \
			const unsigned char *keep, int ldkeep, int causal, int64_t lim0, float *mx, float *sum,        \
			float *corr) {                                                                             \
		const xattn_rowmask rm = {causal, lim0, 0, 0.0f};                                                \
		xattn_rowsm_##isa(m, n, s, lds, bias, ldbias, keep, ldkeep, &rm, mx, sum, corr);                 \
	}

#endif
