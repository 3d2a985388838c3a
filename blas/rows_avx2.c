//go:build cgo && !purego

/*
 * The AVX2+FMA row pass, row scale, finite check and exponential: rows.c's
 * scalar code on vectors.
 */
#include "rows.h"

#if defined(XATTN_X86)

/* ------------------------------------------------------------------ AVX2 */

/*
 * exp256 is pure.Exp on 8 lanes: the same clamp, reduction (n rounded half
 * away from zero), polynomial and scaling, with fused multiply-adds, so a
 * lane may differ from pure.Exp by an ulp. 2^n is applied as 2^⌊n/2⌋·2^⌈n/2⌉,
 * two normal factors, so subnormal results are rounded once, as in pure.
 */
XATTN_AVX2 static inline __attribute__((always_inline)) __m256 exp256_below(__m256 x, float below) {
	const __m256 lo = _mm256_set1_ps(below), hi = _mm256_set1_ps(EXP_HI);
	__m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
	__m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
	/*
	 * Lanes below EXP_LO compute e^0 and are set to 0 at the end: clamping
	 * them to EXP_LO instead would make subnormals, and with them
	 * microcode assists that cost ~100 cycles a vector (every masked score
	 * is −Inf). min returns its second operand for NaN, so NaN passes.
	 */
	x = _mm256_blendv_ps(_mm256_min_ps(hi, x), _mm256_setzero_ps(), under);
	__m256 t = _mm256_mul_ps(x, _mm256_set1_ps(LOG2E));
	__m256 half = _mm256_or_ps(_mm256_set1_ps(0.5f), _mm256_and_ps(t, _mm256_set1_ps(-0.0f)));
	__m256 fn = _mm256_round_ps(_mm256_add_ps(t, half), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(LN2_HI), x);
	r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(LN2_LO), r);
	__m256 p = _mm256_set1_ps(EXP_P0);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
	__m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
	__m256i n = _mm256_cvtps_epi32(fn);
	__m256i n1 = _mm256_srai_epi32(n, 1);
	__m256i n2 = _mm256_sub_epi32(n, n1);
	const __m256i bias = _mm256_set1_epi32(127);
	__m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
	__m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
	__m256 e = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
	e = _mm256_blendv_ps(e, _mm256_setzero_ps(), under);
	return _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), over);
}

/* exp256 is pure.Exp; exp256_prob is pure.ExpProb, the row pass's (0 below PROB_LO). */
XATTN_AVX2 static inline __m256 exp256(__m256 x) { return exp256_below(x, EXP_LO); }
XATTN_AVX2 static inline __m256 exp256_prob(__m256 x) { return exp256_below(x, PROB_LO); }

