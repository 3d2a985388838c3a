//go:build cgo && !purego

/*
 * The BF16 GEMM kernels of package blas, as bf16_cgo.go calls them. B is a
 * k×n matrix in the packed BF16 layout of pure.PackBF16: panels of 16
 * columns, k padded with zero rows to kp = ⌈k/32⌉·32, element (r, j) at
 *
 *	b[(j/16)·kp·16 + (r/2)·32 + (j%16)·2 + r%2]
 *
 * (the B-tile layout of AMX's TDPBF16PS and the operand layout of
 * VDPBF16PS). Each kernel computes
 *
 *	C[m×n] = alpha·bf16(A)[m×k]·B + beta·C (+ 1·biasᵀ when bias != NULL)
 *
 * with A row-major (leading dimension lda) rounded to bf16 on the way in as
 * pure.BF16Bits rounds (nearest even, subnormals to zero, NaN kept), the
 * exact bf16 products summed in float32. With beta = 0, C is not read. The
 * kernels are single-threaded, allocate nothing (their scratch is on the
 * stack, under 40 KiB) and trust their arguments: Go checks them, and calls
 * a kernel only on a CPU that runs it (and, for AMX, after Linux granted the
 * tile data).
 */
#ifndef XATTN_BF16_H
#define XATTN_BF16_H

#include <stdint.h>

enum {
	XATTN_BF16_ROUNDED_SCALAR = 0, /* portable C: rounded operands, float32 FMA */
	XATTN_BF16_ROUNDED_AVX512 = 1, /* the same C compiled for AVX-512 F */
	XATTN_BF16_AVX512BF16 = 2,     /* VDPBF16PS */
	XATTN_BF16_AMX = 3,            /* TDPBF16PS, 2×2 tiles of 16×16 */
	XATTN_BF16_N = 4,
};

void xattn_gemm_bf16(int kernel, int m, int n, int k, float alpha, const float *a, int64_t lda,
		const uint16_t *b, float beta, float *c, int64_t ldc, const float *bias);

/*
 * xattn_bf16_round writes x[i] rounded to bf16 to y[i], i < n, with the
 * conversion kernel uses (scalar C, AVX-512 F integer code, or
 * VCVTNE2PS2BF16): the same bits, for tests.
 */
void xattn_bf16_round(int kernel, int64_t n, const float *x, uint16_t *y);

#endif
