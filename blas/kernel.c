//go:build cgo && !purego

/*
 * The AVX-512 GEMM microkernel of the OpenBLAS backend, for the products
 * where OpenBLAS is measurably slow: small M against a constant right-hand
 * side (it packs all of B on every call, which costs more than the product
 * when M is a few rows), and the tiles of the attention core (a few thousand
 * multiply-adds each, where its per-call set-up dominates).
 *
 *	C[m×n] = alpha·A[m×k]·B[k×n] + beta·C + 1·biasᵀ
 *
 * A is row-major with leading dimension lda. B is row-major in column panels
 * of 64: columns j … j+63 of row p start at b + (j/64)·pstride + p·ldb +
 * j%64. A plain row-major B has pstride = 64 and ldb = its row length; B
 * packed by xattn_pack_kt (xattn_pack in shim.h) has ldb = 64 and pstride =
 * 64·k, so that a panel is one contiguous k×64 block that streams from L2
 * without set conflicts.
 * With beta = 0, C is not read. bias may be NULL.
 *
 * Register blocking is 6 rows × 64 columns: 24 zmm accumulators, 4 loads of
 * B and 6 broadcasts of A for 24 FMAs per step of k. Rows past m re-read the
 * last row and are not stored; columns past n are masked.
 */
#include "internal.h"

#if defined(XATTN_X86)

static inline XATTN_AVX512 __m512 kfinish(__m512 acc, __mmask16 m, __m512 va, float beta, __m512 vb,
		const float *c, const float *bias) {
	__m512 x = _mm512_mul_ps(acc, va);
	if (beta != 0.0f)
		x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c), x);
	if (bias)
		x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, bias));
	return x;
}

#define KDECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0;
#define KFMA(r)                                                    \
	x = _mm512_set1_ps(a##r[p]);                                   \
	c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);                     \
	if (NV > 1) c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1);         \
	if (NV > 2) c##r##2 = _mm512_fmadd_ps(x, b2, c##r##2);         \
	if (NV > 3) c##r##3 = _mm512_fmadd_ps(x, b3, c##r##3);