/* tail256 is a load/store mask of the first rem < 8 lanes. */
XATTN_AVX2 static inline __m256i tail256(int rem) {
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* drop256 is all-ones in lane i where keep[i] is false, for 8 bools. */
XATTN_AVX2 static inline __m256 drop256(const unsigned char *keep) {
	__m128i kb = _mm_loadl_epi64((const __m128i *)keep);
	__m256i ki = _mm256_cvtepu8_epi32(kb);
	return _mm256_castsi256_ps(_mm256_cmpeq_epi32(ki, _mm256_setzero_si256()));
}

XATTN_AVX2 static inline float hmax256(__m256 v) {
	__m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	x = _mm_max_ps(x, _mm_movehl_ps(x, x));
	x = _mm_max_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

XATTN_AVX2 static inline float hsum256(__m256 v) {
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

/*
 * alibi256 is the ALiBi term of 8 columns, slope·(c + lane) with c the
 * first one's distance from the diagonal, the product rounded alone (no
 * FMA with the score) as in rows.c.
 */
XATTN_AVX2 static inline __m256 alibi256(__m256 vslope, __m256i iota, int64_t c) {
	__m256 dist = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32((int32_t)c), iota));
	__m256 t = _mm256_mul_ps(vslope, dist);
	__asm__("" : "+x"(t)); /* keep the product apart from the sum: no contraction to an FMA */
	return t;
}

/*
 * pass1_256 is pass 1 of xattn_rowsm_avx2 over the lim scores of row, with bias
 * row b and keep row k (either NULL): mask, ALiBi, bias, store, maximum into
 * *rowmax. It returns whether a visible lane is not finite: x − x is NaN
 * exactly where x is not finite, and OR-ed over the visible lanes (masked
 * ones, set to −Inf, cleared) its bits are a NaN iff one of them was.
 * Always inlined, so that the call without masks loses every test of b
 * and k.
 */
XATTN_AVX2 static inline __attribute__((always_inline)) int pass1_256(float *row, int lim,
		const float *b, const unsigned char *k, float slope, int64_t d0, float *rowmax) {
	const __m256 ninf = _mm256_set1_ps(-INFINITY);
	const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	const __m256 vslope = _mm256_set1_ps(slope);
	__m256 vm = ninf, vbad = _mm256_setzero_ps();
	int j = 0;
	for (; j + 8 <= lim; j += 8) {
		__m256 x = _mm256_loadu_ps(row + j);
		if (slope != 0.0f)
			x = _mm256_add_ps(x, alibi256(vslope, iota, j - d0));
		__m256 dead = _mm256_setzero_ps();
		if (b) {
			__m256 bv = _mm256_loadu_ps(b + j);
			x = _mm256_add_ps(x, bv);
			dead = _mm256_cmp_ps(bv, ninf, _CMP_EQ_OQ);
		}
		if (k)
			dead = _mm256_or_ps(dead, drop256(k + j));
		__m256 z = _mm256_sub_ps(x, x);
		if (b || k) {
			x = _mm256_blendv_ps(x, ninf, dead);
			z = _mm256_andnot_ps(dead, z);
		}
		_mm256_storeu_ps(row + j, x);
		vbad = _mm256_or_ps(vbad, z);
		vm = _mm256_max_ps(vm, x);
	}
	if (j < lim) {
		int rem = lim - j;
		__m256i mask = tail256(rem);
		__m256 x = _mm256_maskload_ps(row + j, mask);
		if (slope != 0.0f)
			x = _mm256_add_ps(x, alibi256(vslope, iota, j - d0));
		__m256 dead = _mm256_setzero_ps();
		if (b) {
			__m256 bv = _mm256_maskload_ps(b + j, mask);
			x = _mm256_add_ps(x, bv);
			dead = _mm256_cmp_ps(bv, ninf, _CMP_EQ_OQ);
		}
		if (k) {
			unsigned char kt[8] = {0};
			memcpy(kt, k + j, (size_t)rem);
			dead = _mm256_or_ps(dead, drop256(kt));
		}
		__m256 z = _mm256_andnot_ps(dead, _mm256_sub_ps(x, x));
		x = _mm256_blendv_ps(x, ninf, dead);
		_mm256_maskstore_ps(row + j, mask, x);
		x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(mask));
		vbad = _mm256_or_ps(vbad, z);
		vm = _mm256_max_ps(vm, x);
	}
	*rowmax = hmax256(vm);
	return _mm256_movemask_ps(_mm256_cmp_ps(vbad, vbad, _CMP_UNORD_Q));
}

/*
 * pass2_256 is pass 2 of xattn_rows_avx2: the exponentials of the lim
 * scores of row less mnew in place, two vectors at a time, and their sum.
 */
