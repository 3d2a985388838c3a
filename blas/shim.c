//go:build cgo && !purego

/*
 * The C shim of the OpenBLAS backend: see shim.h for the contract and
 * cblas.go for the Go side. The scalar code is the reference for the vector
 * variants and follows package pure line by line; the AVX2 and AVX-512
 * variants are compiled with per-function target attributes, so the file
 * needs no -m flags and runs on any x86-64 (and builds without them
 * elsewhere), and the Go side picks the variant from cpuid.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "shim.h"

#if defined(__x86_64__)
#define XATTN_X86 1
#include <immintrin.h>
#define XATTN_AVX2 __attribute__((target("avx2,fma")))
#define XATTN_AVX512 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")))
#endif

/*
 * Constants of pure.Exp (pure/exp.go), rounded to float32 exactly as Go
 * rounds its untyped constants: Cody–Waite range reduction with ln 2 split in
 * a high part exact in float32 and a low correction, and the Cephes expf
 * polynomial for (e^r − 1 − r)/r² on |r| ≤ ln2/2.
 */
#define EXP_HI 88.72283935546875f
#define EXP_LO -103.97208404541016f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* ---------------------------------------------------------------- scalar */

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

/* gomax is Go's max for two floats: NaN if either is NaN. */
static inline float gomax(float a, float b) {
	if (a != a)
		return a;
	if (b != b)
		return b;
	return a > b ? a : b;
}

