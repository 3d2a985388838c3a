//go:build cgo && !purego

/*
 * The AMX BF16 kernel: TDPBF16PS on tiles of 16 rows × 64 bytes (16×32 bf16
 * of A, 16 pairs × 16 columns of B, 16×16 float32 of C). Each call loads its
 * own tile configuration and releases the tiles before it returns, so no
 * tile state outlives a call (Go may run another goroutine on the thread
 * after it). Tile registers: 0–3 the 2×2 grid of C (32 rows × 32 columns),
 * 4–5 the two A tiles, 6–7 the two B tiles, so that each loaded tile feeds
 * two products.
 *
 * Blocking: A in strips of 32 rows rounded to bf16 XATTN_BF16_KB values deep
 * with VCVTNE2PS2BF16 into a 32 KiB stack buffer that stays in L1 while the
 * strip sweeps the panels of B (from L2). A packed B panel's tile is 1 KiB
 * contiguous (stride 64 bytes).
 *
 * Where alpha = 1 and beta = 0, or alpha = 1, beta = 1 and no bias, the
 * accumulators start from what C is to become the sum onto: C (beta = 1, or
 * a later block of k), the bias, or zero, and are stored to C as they are;
 * otherwise they start from zero and an AVX-512 epilogue finishes
 * alpha·acc + beta·C + bias (C + alpha·acc for a later block of k). Either
 * way every element of C gets the same operations whether its 32×32 block
 * is whole or an edge (an edge goes through a 4 KiB buffer), so a row's
 * result does not depend on how a caller splits the rows or columns.
 */
#include "bf16_internal.h"

#if defined(XATTN_X86)


/* epilogue finishes mr×nc of C from the 32×32 buffer t, as micro in bf16_avx512.c. */
static XATTN_AMX void epilogue(int mr, int nc, const float *t, float alpha, float beta, float *c, int64_t ldc,
		const float *bias, int first) {
	__mmask16 m[2] = {xattn_mask16(nc), xattn_mask16(nc - 16)};
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int r = 0; r < mr; r++) {
		float *cr = c + (int64_t)r * ldc;
		for (int h = 0; h < 2; h++) {
			if (!m[h])
				continue;
			__m512 x = _mm512_mul_ps(_mm512_load_ps(t + r * 32 + 16 * h), va);
			if (!first)
				x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m[h], cr + 16 * h));
			else {
				if (beta != 0.0f)
					x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m[h], cr + 16 * h), x);
				if (bias)
					x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m[h], bias + 16 * h));
			}
			_mm512_mask_storeu_ps(cr + 16 * h, m[h], x);
		}
	}
}

/* copy_out stores mr×nc of the 32×32 buffer t to C. */
static XATTN_AMX void copy_out(int mr, int nc, const float *t, float *c, int64_t ldc) {
	__mmask16 m0 = xattn_mask16(nc), m1 = xattn_mask16(nc - 16);
	for (int r = 0; r < mr; r++) {
		_mm512_mask_storeu_ps(c + (int64_t)r * ldc, m0, _mm512_load_ps(t + r * 32));
		_mm512_mask_storeu_ps(c + (int64_t)r * ldc + 16, m1, _mm512_load_ps(t + r * 32 + 16));
	}
}