XATTN_AVX2 static inline __attribute__((always_inline)) float pass2_256(float *row, int lim, float mnew) {
	const __m256 vm = _mm256_set1_ps(mnew);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	int j = 0;
	for (; j + 16 <= lim; j += 16) {
		__m256 p0 = exp256_prob(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
		__m256 p1 = exp256_prob(_mm256_sub_ps(_mm256_loadu_ps(row + j + 8), vm));
		_mm256_storeu_ps(row + j, p0);
		_mm256_storeu_ps(row + j + 8, p1);
		acc0 = _mm256_add_ps(acc0, p0);
		acc1 = _mm256_add_ps(acc1, p1);
	}
	if (j + 8 <= lim) {
		__m256 p = exp256_prob(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
		_mm256_storeu_ps(row + j, p);
		acc0 = _mm256_add_ps(acc0, p);
		j += 8;
	}
	if (j < lim) {
		__m256i mask = tail256(lim - j);
		__m256 p = exp256_prob(_mm256_sub_ps(_mm256_maskload_ps(row + j, mask), vm));
		p = _mm256_and_ps(p, _mm256_castsi256_ps(mask));
		_mm256_maskstore_ps(row + j, mask, p);
		acc1 = _mm256_add_ps(acc1, p);
	}
	return hsum256(_mm256_add_ps(acc0, acc1));
}

/* corr_256 is e^(mx − mnew) with exp256_prob. */
XATTN_AVX2 static inline __attribute__((always_inline)) float corr_256(float mx, float mnew) {
	return _mm256_cvtss_f32(exp256_prob(_mm256_set1_ps(mx - mnew)));
}

/* xattn_rowsm_avx2 is xattn_rowsm_scalar on 8 lanes, with masked loads and stores on the tail. */
XATTN_AVX2 void xattn_rowsm_avx2(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, const xattn_rowmask *rm,
		float *mx, float *sum, float *corr) {
	row_pass(m, n, s, lds, bias, ldbias, keep, ldkeep, rm, mx, sum, corr, pass1_256, pass2_256, corr_256);
}

/* xattn_rows_avx2 is xattn_rows_scalar on 8 lanes. */
XATTN_ROWS_CAUSAL(avx2)

/* xattn_scale_avx2 is xattn_scale_scalar on 8 lanes. */
XATTN_AVX2 void xattn_scale_avx2(int m, int n, float *c, int ldc, const float *f) {
	for (int r = 0; r < m; r++) {
		float *row = scale_row(r, n, c, ldc, f);
		if (!row)
			continue;
		const float fr = f[r];
		const __m256 vf = _mm256_set1_ps(fr);
		int j = 0;
		for (; j + 8 <= n; j += 8)
			_mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), vf));
		if (j < n) {
			__m256i mask = tail256(n - j);
			_mm256_maskstore_ps(row + j, mask, _mm256_mul_ps(_mm256_maskload_ps(row + j, mask), vf));
		}
	}
}

/* xattn_finite_avx2 is xattn_finite_scalar on 8 lanes: x − x is NaN exactly where x is not finite. */
XATTN_AVX2 int xattn_finite_avx2(int m, int n, const float *c, int64_t ldc) {
	__m256 acc = _mm256_setzero_ps();
	for (int r = 0; r < m; r++) {
		const float *row = c + (int64_t)r * ldc;
		int j = 0;
		for (; j + 8 <= n; j += 8) {
			__m256 x = _mm256_loadu_ps(row + j);
			acc = _mm256_or_ps(acc, _mm256_sub_ps(x, x));
		}
		if (j < n) {
			__m256 x = _mm256_maskload_ps(row + j, tail256(n - j));
			acc = _mm256_or_ps(acc, _mm256_sub_ps(x, x));
		}
	}
	return !_mm256_movemask_ps(_mm256_cmp_ps(acc, acc, _CMP_UNORD_Q));
}

XATTN_AVX2 void xattn_exp_avx2(int n, const float *x, float *y) {
	int j = 0;
	for (; j + 8 <= n; j += 8)
		_mm256_storeu_ps(y + j, exp256(_mm256_loadu_ps(x + j)));
	if (j < n) {
		__m256i mask = tail256(n - j);
		_mm256_maskstore_ps(y + j, mask, exp256(_mm256_maskload_ps(x + j, mask)));
	}
}

#else
/* Off x86-64 no table reaches these; a slip ends the process with a message. */
XATTN_ROW_PASS_UNAVAILABLE(avx2)
#endif