/* row_limit is the number of leading columns row r may see: n, or clamp(lim0+r, 0, n) when causal. */
static inline int row_limit(int n, int causal, int64_t lim0, int r) {
	if (!causal)
		return n;
	int64_t l = lim0 + r;
	if (l < 0)
		return 0;
	return l < n ? (int)l : n;
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
 * seen reports whether column j of a row with limit lim, bias row b and keep
 * row k (either NULL) is a visible key: before the limit, kept, and not
 * biased to −Inf. The mask alone decides, never the score.
 */
static inline int seen(int j, int lim, const float *b, const unsigned char *k) {
	return j < lim && (!k || k[j]) && (!b || b[j] != -INFINITY);
}

/*
 * row_bad ends a row that met a non-finite score on a visible column, or
 * whose running maximum is NaN from an earlier block, as pure.SoftmaxRows
 * does: NaN on its visible columns, 0 on every masked one, and NaN for max,
 * sum and corr, so that the row's output becomes NaN and nothing else does.
 */
__attribute__((cold, noinline)) static void row_bad(float *row, int lim, int n, const float *b, const unsigned char *k,
		float *mx, float *sum, float *corr) {
	for (int j = 0; j < n; j++)
		row[j] = seen(j, lim, b, k) ? NAN : 0.0f;
	*mx = *sum = *corr = NAN;
}

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

/* rows_scalar is pure.SoftmaxRows. */
static void rows_scalar(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, int causal, int64_t lim0,
		float *mx, float *sum, float *corr) {
	for (int r = 0; r < m; r++) {
		float *row = s + (int64_t)r * lds;
		int lim = row_limit(n, causal, lim0, r);
		const float *b = bias ? bias + (int64_t)r * ldbias : NULL;
		const unsigned char *k = keep ? keep + (int64_t)r * ldkeep : NULL;
		float rowmax = -INFINITY;
		int bad = 0;
		for (int j = 0; j < lim; j++) {
			float x = row[j];
			if (b)
				x += b[j];
			if ((k && !k[j]) || (b && b[j] == -INFINITY))
				x = -INFINITY;
			else if (x - x != 0.0f) /* NaN or ±Inf on a visible column */
				bad = 1;
			row[j] = x;
			rowmax = gomax(rowmax, x);
		}
		if (bad || mx[r] != mx[r]) {
			row_bad(row, lim, n, b, k, &mx[r], &sum[r], &corr[r]);
			continue;
		}
		float mnew = row_start(rowmax, row, n, &mx[r], &corr[r]);
		if (mnew == -INFINITY)
			continue;
		float acc = 0.0f;
		for (int j = 0; j < lim; j++) {
			float p = exp_scalar(row[j] - mnew);
			row[j] = p;
			acc += p;
		}
		row_end(row, lim, n, mnew, exp_scalar(mx[r] - mnew), acc, &mx[r], &sum[r], &corr[r]);
	}
}

/*
 * finite_scalar reports whether every value of the m×n matrix c (leading
 * dimension ldc) is finite.
 */
static int finite_scalar(int m, int n, const float *c, int64_t ldc) {
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

/* scale_scalar is pure.ScaleRows. */
static void scale_scalar(int m, int n, float *c, int ldc, const float *f) {
	for (int r = 0; r < m; r++) {
		float fr = f[r];
		if (fr == 1.0f)
			continue;
		float *row = c + (int64_t)r * ldc;
		if (fr == 0.0f) {
			memset(row, 0, (size_t)n * sizeof *row);
			continue;
		}
		for (int j = 0; j < n; j++)
			row[j] *= fr;
	}
}

#if defined(XATTN_X86)

/* ------------------------------------------------------------------ AVX2 */

/*
 * exp256 is pure.Exp on 8 lanes: the same clamp, reduction (n rounded half
 * away from zero), polynomial and scaling, with fused multiply-adds, so a
 * lane may differ from pure.Exp by an ulp. 2^n is applied as 2^⌊n/2⌋·2^⌈n/2⌉,
 * two normal factors, so subnormal results are rounded once, as in pure.
 */
XATTN_AVX2 static inline __m256 exp256(__m256 x) {
	const __m256 lo = _mm256_set1_ps(EXP_LO), hi = _mm256_set1_ps(EXP_HI);
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
 * pass1_256 is pass 1 of rows_avx2 over the lim scores of row, with bias
 * row b and keep row k (either NULL): mask, bias, store, maximum into
 * *vmax. It returns whether a visible lane is not finite: x − x is NaN
 * exactly where x is not finite, and OR-ed over the visible lanes (masked
 * ones, set to −Inf, cleared) its bits are a NaN iff one of them was.
 * Always inlined, so that the call without masks loses every test of b
 * and k.
 */
XATTN_AVX2 static inline __attribute__((always_inline)) int pass1_256(float *row, int lim,
		const float *b, const unsigned char *k, __m256 *vmax) {
	const __m256 ninf = _mm256_set1_ps(-INFINITY);
	__m256 vm = ninf, vbad = _mm256_setzero_ps();
	int j = 0;
	for (; j + 8 <= lim; j += 8) {
		__m256 x = _mm256_loadu_ps(row + j);
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
	*vmax = vm;
	return _mm256_movemask_ps(_mm256_cmp_ps(vbad, vbad, _CMP_UNORD_Q));
}

/* rows_avx2 is rows_scalar on 8 lanes, with masked loads and stores on the tail. */
XATTN_AVX2 static void rows_avx2(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, int causal, int64_t lim0,
		float *mx, float *sum, float *corr) {
	for (int r = 0; r < m; r++) {
		float *row = s + (int64_t)r * lds;
		int lim = row_limit(n, causal, lim0, r);
		const float *b = bias ? bias + (int64_t)r * ldbias : NULL;
		const unsigned char *k = keep ? keep + (int64_t)r * ldkeep : NULL;

		/* Pass 1: mask, bias, store, maximum. */
		__m256 vmax;
		int bad = b || k ? pass1_256(row, lim, b, k, &vmax) : pass1_256(row, lim, NULL, NULL, &vmax);
		if (bad || mx[r] != mx[r]) {
			row_bad(row, lim, n, b, k, &mx[r], &sum[r], &corr[r]);
			continue;
		}
		float mnew = row_start(hmax256(vmax), row, n, &mx[r], &corr[r]);
		if (mnew == -INFINITY)
			continue;

		/* Pass 2: exponentials in place and their sum, two vectors at a time. */
		const __m256 vm = _mm256_set1_ps(mnew);
		__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
		int j = 0;
		for (; j + 16 <= lim; j += 16) {
			__m256 p0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
			__m256 p1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j + 8), vm));
			_mm256_storeu_ps(row + j, p0);
			_mm256_storeu_ps(row + j + 8, p1);
			acc0 = _mm256_add_ps(acc0, p0);
			acc1 = _mm256_add_ps(acc1, p1);
		}
		if (j + 8 <= lim) {
			__m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
			_mm256_storeu_ps(row + j, p);
			acc0 = _mm256_add_ps(acc0, p);
			j += 8;
		}
		if (j < lim) {
			__m256i mask = tail256(lim - j);
			__m256 p = exp256(_mm256_sub_ps(_mm256_maskload_ps(row + j, mask), vm));
			p = _mm256_and_ps(p, _mm256_castsi256_ps(mask));
			_mm256_maskstore_ps(row + j, mask, p);
			acc1 = _mm256_add_ps(acc1, p);
		}
		row_end(row, lim, n, mnew, _mm256_cvtss_f32(exp256(_mm256_set1_ps(mx[r] - mnew))),
				hsum256(_mm256_add_ps(acc0, acc1)), &mx[r], &sum[r], &corr[r]);
	}
}

/* scale_avx2 is scale_scalar on 8 lanes. */
XATTN_AVX2 static void scale_avx2(int m, int n, float *c, int ldc, const float *f) {
	for (int r = 0; r < m; r++) {
		float fr = f[r];
		if (fr == 1.0f)
			continue;
		float *row = c + (int64_t)r * ldc;
		if (fr == 0.0f) {
			memset(row, 0, (size_t)n * sizeof *row);
			continue;
		}
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

/* finite_avx2 is finite_scalar on 8 lanes: x − x is NaN exactly where x is not finite. */
XATTN_AVX2 static int finite_avx2(int m, int n, const float *c, int64_t ldc) {
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

XATTN_AVX2 static void exp_avx2(int n, const float *x, float *y) {
	int j = 0;
	for (; j + 8 <= n; j += 8)
		_mm256_storeu_ps(y + j, exp256(_mm256_loadu_ps(x + j)));
	if (j < n) {
		__m256i mask = tail256(n - j);
		_mm256_maskstore_ps(y + j, mask, exp256(_mm256_maskload_ps(x + j, mask)));
	}
}

/* --------------------------------------------------------------- AVX-512 */

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
 * exp512_nonpos is exp512 for lanes that are ≤ 0, −Inf or NaN (scores less
 * their row's maximum): the same arithmetic, hence the same values, without
 * the overflow test and with the rounding of n done for t ≤ 0 alone — 17
 * vector operations instead of 22, on the row pass's critical port pair
 * (2.6 → 3.3 scores per ns on 512-key rows, measured).
 */
XATTN_AVX512 static inline __m512 exp512_nonpos(__m512 x) {
	const __m512 lo = _mm512_set1_ps(EXP_LO);
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
 * pass1_512 is pass 1 of rows_avx512 over the lim scores of row, with bias
 * row b and keep row k (either NULL): mask, bias, store, maximum into
 * *vmax. The visible lanes (in the row, kept, bias not −Inf) are tracked
 * apart: it returns those that are not finite (NaN, ±Inf: vfpclassps),
 * which make the row bad. Always inlined, so that the call without masks
 * loses every test of b and k.
 */
XATTN_AVX512 static inline __attribute__((always_inline)) __mmask16 pass1_512(float *row, int lim,
		const float *b, const unsigned char *k, __m512 *vmax) {
	const __m512 ninf = _mm512_set1_ps(-INFINITY);
	__m512 vm = ninf;
	__mmask16 bad = 0;
	for (int j = 0; j < lim; j += 16) {
		__mmask16 mask = lim - j >= 16 ? (__mmask16)0xFFFF : tail512(lim - j);
		__m512 x = _mm512_maskz_loadu_ps(mask, row + j);
		__mmask16 vis = mask;
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
		}
		bad |= _mm512_mask_fpclass_ps_mask(vis, x, 0x99); /* QNaN, +Inf, −Inf, SNaN */
		vm = _mm512_mask_max_ps(vm, mask, vm, x);
	}
	*vmax = vm;
	return bad;
}

/* rows_avx512 is rows_scalar on 16 lanes, with masked loads and stores on the tail. */
XATTN_AVX512 static void rows_avx512(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, int causal, int64_t lim0,
		float *mx, float *sum, float *corr) {
	for (int r = 0; r < m; r++) {
		float *row = s + (int64_t)r * lds;
		int lim = row_limit(n, causal, lim0, r);
		const float *b = bias ? bias + (int64_t)r * ldbias : NULL;
		const unsigned char *k = keep ? keep + (int64_t)r * ldkeep : NULL;

		/* Pass 1: mask, bias, store, maximum. */
		__m512 vmax;
		__mmask16 bad = b || k ? pass1_512(row, lim, b, k, &vmax) : pass1_512(row, lim, NULL, NULL, &vmax);
		if (bad || mx[r] != mx[r]) {
			row_bad(row, lim, n, b, k, &mx[r], &sum[r], &corr[r]);
			continue;
		}
		float mnew = row_start(_mm512_reduce_max_ps(vmax), row, n, &mx[r], &corr[r]);
		if (mnew == -INFINITY)
			continue;

		/* Pass 2: exponentials in place and their sum, two vectors at a time. */
		const __m512 vm = _mm512_set1_ps(mnew);
		__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
		int j = 0;
		for (; j + 32 <= lim; j += 32) {
			__m512 p0 = exp512_nonpos(_mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
			__m512 p1 = exp512_nonpos(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), vm));
			_mm512_storeu_ps(row + j, p0);
			_mm512_storeu_ps(row + j + 16, p1);
			acc0 = _mm512_add_ps(acc0, p0);
			acc1 = _mm512_add_ps(acc1, p1);
		}
		for (; j < lim; j += 16) {
			__mmask16 mask = lim - j >= 16 ? (__mmask16)0xFFFF : tail512(lim - j);
			__m512 p = exp512_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + j), vm));
			_mm512_mask_storeu_ps(row + j, mask, p);
			acc0 = _mm512_mask_add_ps(acc0, mask, acc0, p);
		}
		/* The first block of a row (max −Inf) needs no exponential for corr. */
		row_end(row, lim, n, mnew, mx[r] == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp512(_mm512_set1_ps(mx[r] - mnew))),
				_mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)), &mx[r], &sum[r], &corr[r]);
	}
}