#define KST1(r, v)                                                                    \
	if (NV > v) {                                                                     \
		__mmask16 msk = (v == NV - 1) ? lm : (__mmask16)0xffff;                       \
		_mm512_mask_storeu_ps(cr + 16 * v, msk,                                       \
			kfinish(c##r##v, msk, va, beta, vb, cr + 16 * v, bias ? bias + 16 * v : 0)); \
	}
#define KSTORE(r)                                                  \
	if (mr > r) {                                              \
		float *cr = c + (int64_t)r * ldc;                          \
		KST1(r, 0) KST1(r, 1) KST1(r, 2) KST1(r, 3)                \
	}

/*
 * kern6xNV_CF: up to 6 rows against NV vectors of 16 columns, the last masked
 * by lm unless F (all columns full). With C, the rows of B lie 64 values
 * apart (a packed panel): a constant stride, and no masks, let the compiler
 * address B with fixed offsets — a few percent, measured in isolation.
 */
#define KERN(NV_, C_, F_)                                                                 \
static XATTN_AVX512 __attribute__((noinline)) void kern6x##NV_##_##C_##F_(int mr, __mmask16 lm, int k, \
		float alpha, const float *a, int64_t lda, const float *b, int64_t ldb_,           \
		float beta, float *c, int64_t ldc, const float *bias) {                           \
	enum { NV = NV_ };                                                                    \
	const int64_t ldb = C_ ? 64 : ldb_;                                                   \
	const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * lda,                                \
		*a2 = a + (mr > 2 ? 2 : mr - 1) * lda, *a3 = a + (mr > 3 ? 3 : mr - 1) * lda,     \
		*a4 = a + (mr > 4 ? 4 : mr - 1) * lda, *a5 = a + (mr > 5 ? 5 : mr - 1) * lda;     \
	KDECL(0) KDECL(1) KDECL(2) KDECL(3) KDECL(4) KDECL(5)                                 \
	for (int p = 0; p < k; p++) {                                                         \
		const float *bp = b + p * ldb;                                                    \
		__m512 b0, b1 = _mm512_setzero_ps(), b2 = b1, b3 = b1, x;                         \
		if (NV == 1 && !F_) b0 = _mm512_maskz_loadu_ps(lm, bp); else b0 = _mm512_loadu_ps(bp); \
		if (NV == 2 && !F_) b1 = _mm512_maskz_loadu_ps(lm, bp + 16);                      \
		else if (NV >= 2) b1 = _mm512_loadu_ps(bp + 16);                                  \
		if (NV == 3 && !F_) b2 = _mm512_maskz_loadu_ps(lm, bp + 32);                      \
		else if (NV >= 3) b2 = _mm512_loadu_ps(bp + 32);                                  \
		if (NV == 4 && !F_) b3 = _mm512_maskz_loadu_ps(lm, bp + 48);                      \
		else if (NV == 4) b3 = _mm512_loadu_ps(bp + 48);                                  \
		KFMA(0) KFMA(1) KFMA(2) KFMA(3) KFMA(4) KFMA(5)                                   \
	}                                                                                     \
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                         \
	KSTORE(0) KSTORE(1) KSTORE(2) KSTORE(3) KSTORE(4) KSTORE(5)                           \
}
#define KERNS(NV_) KERN(NV_, 0, 0) KERN(NV_, 0, 1) KERN(NV_, 1, 0) KERN(NV_, 1, 1)

KERNS(1)
KERNS(2)
KERNS(3)
KERNS(4)

typedef void (*kern_fn)(int, __mmask16, int, float, const float *, int64_t, const float *, int64_t,
		float, float *, int64_t, const float *);
/* kerns[nv−1][c][f]: the variant for nv vectors, constant stride c, full width f. */
static kern_fn const kerns[4][2][2] = {
	{{kern6x1_00, kern6x1_01}, {kern6x1_10, kern6x1_11}},
	{{kern6x2_00, kern6x2_01}, {kern6x2_10, kern6x2_11}},
	{{kern6x3_00, kern6x3_01}, {kern6x3_10, kern6x3_11}},
	{{kern6x4_00, kern6x4_01}, {kern6x4_10, kern6x4_11}},
};

#ifndef XATTN_KC
#define XATTN_KC 128
#endif
#ifndef XATTN_MC
#define XATTN_MC 192
#endif

/*
 * xattn_gemm_avx512 blocks the product for the caches: MC rows of A (about
 * 400 KB at k = 512) stay in L2 while every panel of B passes, and a panel
 * is cut in KC rows (32 KB) that stay in L1 while the 6-row strips of the
 * block pass. The k-blocks after the first accumulate into C (beta = 1);
 * the bias goes in with the first.
 */
XATTN_AVX512 void xattn_gemm_avx512(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias) {
	xattn_gemm_avx512_pf(m, n, k, alpha, a, lda, b, ldb, pstride, beta, c, ldc, bias, XATTN_PF_ALL);
}

XATTN_AVX512 void xattn_gemm_avx512_pf(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias, int pf) {
	for (int i0 = 0; i0 < m; i0 += XATTN_MC) {
		const int i1 = m - i0 < XATTN_MC ? m : i0 + XATTN_MC;
		for (int j = 0; j < n; j += 64) {
			const int w = n - j < 64 ? n - j : 64;
			const int nv = (w + 15) / 16;
			const int rem = w - 16 * (nv - 1);
			const __mmask16 lm = (__mmask16)(rem == 16 ? 0xffff : (1u << rem) - 1);
			const kern_fn kern = kerns[nv - 1][ldb == 64][rem == 16];
			const float *bj = b + (int64_t)(j / 64) * pstride;
			for (int p0 = 0; p0 < k; p0 += XATTN_KC) {
				const int kb = k - p0 < XATTN_KC ? k - p0 : XATTN_KC;
				const float bt = p0 == 0 ? beta : 1.0f;
				const float *biasj = bias && p0 == 0 ? bias + j : 0;
				const float *bp = bj + (int64_t)p0 * ldb;
				if ((pf & XATTN_PF_B) && pstride == 64 && i1 - i0 > 6 && i0 == 0) {
					/*
					 * Rows of a plain B lie ldb apart, often a page or
					 * more (the values of an attention head among all
					 * heads' keys and values), where the hardware
					 * prefetcher does not follow: ask for the whole
					 * block at once, so that its misses overlap instead
					 * of stalling the first strip row by row; once, for
					 * the first block of rows, after which it is cached.
					 */
					for (int p = 0; p < kb; p++)
						for (int q = 0; q < w; q += 16)
							_mm_prefetch((const char *)(bp + (int64_t)p * ldb + q), _MM_HINT_T0);
				}
				for (int i = i0; i < i1; i += 6) {
					const int mr = i1 - i < 6 ? i1 - i : 6;
					const float *ai = a + (int64_t)i * lda + p0;
					float *ci = c + (int64_t)i * ldc + j;
					/*
					 * The next strip's rows of A (first panel) and of C
					 * (first k-block) come from memory on a tall
					 * product: ask for them while this strip computes.
					 * 7–15% on the key/value projections of 12000–16000
					 * rows, measured. Operands in cache (the attention
					 * core's tiles) skip it: there it only costs.
					 */
					const int nr = i1 - i - 6 < 6 ? i1 - i - 6 : 6;
					if ((pf & XATTN_PF_A) && j == 0)
						for (int r = 0; r < nr; r++)
							for (int q = 0; q < kb; q += 16)
								_mm_prefetch((const char *)(ai + (int64_t)(6 + r) * lda + q), _MM_HINT_T0);
					if ((pf & XATTN_PF_C) && p0 == 0)
						for (int r = 0; r < nr; r++)
							for (int q = 0; q < w; q += 16)
								_mm_prefetch((const char *)(ci + (int64_t)(6 + r) * ldc + q), _MM_HINT_T0);
					kern(mr, lm, kb, alpha, ai, lda, bp, ldb, bt, ci, ldc, biasj);
				}
			}
		}
	}
}

/*
 * xattn_pack_kt writes the transpose of the nb×dk block K (leading dimension
 * ldk) into kt in the packed panel layout: kt[(j/64)·64·dk + d·64 + j%64] =
 * K[j·ldk + d], so that kt is B = Kᵀ (dk×nb) with ldb = 64 and pstride =
 * 64·dk. It works on 16×16 tiles transposed in registers; the column tail of
 * each tile is masked, the row tail padded with zeros that are never read.
 */
XATTN_AVX512 void xattn_pack_kt(int nb, int dk, const float *k, int64_t ldk, float *kt) {
	for (int j0 = 0; j0 < nb; j0 += 16) {
		const int rows = nb - j0 < 16 ? nb - j0 : 16;
		/* The next tile's rows: ldk apart, too far for the hardware prefetcher. */
		for (int i = 16; i < 32 && j0 + i < nb; i++)
			for (int d = 0; d < dk; d += 16)
				_mm_prefetch((const char *)(k + (int64_t)(j0 + i) * ldk + d), _MM_HINT_T0);
		float *dst = kt + (int64_t)(j0 / 64) * 64 * dk + j0 % 64;
		for (int d0 = 0; d0 < dk; d0 += 16) {
			const int cols = dk - d0 < 16 ? dk - d0 : 16;
			const __mmask16 cm = (__mmask16)(cols == 16 ? 0xffff : (1u << cols) - 1);
			__m512 r[16];
			for (int i = 0; i < 16; i++)
				r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, k + (int64_t)(j0 + i) * ldk + d0) : _mm512_setzero_ps();
			/* 16×16 transpose: 4 rounds of pairwise interleaves. */
			__m512 t[16];
			for (int i = 0; i < 16; i += 2) {
				t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
				t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
			}
			for (int i = 0; i < 16; i += 4) {
				r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
				r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
				r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
				r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
			}
			for (int i = 0; i < 4; i++) {
				t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
				t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
				t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
				t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
			}
			for (int i = 0; i < 4; i++) {
				r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
				r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
				r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
				r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
			}
			for (int i = 0; i < cols; i++)
				_mm512_storeu_ps(dst + (int64_t)(d0 + i) * 64, r[i]);
		}
	}
}
XATTN_AVX512 void xattn_pack_rows(int nb, int n, const float *v, int64_t ldv, float *vt, int64_t ldp) {
	for (int j = 0; j < nb; j++) {
		const float *row = v + (int64_t)j * ldv;
		/* Rows ldv apart: ask for a later one, beyond the prefetcher's reach. */
		if (j + 8 < nb)
			for (int q = 0; q < n; q += 16)
				_mm_prefetch((const char *)(row + 8 * ldv + q), _MM_HINT_T0);
		for (int q = 0; q < n; q += 16) {
			const __mmask16 m = (__mmask16)(n - q >= 16 ? 0xffff : (1u << (n - q)) - 1);
			_mm512_mask_storeu_ps(vt + (int64_t)(q / 64) * 64 * ldp + (int64_t)j * 64 + q % 64, m,
					_mm512_maskz_loadu_ps(m, row + q));
		}
	}
}
#else
/* Off x86-64 no table reaches these; a slip ends the process with a message. */
void xattn_gemm_avx512(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias) {
	(void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
	(void)pstride, (void)beta, (void)c, (void)ldc, (void)bias;
	XATTN_UNAVAILABLE("xattn_gemm_avx512");
}
void xattn_gemm_avx512_pf(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias, int pf) {
	(void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
	(void)pstride, (void)beta, (void)c, (void)ldc, (void)bias, (void)pf;
	XATTN_UNAVAILABLE("xattn_gemm_avx512_pf");
}
void xattn_pack_kt(int nb, int dk, const float *k, int64_t ldk, float *kt) {
	(void)nb, (void)dk, (void)k, (void)ldk, (void)kt;
	XATTN_UNAVAILABLE("xattn_pack_kt");
}
void xattn_pack_rows(int nb, int n, const float *v, int64_t ldv, float *vt, int64_t ldp) {
	(void)nb, (void)n, (void)v, (void)ldv, (void)vt, (void)ldp;
	XATTN_UNAVAILABLE("xattn_pack_rows");
}
#endif
