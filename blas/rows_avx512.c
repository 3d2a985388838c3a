//go:build cgo && !purego

/*
 * The AVX-512 row pass, row scale, finite check and exponential: rows.c's
 * scalar code on vectors.
 */
#include "rows.h"

#if defined(XATTN_X86)

/*
 * exp512_scaled is the common part of the AVX-512 exponentials: e^x as
 * 2^fn·e^r, r = x − fn·ln 2 with ln 2 in two parts and e^r from the
 * polynomial, then vscalefps, which multiplies by 2^fn with one rounding
 * into the subnormal range.
 */
XATTN_AVX512 static inline __m512 exp512_scaled(__m512 x, __m512 fn) {
	__m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(LN2_HI), x);
	r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(LN2_LO), r);
	__m512 p = _mm512_set1_ps(EXP_P0);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P1));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P2));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P3));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P4));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P5));
	__m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(y, fn);
}

/* exp512 is pure.Exp on 16 lanes, as exp256. */
XATTN_AVX512 static inline __m512 exp512(__m512 x) {
	const __m512 lo = _mm512_set1_ps(EXP_LO), hi = _mm512_set1_ps(EXP_HI);
	__mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
	__mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
	x = _mm512_mask_mov_ps(_mm512_min_ps(hi, x), under, _mm512_setzero_ps()); /* as in exp256 */
	__m512 t = _mm512_mul_ps(x, _mm512_set1_ps(LOG2E));
	__m512 half = _mm512_or_ps(_mm512_set1_ps(0.5f), _mm512_and_ps(t, _mm512_set1_ps(-0.0f)));
	__m512 fn = _mm512_roundscale_ps(_mm512_add_ps(t, half), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__m512 e = _mm512_mask_mov_ps(exp512_scaled(x, fn), under, _mm512_setzero_ps());
	return _mm512_mask_mov_ps(e, over, _mm512_set1_ps(INFINITY));
}

/*
 * exp512_prob is pure.ExpProb, the row pass's exponential, for lanes that
 * are ≤ 0, −Inf or NaN (scores less their row's maximum): exp512's
 * arithmetic, hence its values, but 0 below PROB_LO (no subnormal), without
 * the overflow test and with the rounding of n done for t ≤ 0 alone — 17
 * vector operations instead of 22, on the row pass's critical port pair
 * (2.6 → 3.3 scores per ns on 512-key rows, measured).
 */
XATTN_AVX512 static inline __m512 exp512_prob(__m512 x) {
	const __m512 lo = _mm512_set1_ps(PROB_LO);
	__mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
	x = _mm512_mask_mov_ps(x, under, _mm512_setzero_ps()); /* e^0, set to 0 below: as in exp512 */
	__m512 t = _mm512_mul_ps(x, _mm512_set1_ps(LOG2E));
	__m512 fn = _mm512_roundscale_ps(_mm512_sub_ps(t, _mm512_set1_ps(0.5f)), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	return _mm512_mask_mov_ps(exp512_scaled(x, fn), under, _mm512_setzero_ps());
}

/* tail512 is a mask of the first rem < 16 lanes. */
static inline __mmask16 tail512(int rem) {
	return (__mmask16)((1u << rem) - 1);
}

/* keep512 is the mask of the lanes in mask whose keep byte is true. */
XATTN_AVX512 static inline __mmask16 keep512(const unsigned char *keep, __mmask16 mask) {
	__m512i ki = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, keep));
	return _mm512_test_epi32_mask(ki, ki);
}

/*
 * pass1_512 is pass 1 of xattn_rowsm_avx512 over the lim scores of row, with bias
 * row b and keep row k (either NULL): mask, ALiBi, bias, store, maximum into
 * *rowmax. The visible lanes (in the row, kept, bias not −Inf) are tracked
 * apart: it returns those that are not finite (NaN, ±Inf: vfpclassps),
 * which make the row bad. Always inlined, so that the call without masks
 * loses every test of b and k.
 */