/* scale_avx512 is scale_scalar on 16 lanes. */
XATTN_AVX512 static void scale_avx512(int m, int n, float *c, int ldc, const float *f) {
	for (int r = 0; r < m; r++) {
		float fr = f[r];
		if (fr == 1.0f)
			continue;
		float *row = c + (int64_t)r * ldc;
		if (fr == 0.0f) {
			memset(row, 0, (size_t)n * sizeof *row);
			continue;
		}
		const __m512 vf = _mm512_set1_ps(fr);
		for (int j = 0; j < n; j += 16) {
			__mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : tail512(n - j);
			_mm512_mask_storeu_ps(row + j, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + j), vf));
		}
	}
}

/* finite_avx512 is finite_scalar on 16 lanes. */
XATTN_AVX512 static int finite_avx512(int m, int n, const float *c, int64_t ldc) {
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

XATTN_AVX512 static void exp_avx512(int n, const float *x, float *y) {
	for (int j = 0; j < n; j += 16) {
		__mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : tail512(n - j);
		_mm512_mask_storeu_ps(y + j, mask, exp512(_mm512_maskz_loadu_ps(mask, x + j)));
	}
}

#endif /* XATTN_X86 */

/* -------------------------------------------------------------- dispatch */

typedef void (*rows_fn)(int, int, float *, int, const float *, int, const unsigned char *, int,
		int, int64_t, float *, float *, float *);
typedef void (*scale_fn)(int, int, float *, int, const float *);
typedef int (*finite_fn)(int, int, const float *, int64_t);

/*
 * PICK(type, name) defines pick_name(isa): name_avx512, name_avx2 or
 * name_scalar, the variant isa of name; scalar where the vector code is not
 * compiled.
 */
#if defined(XATTN_X86)
#define PICK(type, name)                             \
	static type pick_##name(int isa) {               \
		if (isa == XATTN_ISA_AVX512)                 \
			return name##_avx512;                    \
		if (isa == XATTN_ISA_AVX2)                   \
			return name##_avx2;                      \
		return name##_scalar;                        \
	}
