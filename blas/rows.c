//go:build cgo && !purego

/*
 * The scalar row pass, row scale, finite check and exponential: portable C,
 * the reference of the vector variants (rows_avx2.c, rows_avx512.c), which
 * follows package pure line by line.
 */
#include "rows.h"

/* pow2 returns 2^n for n in [−126, 127]. */
static inline float pow2(int32_t n) {
	uint32_t bits = (uint32_t)(n + 127) << 23;
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

/* scale2 returns y·2^n for n in [−151, 128], as pure's scale2. */
static inline float scale2(float y, int32_t n) {
	if (n > 127)
		return y * pow2(n - 1) * 2.0f;
	if (n < -126)
		return y * pow2(n + 64) * pow2(-64);
	return y * pow2(n);
}

/* exp_scalar is pure.Exp. */
static float exp_scalar(float x) {
	if (x != x)
		return x;
	if (x > EXP_HI)
		return INFINITY;
	if (x < EXP_LO)
		return 0.0f;
	float t = x * LOG2E;
	int32_t n = t >= 0 ? (int32_t)(t + 0.5f) : (int32_t)(t - 0.5f);
	float fn = (float)n;
	float r = x - fn * LN2_HI;
	r -= fn * LN2_LO;
	float p = EXP_P0;
	p = p * r + EXP_P1;
	p = p * r + EXP_P2;
	p = p * r + EXP_P3;
	p = p * r + EXP_P4;
	p = p * r + EXP_P5;
	float y = p * (r * r) + r + 1.0f;
	return scale2(y, n);
}

/* exp_prob is exp_scalar for the row pass: 0 below PROB_LO (pure.ExpProb). */
static inline float exp_prob(float x) { return x < PROB_LO ? 0.0f : exp_scalar(x); }

/*
 * xattn_row_bad ends a row that met a non-finite score on a visible column, or
 * whose running maximum is NaN from an earlier block, as pure.SoftmaxRows
 * does: NaN on its visible columns, 0 on every masked one, and NaN for max,
 * sum and corr, so that the row's output becomes NaN and nothing else does.
 */
__attribute__((cold, noinline)) void xattn_row_bad(float *row, int lim, int n, const float *b, const unsigned char *k,
		float *mx, float *sum, float *corr) {
	for (int j = 0; j < n; j++)
		row[j] = seen(j, lim, b, k) ? NAN : 0.0f;
	*mx = *sum = *corr = NAN;
}

/* pass1_scalar is pass 1 of xattn_rows_scalar (see row_pass). */
static inline __attribute__((always_inline)) int pass1_scalar(float *row, int lim, const float *b,
		const unsigned char *k, float slope, int64_t d0, float *rowmax) {
	float m = -INFINITY;
	int bad = 0;
	for (int j = 0; j < lim; j++) {
		float x = row[j];
		if (slope != 0.0f)
			x += slope * (float)(j - d0);
		if (b)
			x += b[j];
		if ((k && !k[j]) || (b && b[j] == -INFINITY))
			x = -INFINITY;
		else if (x - x != 0.0f) /* NaN or ±Inf on a visible column */
			bad = 1;
		row[j] = x;
		m = gomax(m, x);
	}
	*rowmax = m;
	return bad;
}

/* pass2_scalar is pass 2 of xattn_rows_scalar. */
static inline __attribute__((always_inline)) float pass2_scalar(float *row, int lim, float mnew) {
	float acc = 0.0f;
	for (int j = 0; j < lim; j++) {
		float p = exp_prob(row[j] - mnew);
		row[j] = p;
		acc += p;
	}
	return acc;
}

static inline __attribute__((always_inline)) float corr_scalar(float mx, float mnew) { return exp_prob(mx - mnew); }

/* xattn_rowsm_scalar is pure.SoftmaxRowsMasked. */
void xattn_rowsm_scalar(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, const xattn_rowmask *rm,
		float *mx, float *sum, float *corr) {
	row_pass(m, n, s, lds, bias, ldbias, keep, ldkeep, rm, mx, sum, corr, pass1_scalar, pass2_scalar, corr_scalar);
}

/* xattn_rows_scalar is pure.SoftmaxRows. */
XATTN_ROWS_CAUSAL(scalar)

/*
 * xattn_finite_scalar reports whether every value of the m×n matrix c (leading
 * dimension ldc) is finite.
 */
int xattn_finite_scalar(int m, int n, const float *c, int64_t ldc) {
	uint32_t bad = 0;
	for (int r = 0; r < m; r++) {
		const float *row = c + (int64_t)r * ldc;
		for (int j = 0; j < n; j++) {
			uint32_t u;
			memcpy(&u, &row[j], sizeof u);
			bad |= (u & 0x7f800000u) == 0x7f800000u;
		}
	}
	return !bad;
}

/* xattn_scale_scalar is pure.ScaleRows. */
void xattn_scale_scalar(int m, int n, float *c, int ldc, const float *f) {
	for (int r = 0; r < m; r++) {
		float *row = scale_row(r, n, c, ldc, f);
		if (!row)
			continue;
		const float fr = f[r];
		for (int j = 0; j < n; j++)
			row[j] *= fr;
	}
}

void xattn_exp_scalar(int n, const float *x, float *y) {
	for (int j = 0; j < n; j++)
		y[j] = exp_scalar(x[j]);
}

void xattn_rows_empty(int m, float *mx, float *sum, float *corr) {
	for (int r = 0; r < m; r++) {
		float mnew = gomax(mx[r], -INFINITY);
		if (mnew == -INFINITY) {
			corr[r] = 1.0f;
			continue;
		}
		row_end(NULL, 0, 0, mnew, exp_prob(mx[r] - mnew), 0.0f, &mx[r], &sum[r], &corr[r]);
	}
}

#include <stdio.h>
#include <stdlib.h>

void xattn_unavailable(const char *what, const char *file, int line) {
	fprintf(stderr, "xattn: %s cannot run on this target (%s:%d): a variant table reached a kernel it was not built for\n",
			what, file, line);
	abort();
}