XATTN_AVX512 static inline __attribute__((always_inline)) int pass1_512(float *row, int lim,
		const float *b, const unsigned char *k, float slope, int64_t d0, float *rowmax) {
	const __m512 ninf = _mm512_set1_ps(-INFINITY);
	const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	const __m512 vslope = _mm512_set1_ps(slope);
	__m512 vm = ninf;
	__mmask16 bad = 0;
	for (int j = 0; j < lim; j += 16) {
		__mmask16 mask = lim - j >= 16 ? (__mmask16)0xFFFF : tail512(lim - j);
		__m512 x = _mm512_maskz_loadu_ps(mask, row + j);
		__mmask16 vis = mask;
		if (slope != 0.0f) {
			/* ALiBi: slope·(column − diagonal), the product rounded before the sum as in rows.c. */
			__m512 dist = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_set1_epi32((int32_t)(j - d0)), iota));
			x = _mm512_add_ps(x, _mm512_mul_round_ps(vslope, dist, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		}
		if (b) {
			__m512 bv = _mm512_maskz_loadu_ps(mask, b + j);
			vis = _mm512_mask_cmp_ps_mask(vis, bv, ninf, _CMP_NEQ_OQ);
			x = _mm512_add_ps(x, bv);
		}
		if (k)
			vis = keep512(k + j, vis);
		if (b || k) {
			x = _mm512_mask_mov_ps(ninf, vis, x);
			_mm512_mask_storeu_ps(row + j, mask, x);
		} else if (slope != 0.0f)
			_mm512_mask_storeu_ps(row + j, mask, x);
		bad |= _mm512_mask_fpclass_ps_mask(vis, x, 0x99); /* QNaN, +Inf, −Inf, SNaN */
		vm = _mm512_mask_max_ps(vm, mask, vm, x);
	}
	*rowmax = _mm512_reduce_max_ps(vm);
	return bad != 0;
}

/*
 * pass2_512 is pass 2 of xattn_rows_avx512: the exponentials of the lim
 * scores of row less mnew in place, two vectors at a time, and their sum.
 */
XATTN_AVX512 static inline __attribute__((always_inline)) float pass2_512(float *row, int lim, float mnew) {
	const __m512 vm = _mm512_set1_ps(mnew);
	__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
	int j = 0;
	for (; j + 32 <= lim; j += 32) {
		__m512 p0 = exp512_prob(_mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
		__m512 p1 = exp512_prob(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), vm));
		_mm512_storeu_ps(row + j, p0);
		_mm512_storeu_ps(row + j + 16, p1);
		acc0 = _mm512_add_ps(acc0, p0);
		acc1 = _mm512_add_ps(acc1, p1);
	}
	for (; j < lim; j += 16) {
		__mmask16 mask = lim - j >= 16 ? (__mmask16)0xFFFF : tail512(lim - j);
		__m512 p = exp512_prob(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + j), vm));
		_mm512_mask_storeu_ps(row + j, mask, p);
		acc0 = _mm512_mask_add_ps(acc0, mask, acc0, p);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* corr_512 is e^(mx − mnew) with exp512_prob; the first block of a row (mx = −Inf) needs none. */
XATTN_AVX512 static inline __attribute__((always_inline)) float corr_512(float mx, float mnew) {
	return mx == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp512_prob(_mm512_set1_ps(mx - mnew)));
}

/* xattn_rowsm_avx512 is xattn_rowsm_scalar on 16 lanes, with masked loads and stores on the tail. */
XATTN_AVX512 void xattn_rowsm_avx512(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, const xattn_rowmask *rm,
		float *mx, float *sum, float *corr) {
	row_pass(m, n, s, lds, bias, ldbias, keep, ldkeep, rm, mx, sum, corr, pass1_512, pass2_512, corr_512);
}

/* xattn_rows_avx512 is xattn_rows_scalar on 16 lanes. */
XATTN_ROWS_CAUSAL(avx512)

/* xattn_scale_avx512 is xattn_scale_scalar on 16 lanes. */
XATTN_AVX512 void xattn_scale_avx512(int m, int n, float *c, int ldc, const float *f) {
	for (int r = 0; r < m; r++) {
		float *row = scale_row(r, n, c, ldc, f);
		if (!row)
			continue;
		const float fr = f[r];
		const __m512 vf = _mm512_set1_ps(fr);
		for (int j = 0; j < n; j += 16) {
			__mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : tail512(n - j);
			_mm512_mask_storeu_ps(row + j, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + j), vf));
		}
	}
}

/* xattn_finite_avx512 is xattn_finite_scalar on 16 lanes. */
XATTN_AVX512 int xattn_finite_avx512(int m, int n, const float *c, int64_t ldc) {
	__mmask16 bad = 0;
	for (int r = 0; r < m; r++) {
		const float *row = c + (int64_t)r * ldc;
		for (int j = 0; j < n; j += 16) {
			__mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : tail512(n - j);
			bad |= _mm512_mask_fpclass_ps_mask(mask, _mm512_maskz_loadu_ps(mask, row + j), 0x99);
		}
	}
	return !bad;
}

XATTN_AVX512 void xattn_exp_avx512(int n, const float *x, float *y) {
	for (int j = 0; j < n; j += 16) {
		__mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : tail512(n - j);
		_mm512_mask_storeu_ps(y + j, mask, exp512(_mm512_maskz_loadu_ps(mask, x + j)));
	}
}

#else
/* Off x86-64 no table reaches these; a slip ends the process with a message. */
XATTN_ROW_PASS_UNAVAILABLE(avx512)
#endif
