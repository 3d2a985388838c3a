//go:build cgo && !purego

/* What the BF16 C files share (bf16.c, bf16_avx512.c, bf16_amx.c); see bf16.h. */
#ifndef XATTN_BF16_INTERNAL_H
#define XATTN_BF16_INTERNAL_H

#include <string.h>

#include "bf16.h"
#include "internal.h"

/* Depth of the A strip a kernel rounds at a time: 32 rows × 512 bf16 = 32 KiB. */
#define XATTN_BF16_KB 512

#if defined(XATTN_X86)
#define XATTN_AVX512BF16 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl,avx512bf16")))
#define XATTN_AMX __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
#endif

/* xattn_mask16 is the mask of the first n of 16 lanes: all of them for n ≥ 16, none for n ≤ 0. */
static inline uint16_t xattn_mask16(int n) { return n >= 16 ? (uint16_t)0xffffu : n > 0 ? (uint16_t)((1u << n) - 1) : 0; }

#if defined(XATTN_X86)
/*
 * xattn_load16 loads the first n of the 16 floats at p, zeros for the
 * rest (none read for n ≤ 0), and xattn_store16 stores them: plain
 * instructions where all 16 are wanted, masked ones only for a tail. AMD's
 * Zen 5 runs masked loads and stores slowly (measured: the BF16 packers
 * twice as fast without them), and they give the same bits.
 */
__attribute__((target("avx512f"))) static inline __m512 xattn_load16(const float *p, int n) {
	return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(xattn_mask16(n), p);
}
__attribute__((target("avx512f"))) static inline void xattn_store16(float *p, __m512 x, int n) {
	if (n >= 16)
		_mm512_storeu_ps(p, x);
	else
		_mm512_mask_storeu_ps(p, xattn_mask16(n), x);
}

/*
 * xattn_amx_begin loads the tile configuration every AMX kernel here uses:
 * palette 1, tiles 0–7 of 16 rows × 64 bytes (16×16 float32, 16×32 bf16 or
 * 16 pairs × 16 columns). The caller releases the tiles (_tile_release)
 * before it returns to Go.
 */
XATTN_AMX static inline void xattn_amx_begin(void) {
	struct {
		uint8_t palette, start_row, reserved[14];
		uint16_t colsb[16];
		uint8_t rows[16];
	} cfg __attribute__((aligned(64)));
	memset(&cfg, 0, sizeof cfg);
	cfg.palette = 1;
	for (int i = 0; i < 8; i++) {
		cfg.colsb[i] = 64;
		cfg.rows[i] = 16;
	}
	/* The intrinsic's asm does not tell the compiler it reads cfg: keep the stores. */
	__asm__ volatile("" : : "r"(&cfg) : "memory");
	_tile_loadconfig(&cfg);
}
#endif

/* A 32-bit word that may alias any other type (a float, a pair of bf16). */
typedef uint32_t xattn_u32a __attribute__((may_alias));

/* xattn_bf16_bits is pure.BF16Bits. */
static inline uint16_t xattn_bf16_bits(float f) {
	union {
		float f;
		uint32_t u;
	} v = {f};
	uint32_t u = v.u, e = u & 0x7f800000u;
	if (e == 0)
		return (uint16_t)((u >> 16) & 0x8000u);
	if (e == 0x7f800000u)
		return (uint16_t)((u >> 16) | ((u & 0x007fffffu) ? 0x0040u : 0));
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/*
 * A strip: rows × cols values of A (leading dimension lda) rounded to bf16
 * into dst (leading dimension ld ≥ cols, a multiple of 32), columns cols … ld−1
 * and rows rows … rows_pad−1 set to zero. One conversion per ISA.
 */
void xattn_bf16_strip_scalar(int rows, int rows_pad, int cols, const float *a, int64_t lda, int ld, uint16_t *dst);
void xattn_bf16_strip_avx512(int rows, int rows_pad, int cols, const float *a, int64_t lda, int ld, uint16_t *dst);
void xattn_bf16_strip_avx512bf16(int rows, int rows_pad, int cols, const float *a, int64_t lda, int ld, uint16_t *dst);

typedef void xattn_bf16_gemm_fn(int m, int n, int k, float alpha, const float *a, int64_t lda, const uint16_t *b,
		float beta, float *c, int64_t ldc, const float *bias);
xattn_bf16_gemm_fn xattn_gemm_bf16_rounded_scalar, xattn_gemm_bf16_rounded_avx512, xattn_gemm_bf16_avx512bf16,
		xattn_gemm_bf16_amx;

#endif