#else
#define PICK(type, name)                             \
	static type pick_##name(int isa) {               \
		(void)isa;                                   \
		return name##_scalar;                        \
	}
#endif
PICK(rows_fn, rows)
PICK(scale_fn, scale)
PICK(finite_fn, finite)

void xattn_softmax_rows(int isa, int m, int n, float *s, int lds,
		const float *bias, int ldbias, const unsigned char *keep, int ldkeep,
		int causal, int64_t lim0, float *mx, float *sum, float *corr) {
	if (n == 0) {
		/* No scores (s may be NULL): only the running state moves, as in pure. */
		for (int r = 0; r < m; r++) {
			float mnew = gomax(mx[r], -INFINITY);
			if (mnew == -INFINITY) {
				corr[r] = 1.0f;
				continue;
			}
			row_end(NULL, 0, 0, mnew, exp_scalar(mx[r] - mnew), 0.0f, &mx[r], &sum[r], &corr[r]);
		}
		return;
	}
	pick_rows(isa)(m, n, s, lds, bias, ldbias, keep, ldkeep, causal, lim0, mx, sum, corr);
}

void xattn_scale_rows(int isa, int m, int n, float *c, int ldc, const float *f) {
	pick_scale(isa)(m, n, c, ldc, f);
}

void xattn_exp(int isa, int n, const float *x, float *y) {
#if defined(XATTN_X86)
	if (isa == XATTN_ISA_AVX512) {
		exp_avx512(n, x, y);
		return;
	}
	if (isa == XATTN_ISA_AVX2) {
		exp_avx2(n, x, y);
		return;
	}
#endif
	(void)isa;
	for (int j = 0; j < n; j++)
		y[j] = exp_scalar(x[j]);
}

