//go:build cgo && !purego

/*
 * The AVX512-BF16 half of the BF16 kernels: the conversion to bf16 with
 * VCVTNE2PS2BF16 (the rounding of xattn_bf16_bits: the instruction rounds to
 * nearest even, flushes subnormals to zero and quiets NaNs), and the GEMM
 * kernel on VDPBF16PS, which adds the two products of a pair of bf16 rows
 * to each float32 lane.
 *
 * Blocking: A in strips of 32 rows rounded XATTN_BF16_KB values deep (32 KiB,
 * held in L1 across the sweep of B), the strip in register blocks of up to
 * 12 rows × 32 columns (two panels of B): 24 zmm accumulators, 2 loads of B
 * and 12 broadcast pairs of A for 24 VDPBF16PS per pair of rows of B. The
 * results go to C directly, masked only for the columns past n.
 */
#include "bf16_internal.h"

#if defined(XATTN_X86)

XATTN_AVX512BF16 void xattn_bf16_strip_avx512bf16(int rows, int rows_pad, int cols, const float *a, int64_t lda,
		int ld, uint16_t *dst) {
	for (int r = 0; r < rows_pad; r++) {
		uint16_t *d = dst + (int64_t)r * ld;
		const float *s = a + (int64_t)r * lda;
		int valid = r < rows ? cols : 0;
		for (int c = 0; c < ld; c += 32) {
			int left = valid - c;
			__m512 lo = xattn_load16(s + c, left), hi = xattn_load16(s + c + 16, left - 16);
			_mm512_storeu_si512((void *)(d + c), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
		}
	}
}


/*
 * micro computes MR rows of the strip ab (leading dimension ld, kb values
 * deep) against the panels b0 and, when NP = 2, b1, and finishes the block of
 * C (columns masked by m0, m1): first says whether this is the first strip
 * of k, which applies beta and the bias; later strips add alpha·acc to C.
 */
static inline __attribute__((always_inline)) XATTN_AVX512BF16 void micro(const int MR, const int NP, int kb,
		const uint16_t *ab, int ld, const uint16_t *b0, const uint16_t *b1, float alpha, float beta, float *c,
		int64_t ldc, const float *bias, int first, int n0, int n1) {
	__m512 acc0[12], acc1[12];
#pragma GCC unroll 12
	for (int r = 0; r < MR; r++) {
		acc0[r] = _mm512_setzero_ps();
		acc1[r] = _mm512_setzero_ps();
	}
	const xattn_u32a *aw = (const xattn_u32a *)ab;
	for (int p = 0; p < kb / 2; p++) {
		__m512bh v0 = (__m512bh)_mm512_loadu_si512((const void *)(b0 + p * 32));
		__m512bh v1 = v0;
		if (NP > 1)
			v1 = (__m512bh)_mm512_loadu_si512((const void *)(b1 + p * 32));
#pragma GCC unroll 12
		for (int r = 0; r < MR; r++) {
			__m512bh x = (__m512bh)_mm512_set1_epi32((int)aw[r * (ld / 2) + p]);
			acc0[r] = _mm512_dpbf16_ps(acc0[r], x, v0);
			if (NP > 1)
				acc1[r] = _mm512_dpbf16_ps(acc1[r], x, v1);
		}
	}
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	__m512 bias0 = _mm512_setzero_ps(), bias1 = bias0;
	if (first && bias) {
		bias0 = xattn_load16(bias, n0);
		if (NP > 1)
			bias1 = xattn_load16(bias + 16, n1);
	}
#pragma GCC unroll 12
	for (int r = 0; r < MR; r++) {
		float *cr = c + (int64_t)r * ldc;
		for (int h = 0; h < NP; h++) {
			const int cnt = h ? n1 : n0;
			__m512 x = _mm512_mul_ps(h ? acc1[r] : acc0[r], va);
			if (!first)
				x = _mm512_add_ps(x, xattn_load16(cr + 16 * h, cnt));
			else {
				if (beta != 0.0f)
					x = _mm512_fmadd_ps(vb, xattn_load16(cr + 16 * h, cnt), x);
				x = _mm512_add_ps(x, h ? bias1 : bias0);
			}
			xattn_store16(cr + 16 * h, x, cnt);
		}
	}
}

#define MICRO_CASE(R)                                                                                              \
	case R:                                                                                                        \
		if (np2)                                                                                                   \
			micro(R, 2, kb, ab, KB, b0, b1, alpha, beta, cb, ldc, bb, first, nc, nc - 16);                         \
		else                                                                                                       \
			micro(R, 1, kb, ab, KB, b0, b0, alpha, beta, cb, ldc, bb, first, nc, 0);                               \
		break;

XATTN_AVX512BF16 void xattn_gemm_bf16_avx512bf16(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const uint16_t *b, float beta, float *c, int64_t ldc, const float *bias) {
	enum { KB = XATTN_BF16_KB };
	uint16_t buf[32 * KB] __attribute__((aligned(64)));
	int kp = (k + 31) / 32 * 32, np = (n + 15) / 16;
	for (int i0 = 0; i0 < m; i0 += 32) {
		int mr = m - i0 < 32 ? m - i0 : 32;
		for (int k0 = 0; k0 < kp; k0 += KB) {
			int kb = kp - k0 < KB ? kp - k0 : KB, kv = k - k0 < kb ? k - k0 : kb;
			xattn_bf16_strip_avx512bf16(mr, mr, kv, a + (int64_t)i0 * lda + k0, lda, KB, buf);
			int first = k0 == 0;
			for (int q = 0; q < np; q += 2) {
				const uint16_t *b0 = b + (int64_t)q * kp * 16 + (int64_t)k0 * 16, *b1 = b0 + (int64_t)kp * 16;
				int np2 = q + 1 < np, nc = n - q * 16;
				const float *bb = bias ? bias + q * 16 : 0;
				for (int r0 = 0; r0 < mr; r0 += 12) {
					int rows = mr - r0 < 12 ? mr - r0 : 12;
					const uint16_t *ab = buf + r0 * KB;
					float *cb = c + (int64_t)(i0 + r0) * ldc + q * 16;
					switch (rows) {
						MICRO_CASE(1)
						MICRO_CASE(2)
						MICRO_CASE(3)
						MICRO_CASE(4)
						MICRO_CASE(5)
						MICRO_CASE(6)
						MICRO_CASE(7)
						MICRO_CASE(8)
						MICRO_CASE(9)
						MICRO_CASE(10)
						MICRO_CASE(11)
						MICRO_CASE(12)
					}
				}
			}
		}
	}
}

#else
void xattn_bf16_strip_avx512bf16(int rows, int rows_pad, int cols, const float *a, int64_t lda, int ld,
		uint16_t *dst) {
	XATTN_UNAVAILABLE("the AVX512-BF16 conversion");
}
void xattn_gemm_bf16_avx512bf16(int m, int n, int k, float alpha, const float *a, int64_t lda, const uint16_t *b,
		float beta, float *c, int64_t ldc, const float *bias) {
	XATTN_UNAVAILABLE("the AVX512-BF16 BF16 kernel");
}
#endif
