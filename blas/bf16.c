//go:build cgo && !purego

/*
 * The portable half of the BF16 kernels: the entry points of bf16.h, the
 * scalar and AVX-512 F conversions to bf16, and the rounded kernel: A and B
 * rounded to bf16, then float32 arithmetic (a product of two bf16 values is
 * exact in float32, so a fused multiply-add and a multiply then add give the
 * same sums). It is the BF16 function on a CPU without AVX512-BF16 or AMX,
 * compiled twice: as plain C and for AVX-512 F.
 */
#include "bf16_internal.h"

void xattn_bf16_strip_scalar(int rows, int rows_pad, int cols, const float *a, int64_t lda, int ld, uint16_t *dst) {
	for (int r = 0; r < rows_pad; r++) {
		uint16_t *d = dst + (int64_t)r * ld;
		int c = 0;
		if (r < rows) {
			const float *s = a + (int64_t)r * lda;
			for (; c < cols; c++)
				d[c] = xattn_bf16_bits(s[c]);
		}
		for (; c < ld; c++)
			d[c] = 0;
	}
}

/* Rows of A the rounded kernel blocks, and the depth of its rounded strip. */
#define RMR 6
#define RKB 256

/*
 * Vectors of 16 lanes in GCC's vector extensions, which each target lowers
 * to its widest registers (one zmm for AVX-512, four xmm for plain x86-64);
 * aligned(4) lets them load from any float address.
 */
typedef float v16f __attribute__((vector_size(64), aligned(4)));
typedef uint32_t v16u __attribute__((vector_size(64), aligned(4), may_alias));

/* round_bits is xattn_bf16_bits as a float32 bit pattern, without branches (Inf needs no case). */
static inline __attribute__((always_inline)) uint32_t round_bits(uint32_t u) {
	uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
	r = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : r;
	return (u & 0x7f800000u) == 0 ? u & 0x80000000u : r;
}

/*
 * rmicro adds MR rows of the rounded strip ab (RKB floats a row) times the
 * kb rows of one (NP = 1) or two panels of B (pw0, pw1: their 32-bit words,
 * rows 2p and 2p+1 of column j in the low and high half of word 16p + j) to
 * the accumulators acc, in order of the row of B.
 */
static inline __attribute__((always_inline)) void rmicro(const int MR, const int NP, int kb, const float *ab,
		const xattn_u32a *pw0, const xattn_u32a *pw1, v16f acc[RMR][2]) {
	for (int p = 0; p < kb / 2; p++) {
		v16u w0 = *(const v16u *)(pw0 + p * 16), w1 = w0;
		if (NP > 1)
			w1 = *(const v16u *)(pw1 + p * 16);
		v16f e0 = (v16f)(w0 << 16), o0 = (v16f)(w0 & 0xffff0000u);
		v16f e1 = (v16f)(w1 << 16), o1 = (v16f)(w1 & 0xffff0000u);
#pragma GCC unroll 6
		for (int r = 0; r < MR; r++) {
			float x0 = ab[r * RKB + 2 * p], x1 = ab[r * RKB + 2 * p + 1];
			acc[r][0] += x0 * e0;
			acc[r][0] += x1 * o0;
			if (NP > 1) {
				acc[r][1] += x0 * e1;
				acc[r][1] += x1 * o1;
			}
		}
	}
}

/*
 * rounded_body is the rounded kernel: strips of RMR rows of A, rounded to
 * bf16 and back to float RKB values deep, against each pair of panels of B,
 * in register blocks of RMR rows × 32 columns.
 */
static inline __attribute__((always_inline)) void rounded_body(int m, int n, int k, float alpha, const float *a,
		int64_t lda, const uint16_t *b, float beta, float *c, int64_t ldc, const float *bias) {
	int kp = (k + 31) / 32 * 32, np = (n + 15) / 16;
	float ab[RMR * RKB] __attribute__((aligned(64)));
	for (int i0 = 0; i0 < m; i0 += RMR) {
		int mr = m - i0 < RMR ? m - i0 : RMR;
		for (int k0 = 0; k0 < kp; k0 += RKB) {
			int kb = kp - k0 < RKB ? kp - k0 : RKB, kv = k - k0 < kb ? k - k0 : kb;
			for (int r = 0; r < RMR; r++) {
				const xattn_u32a *ar = (const xattn_u32a *)(a + (int64_t)(i0 + r) * lda + k0);
				xattn_u32a *dr = (xattn_u32a *)(ab + r * RKB);
				int valid = r < mr ? kv : 0;
				for (int t = 0; t < valid; t++)
					dr[t] = round_bits(ar[t]);
				for (int t = valid; t < kb; t++)
					dr[t] = 0;
			}
			int first = k0 == 0;
			for (int q = 0; q < np; q += 2) {
				const xattn_u32a *pw0 = (const xattn_u32a *)(b + (int64_t)q * kp * 16 + (int64_t)k0 * 16);
				const xattn_u32a *pw1 = pw0 + (int64_t)kp * 8;
				v16f acc[RMR][2];
				for (int r = 0; r < RMR; r++)
					acc[r][0] = acc[r][1] = (v16f){0};
				if (q + 1 < np)
					rmicro(RMR, 2, kb, ab, pw0, pw1, acc);
				else
					rmicro(RMR, 1, kb, ab, pw0, pw0, acc);
				int nc = n - q * 16 < 32 ? n - q * 16 : 32;
				float t[RMR][32] __attribute__((aligned(64)));
#pragma GCC unroll 6
				for (int r = 0; r < RMR; r++) {
					*(v16f *)&t[r][0] = acc[r][0];
					*(v16f *)&t[r][16] = acc[r][1];
				}
				for (int r = 0; r < mr; r++) {
					float *cr = c + (int64_t)(i0 + r) * ldc + q * 16;
					for (int j = 0; j < nc; j++) {
						float v = alpha * t[r][j];
						if (!first)
							v += cr[j];
						else {
							if (beta != 0.0f)
								v += beta * cr[j];
							if (bias)
								v += bias[q * 16 + j];
						}
						cr[j] = v;
					}
				}
			}
		}
	}
}