/* ------------------------------------------------------------------ GEMM */

/* scale_all multiplies the m×n matrix c by beta; beta = 0 stores zeros (Go's scaleAll). */
static void scale_all(int m, int n, float *c, int ldc, float beta) {
	if (beta == 1.0f)
		return;
	for (int i = 0; i < m; i++) {
		float *row = c + (int64_t)i * ldc;
		if (beta == 0.0f) {
			memset(row, 0, (size_t)n * sizeof *row);
			continue;
		}
		for (int j = 0; j < n; j++)
			row[j] *= beta;
	}
}

/* add_bias sets each row of the m×n matrix c to beta·row + bias, not reading c when beta = 0 (Go's addBias). */
static void add_bias(int m, int n, float *c, int ldc, float beta, const float *bias) {
	for (int i = 0; i < m; i++) {
		float *row = c + (int64_t)i * ldc;
		if (beta == 0.0f) {
			memcpy(row, bias, (size_t)n * sizeof *row);
			continue;
		}
		for (int j = 0; j < n; j++)
			row[j] = beta * row[j] + bias[j];
	}
}

void xattn_sgemm_batch(int count, int transb, int m, int n, int k, float alpha,
		const float *a, int lda, int64_t sa, const float *b, int ldb, int64_t sb,
		float beta, float *c, int ldc, int64_t sc, const float *bias) {
	for (int i = 0; i < count; i++) {
		float *ci = c + i * sc;
		float bt = beta;
		if (bias) {
			add_bias(m, n, ci, ldc, beta, bias);
			bt = 1.0f;
		}
		if (k == 0) {
			if (!bias)
				scale_all(m, n, ci, ldc, bt);
			continue;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans,
				m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, bt, ci, ldc);
	}
}

/* ------------------------------------------------------------- attention */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/*
 * Non-finite values. A visible non-finite score ends its row in row_bad, so
 * that the row's output is NaN; a masked key's score never counts. A masked
 * key's value row is still multiplied by its probability 0 in P·V, and
 * 0·NaN = NaN: the products cannot leave it out. So a task whose outputs
 * are all finite is done; one with a non-finite output runs again,
 * careful: each value block that holds a non-finite row is read from a copy
 * with those rows zeroed, the same bits a finite row with probability 0
 * gives, and fix_pv adds p·V_j of each such row j back to the rows that see
 * it, p = 0 (underflow) included, as a product would: 0·NaN = NaN.
 */

/* v_bad reports whether row j of the nb×dv value block v (leading dimension ldv) holds a non-finite value. */
static inline int v_bad(const float *v, int64_t ldv, int j, int dv) {
	return !finite_scalar(1, dv, v + (int64_t)j * ldv, 0);
}

/*
 * fix_pv adds p[r,j]·v[j,:] to o[r,:] for every row r < mq and every
 * non-finite row j < nb of v that row r sees (its limit, keep and bias rows
 * as for the row pass).
 */