XATTN_AMX void xattn_gemm_bf16_amx(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const uint16_t *b, float beta, float *c, int64_t ldc, const float *bias) {
	enum { KB = XATTN_BF16_KB, SA = XATTN_BF16_KB * 2 };
	uint16_t buf[32 * KB] __attribute__((aligned(64)));
	float t[32 * 32] __attribute__((aligned(64))), bb[32] __attribute__((aligned(64)));
	xattn_amx_begin();
	int kp = (k + 31) / 32 * 32, np = (n + 15) / 16;
	int direct = alpha == 1.0f && (beta == 0.0f || (beta == 1.0f && !bias));
	const int64_t sc = ldc * 4, s16 = 16 * ldc;
	for (int i0 = 0; i0 < m; i0 += 32) {
		int mr = m - i0 < 32 ? m - i0 : 32, two = mr > 16;
		for (int k0 = 0; k0 < kp; k0 += KB) {
			int kb = kp - k0 < KB ? kp - k0 : KB, kv = k - k0 < kb ? k - k0 : kb;
			xattn_bf16_strip_avx512bf16(mr, two ? 32 : 16, kv, a + (int64_t)i0 * lda + k0, lda, KB, buf);
			int first = k0 == 0;
			for (int q = 0; q < np; q += 2) {
				const uint16_t *b0 = b + (int64_t)q * kp * 16 + (int64_t)k0 * 16, *b1 = b0 + (int64_t)kp * 16;
				int pair = q + 1 < np, nc = n - q * 16 < 32 ? n - q * 16 : 32;
				float *cb = c + (int64_t)i0 * ldc + q * 16;
				int full = mr == 32 && nc == 32, from_c = direct && (!first || beta == 1.0f);
				const float *bq = bias ? bias + q * 16 : 0;
				if (direct && full && from_c) {
					_tile_loadd(0, cb, sc);
					_tile_loadd(1, cb + 16, sc);
					_tile_loadd(2, cb + s16, sc);
					_tile_loadd(3, cb + s16 + 16, sc);
				} else if (direct && from_c) {
					/* An edge: C's block, zero past m and n, through t. */
					__mmask16 m0 = xattn_mask16(nc), m1 = xattn_mask16(nc - 16);
					for (int r = 0; r < 32; r++) {
						const float *cr = cb + (int64_t)r * ldc;
						int in = r < mr;
						_mm512_store_ps(t + r * 32, _mm512_maskz_loadu_ps(in ? m0 : 0, cr));
						_mm512_store_ps(t + r * 32 + 16, _mm512_maskz_loadu_ps(in ? m1 : 0, cr + 16));
					}
					_tile_loadd(0, t, 128);
					_tile_loadd(1, t + 16, 128);
					_tile_loadd(2, t + 16 * 32, 128);
					_tile_loadd(3, t + 16 * 32 + 16, 128);
				} else if (direct && bias) {
					/*
					 * The bias in every row: a stride-0 load, of a padded
					 * copy past n (only there: a tile load waits for the
					 * stores it reads to reach the cache).
					 */
					const float *src = bq;
					if (nc < 32) {
						_mm512_store_ps(bb, _mm512_maskz_loadu_ps(xattn_mask16(nc), bq));
						_mm512_store_ps(bb + 16, _mm512_maskz_loadu_ps(xattn_mask16(nc - 16), bq + 16));
						src = bb;
					}
					_tile_loadd(0, src, 0);
					_tile_loadd(1, src + 16, 0);
					_tile_loadd(2, src, 0);
					_tile_loadd(3, src + 16, 0);
				} else {
					_tile_zero(0);
					_tile_zero(1);
					_tile_zero(2);
					_tile_zero(3);
				}
				if (two && pair) {
					for (int kk = 0; kk < kb; kk += 32) {
						_tile_loadd(4, buf + kk, SA);
						_tile_loadd(6, b0 + kk * 16, 64);
						_tile_loadd(5, buf + 16 * KB + kk, SA);
						_tile_loadd(7, b1 + kk * 16, 64);
						_tile_dpbf16ps(0, 4, 6);
						_tile_dpbf16ps(1, 4, 7);
						_tile_dpbf16ps(2, 5, 6);
						_tile_dpbf16ps(3, 5, 7);
					}
				} else if (two) {
					for (int kk = 0; kk < kb; kk += 32) {
						_tile_loadd(4, buf + kk, SA);
						_tile_loadd(6, b0 + kk * 16, 64);
						_tile_loadd(5, buf + 16 * KB + kk, SA);
						_tile_dpbf16ps(0, 4, 6);
						_tile_dpbf16ps(2, 5, 6);
					}
				} else if (pair) {
					for (int kk = 0; kk < kb; kk += 32) {
						_tile_loadd(4, buf + kk, SA);
						_tile_loadd(6, b0 + kk * 16, 64);
						_tile_loadd(7, b1 + kk * 16, 64);
						_tile_dpbf16ps(0, 4, 6);
						_tile_dpbf16ps(1, 4, 7);
					}
				} else {
					for (int kk = 0; kk < kb; kk += 32) {
						_tile_loadd(4, buf + kk, SA);
						_tile_loadd(6, b0 + kk * 16, 64);
						_tile_dpbf16ps(0, 4, 6);
					}
				}
				if (direct && full) {
					_tile_stored(0, cb, sc);
					_tile_stored(1, cb + 16, sc);
					_tile_stored(2, cb + s16, sc);
					_tile_stored(3, cb + s16 + 16, sc);
				} else {
					_tile_stored(0, t, 128);
					_tile_stored(1, t + 16, 128);
					_tile_stored(2, t + 16 * 32, 128);
					_tile_stored(3, t + 16 * 32 + 16, 128);
					if (direct)
						copy_out(mr, nc, t, cb, ldc);
					else
						epilogue(mr, nc, t, alpha, beta, cb, ldc, bq, first);
				}
			}
		}
	}
	_tile_release();
}

#else
void xattn_gemm_bf16_amx(int m, int n, int k, float alpha, const float *a, int64_t lda, const uint16_t *b,
		float beta, float *c, int64_t ldc, const float *bias) {
	XATTN_UNAVAILABLE("the AMX BF16 kernel");
}
#endif