void xattn_gemm_bf16_rounded_scalar(int m, int n, int k, float alpha, const float *a, int64_t lda, const uint16_t *b,
		float beta, float *c, int64_t ldc, const float *bias) {
	rounded_body(m, n, k, alpha, a, lda, b, beta, c, ldc, bias);
}

#if defined(XATTN_X86)
XATTN_AVX512 void xattn_gemm_bf16_rounded_avx512(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const uint16_t *b, float beta, float *c, int64_t ldc, const float *bias) {
	rounded_body(m, n, k, alpha, a, lda, b, beta, c, ldc, bias);
}

/* The rounding of xattn_bf16_bits on 16 lanes. */
static inline XATTN_AVX512 __m256i round16(__m512i u) {
	__m512i e = _mm512_and_si512(u, _mm512_set1_epi32(0x7f800000));
	__m512i hi = _mm512_srli_epi32(u, 16);
	__m512i r = _mm512_srli_epi32(
			_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(hi, _mm512_set1_epi32(1))),
			16);
	__mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
	__mmask16 inf = _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(0x7f800000)) & ~nan;
	__mmask16 zero = _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512());
	r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
	r = _mm512_mask_mov_epi32(r, inf, hi);
	r = _mm512_mask_mov_epi32(r, zero, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
	return _mm512_cvtepi32_epi16(r);
}

XATTN_AVX512 void xattn_bf16_strip_avx512(int rows, int rows_pad, int cols, const float *a, int64_t lda, int ld,
		uint16_t *dst) {
	for (int r = 0; r < rows_pad; r++) {
		uint16_t *d = dst + (int64_t)r * ld;
		const float *s = a + (int64_t)r * lda;
		int valid = r < rows ? cols : 0;
		for (int c = 0; c < ld; c += 16) {
			int left = valid - c;
			__mmask16 msk = xattn_mask16(left);
			__m512i u = _mm512_maskz_loadu_epi32(msk, s + c);
			_mm256_storeu_si256((__m256i *)(d + c), round16(u));
		}
	}
}
#else
void xattn_gemm_bf16_rounded_avx512(int m, int n, int k, float alpha, const float *a, int64_t lda, const uint16_t *b,
		float beta, float *c, int64_t ldc, const float *bias) {
	XATTN_UNAVAILABLE("the AVX-512 rounded BF16 kernel");
}
void xattn_bf16_strip_avx512(int rows, int rows_pad, int cols, const float *a, int64_t lda, int ld, uint16_t *dst) {
	XATTN_UNAVAILABLE("the AVX-512 bf16 conversion");
}
#endif

void xattn_gemm_bf16(int kernel, int m, int n, int k, float alpha, const float *a, int64_t lda, const uint16_t *b,
		float beta, float *c, int64_t ldc, const float *bias) {
	static xattn_bf16_gemm_fn *const table[XATTN_BF16_N] = {
		[XATTN_BF16_ROUNDED_SCALAR] = xattn_gemm_bf16_rounded_scalar,
		[XATTN_BF16_ROUNDED_AVX512] = xattn_gemm_bf16_rounded_avx512,
		[XATTN_BF16_AVX512BF16] = xattn_gemm_bf16_avx512bf16,
		[XATTN_BF16_AMX] = xattn_gemm_bf16_amx,
	};
	table[kernel](m, n, k, alpha, a, lda, b, beta, c, ldc, bias);
}

void xattn_bf16_round(int kernel, int64_t n, const float *x, uint16_t *y) {
	static void (*const table[XATTN_BF16_N])(int, int, int, const float *, int64_t, int, uint16_t *) = {
		[XATTN_BF16_ROUNDED_SCALAR] = xattn_bf16_strip_scalar,
		[XATTN_BF16_ROUNDED_AVX512] = xattn_bf16_strip_avx512,
		[XATTN_BF16_AVX512BF16] = xattn_bf16_strip_avx512bf16,
		[XATTN_BF16_AMX] = xattn_bf16_strip_avx512bf16,
	};
	/* In rows of at most 1024 values (ld a multiple of 32), through a small buffer. */
	uint16_t buf[1024] __attribute__((aligned(64)));
	for (int64_t i = 0; i < n; i += 1024) {
		int w = n - i < 1024 ? (int)(n - i) : 1024;
		table[kernel](1, 1, w, x + i, 0, 1024, buf);
		for (int j = 0; j < w; j++)
			y[i + j] = buf[j];
	}
}