static void fix_pv(int mq, int nb, int dv, const float *p, int lds, const float *v, int64_t ldv,
		const float *bias, int ldbias, const unsigned char *keep, int ldkeep, int causal, int64_t lim0,
		float *o, int64_t ldo) {
	for (int j = 0; j < nb; j++) {
		if (!v_bad(v, ldv, j, dv))
			continue;
		const float *vj = v + (int64_t)j * ldv;
		for (int r = 0; r < mq; r++) {
			const float *b = bias ? bias + (int64_t)r * ldbias : NULL;
			const unsigned char *k = keep ? keep + (int64_t)r * ldkeep : NULL;
			if (!seen(j, row_limit(nb, causal, lim0, r), b, k))
				continue;
			const float pr = p[(int64_t)r * lds + j];
			float *orow = o + (int64_t)r * ldo;
			for (int d = 0; d < dv; d++)
				orow[d] += pr * vj[d];
		}
	}
}

void xattn_attend(int isa, const xattn_attention *p, const float *q,
		const float *k, const float *v, float *o, const int32_t *key_len,
		const unsigned char *keep, const float *bias, const float *ktp, float *stats,
		float *scratch, int64_t t0, int64_t t1) {
	rows_fn rows = pick_rows(isa);
	scale_fn scale = pick_scale(isa);
	finite_fn finite = pick_finite(isa);
	const int64_t nqb = (p->tq + p->q_block - 1) / p->q_block;
	const int hb = p->head_block;
	const int64_t nhb = (p->heads + hb - 1) / hb;
	const int group = p->heads / p->kv_heads;
	float *s = scratch;
	/* Scores of a block: q_block rows of every head of a task (stacked, below). */
	const int64_t slen = (int64_t)p->q_block * hb * ((p->kv_block + 15) / 16 * 16);
	/* Running maximum, sum and correction of row r of head i of the task: [i·q_block + r]. */
	float *mxs = scratch + slen;
	float *sums = mxs + (int64_t)p->q_block * hb;
	float *corrs = sums + (int64_t)p->q_block * hb;
	/*
	 * With AVX-512 both products run on xattn_gemm_avx512, which reads A in
	 * place, the key block from its packed transpose kt and the value block
	 * from its copy in panels vt (a head's value rows lie a page apart, all
	 * in the same few L1 sets: 88 → 75 ms for the Perceiver's core on one
	 * thread): OpenBLAS packs both operands on every call, which cost about
	 * as much as the products on these tiles. Each block is packed once for
	 * all the heads of a task. The other variants use vt only for a careful
	 * block's copy of its values (row-major, leading dimension dv).
	 */
	const int own = isa == XATTN_ISA_AVX512;
	float *kt = scratch + (slen + 3 * (int64_t)p->q_block * hb + 15) / 16 * 16;
	const int64_t ldp = (p->kv_block + 15) / 16 * 16; /* rows of a panel of packed values */
	float *vt = kt + (int64_t)p->dk * ((p->kv_block + 63) / 64 * 64);

	for (int64_t t = t0; t < t1; t++) {
		/*
		 * The task: batch b, query heads [h0, h0+nh) sharing key/value
		 * head g, query rows [q0, q0+mq). The keys are walked once, block
		 * by block, for all its heads.
		 */
		const int64_t bh = t / nqb;
		const int b = (int)(bh / nhb), h0 = (int)(bh % nhb) * hb;
		const int nh = p->heads - h0 < hb ? p->heads - h0 : hb;
		const int q0 = (int)(t % nqb) * p->q_block;
		const int mq = (int)min64(p->q_block, p->tq - q0);
		const int g = h0 / group;
		const int64_t kb = p->batch_k * b + (int64_t)p->dk * g;
		const int64_t vb = p->batch_v * b + (int64_t)p->dv * g;
		const int stack = own && nh > 1 && nh == p->heads && p->ldq == (int64_t)p->heads * p->dk &&
				p->ldo == (int64_t)p->heads * p->dv;
		/* The keys any row of the block can see: key length and causal diagonal. */
		int64_t nk = p->tk;
		if (key_len)
			nk = min64(nk, max64(key_len[b], 0));
		if (p->causal)
			nk = min64(nk, max64(q0 + mq + p->causal_offset, 0));
		int careful = 0;
	again:
		for (int r = 0; r < p->q_block * nh; r++) {
			mxs[r] = -INFINITY;
			sums[r] = 0.0f;
		}

		for (int64_t k0 = 0; k0 < nk; k0 += p->kv_block) {
			const int nb = (int)min64(p->kv_block, nk - k0);
			/* S's rows start on 64-byte boundaries: aligned stores and loads. */
			const int lds = (nb + 15) / 16 * 16;
			const float *kb_t = kt;
			const float *vblk = v + vb + k0 * p->ldv; /* the value block as the product reads it */
			int64_t ldvb = p->ldv;
			if (p->dk > 0 && own) {
				if (ktp && p->kv_block % 64 == 0)
					kb_t = ktp + p->kt_batch * b + p->kt_head * g + k0 * (int64_t)p->dk;
				else
					xattn_pack_kt(nb, p->dk, k + kb + k0 * p->ldk, p->ldk, kt);
			}
			if (p->dv > 0 && own)
				xattn_pack_rows(nb, p->dv, vblk, p->ldv, vt, ldp);
			int fix = 0; /* the block has non-finite values, zeroed in vt */
			if (careful && p->dv > 0) {
				for (int j = 0; j < nb && !fix; j++)
					fix = v_bad(vblk, p->ldv, j, p->dv);
				if (fix && !own) {
					for (int j = 0; j < nb; j++)
						memcpy(vt + (int64_t)j * p->dv, vblk + (int64_t)j * p->ldv, (size_t)p->dv * sizeof *vt);
					vblk = vt, ldvb = p->dv;
				}
				for (int j = 0; fix && j < nb; j++) {
					if (!v_bad(v + vb + k0 * p->ldv, p->ldv, j, p->dv))
						continue;
					if (!own) {
						memset(vt + (int64_t)j * p->dv, 0, (size_t)p->dv * sizeof *vt);
						continue;
					}
					for (int d = 0; d < p->dv; d++)
						vt[(int64_t)(d / 64) * 64 * ldp + (int64_t)j * 64 + d % 64] = 0.0f;
				}
			}
			if (stack) {
				/*
				 * Every head of the row, side by side in Q and O: row i
				 * of head h is row i·heads + h of one matrix with
				 * leading dimension dk (dv), so both products run once
				 * for all heads, mq·heads rows tall; the row pass runs
				 * per head on every heads-th row of S.
				 */
				const int ms = mq * nh;
				float *os = o + p->batch_o * b + (int64_t)p->ldo * q0;
				if (p->dk > 0)
					xattn_gemm_avx512_pf(ms, nb, p->dk, p->scale, q + p->batch_q * b + (int64_t)p->ldq * q0, p->dk,
							kb_t, 64, 64 * (int64_t)p->dk, 0.0f, s, lds, NULL, 0);
				else
					memset(s, 0, (size_t)ms * (size_t)lds * sizeof *s);
				for (int i = 0; i < nh; i++) {
					const int h = h0 + i;
					float *mx = mxs + i * p->q_block, *sum = sums + i * p->q_block, *corr = corrs + i * p->q_block;
					const float *bb = bias ? bias + p->bias_stride[0] * b + p->bias_stride[1] * h + p->bias_stride[2] * q0 + k0 : NULL;
					const unsigned char *kk = keep ? keep + p->keep_stride[0] * b + p->keep_stride[1] * h + p->keep_stride[2] * q0 + k0 : NULL;
					rows(mq, nb, s + (int64_t)i * lds, lds * nh, bb, (int)p->bias_stride[2], kk, (int)p->keep_stride[2],
							p->causal, q0 + p->causal_offset + 1 - k0, mx, sum, corr);
					if (p->dv > 0 && k0 > 0)
						scale(mq, p->dv, os + (int64_t)p->dv * h, p->ldo, corr);
				}
				if (p->dv > 0)
					xattn_gemm_avx512_pf(ms, p->dv, nb, 1.0f, s, lds, vt, 64, 64 * ldp,
							k0 > 0 ? 1.0f : 0.0f, os, p->dv, NULL, 0);
				for (int i = 0; fix && i < nh; i++) {
					const int h = h0 + i;
					const float *bb = bias ? bias + p->bias_stride[0] * b + p->bias_stride[1] * h + p->bias_stride[2] * q0 + k0 : NULL;
					const unsigned char *kk = keep ? keep + p->keep_stride[0] * b + p->keep_stride[1] * h + p->keep_stride[2] * q0 + k0 : NULL;
					fix_pv(mq, nb, p->dv, s + (int64_t)i * lds, lds * nh, v + vb + k0 * p->ldv, p->ldv,
							bb, (int)p->bias_stride[2], kk, (int)p->keep_stride[2], p->causal, q0 + p->causal_offset + 1 - k0,
							os + (int64_t)p->dv * h, p->ldo);
				}
				continue;
			}
			for (int i = 0; i < nh; i++) {
				const int h = h0 + i;
				float *mx = mxs + i * p->q_block, *sum = sums + i * p->q_block, *corr = corrs + i * p->q_block;
				const float *qt = p->dk > 0 ? q + p->batch_q * b + (int64_t)p->ldq * q0 + (int64_t)p->dk * h : NULL;
				float *ot = p->dv > 0 ? o + p->batch_o * b + (int64_t)p->ldo * q0 + (int64_t)p->dv * h : NULL;
				/* S = Scale·Q_blk·K_blkᵀ, mq×nb with leading dimension lds. */
				if (p->dk > 0 && own)
					xattn_gemm_avx512_pf(mq, nb, p->dk, p->scale, qt, p->ldq, kb_t, 64, 64 * (int64_t)p->dk,
							0.0f, s, lds, NULL, 0);
				else if (p->dk > 0)
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mq, nb, p->dk, p->scale,
							qt, p->ldq, k + kb + k0 * p->ldk, p->ldk, 0.0f, s, lds);
				else
					memset(s, 0, (size_t)mq * (size_t)lds * sizeof *s);
				const float *bb = bias ? bias + p->bias_stride[0] * b + p->bias_stride[1] * h + p->bias_stride[2] * q0 + k0 : NULL;
				const unsigned char *kk = keep ? keep + p->keep_stride[0] * b + p->keep_stride[1] * h + p->keep_stride[2] * q0 + k0 : NULL;
				rows(mq, nb, s, lds, bb, (int)p->bias_stride[2], kk, (int)p->keep_stride[2],
						p->causal, q0 + p->causal_offset + 1 - k0, mx, sum, corr);
				if (p->dv == 0)
					continue;
				/* O_blk = corr·O_blk + P·V_blk; the first block overwrites O. */
				float beta = 0.0f;
				if (k0 > 0) {
					scale(mq, p->dv, ot, p->ldo, corr);
					beta = 1.0f;
				}
				if (own)
					xattn_gemm_avx512_pf(mq, p->dv, nb, 1.0f, s, lds, vt, 64, 64 * ldp,
							beta, ot, p->ldo, NULL, 0);
				else
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mq, p->dv, nb, 1.0f,
							s, lds, vblk, (int)ldvb, beta, ot, p->ldo);
				if (fix)
					fix_pv(mq, nb, p->dv, s, lds, v + vb + k0 * p->ldv, p->ldv, bb, (int)p->bias_stride[2],
							kk, (int)p->keep_stride[2], p->causal, q0 + p->causal_offset + 1 - k0, ot, p->ldo);
			}
		}
		int ok = 1;
		for (int i = 0; i < nh; i++) {
			const int h = h0 + i;
			float *mx = mxs + i * p->q_block, *sum = sums + i * p->q_block, *corr = corrs + i * p->q_block;
			if (stats) {
				float *st = stats + 2 * (((int64_t)b * p->heads + h) * p->tq + q0);
				for (int r = 0; r < mq; r++) {
					st[2 * r] = mx[r];
					st[2 * r + 1] = sum[r];
				}
			}
			if (p->dv == 0)
				continue;
			/*
			 * Normalise; a row that saw no key (sum 0, or no block at
			 * all) becomes 0, a NaN row (sum NaN) stays NaN.
			 */
			for (int r = 0; r < mq; r++)
				corr[r] = nk > 0 && sum[r] != 0.0f ? 1.0f / sum[r] : 0.0f;
			float *ot = o + p->batch_o * b + (int64_t)p->ldo * q0 + (int64_t)p->dv * h;
			scale(mq, p->dv, ot, p->ldo, corr);
			ok = ok && finite(mq, p->dv, ot, p->ldo);
		}
		if (!ok && !careful) {
			careful = 1;
			goto again;
		}
	}
}
