//go:build cgo && !purego

/*
 * The C shim of the OpenBLAS backend of package blas (see cblas.go): loops
 * that run a whole batch, row block or task list per cgo crossing, the fused
 * softmax row pass and row rescaling in scalar, AVX2+FMA and AVX-512 C, and
 * the attention core.
 *
 * Every function trusts its arguments: package blas checks them in Go before
 * calling. All matrices are row-major; sizes and leading dimensions fit an
 * int, offsets are computed in int64_t. No function keeps a pointer after it
 * returns or calls back into Go.
 */
#ifndef XATTN_SHIM_H
#define XATTN_SHIM_H

#include <stdint.h>

/* Variants of the row pass, the values of the isa field of Go's openBLAS. */
enum {
	XATTN_ISA_SCALAR = 0,
	XATTN_ISA_AVX2 = 1,   /* AVX2 and FMA */
	XATTN_ISA_AVX512 = 2, /* AVX-512 F, DQ, BW and VL */
};

/*
 * The plain-integer part of blas.Attention; the slices travel as separate
 * pointer arguments of xattn_attend. Field names follow the Go ones.
 */
typedef struct {
	int batch, heads, kv_heads, tq, tk, dk, dv;
	float scale;
	int ldq, ldk, ldv, ldo;
	int64_t batch_q, batch_k, batch_v, batch_o;
	int causal;
	int64_t causal_offset;
	int64_t keep_stride[3];
	int64_t bias_stride[3];
	int q_block, kv_block, head_block;
	int64_t kt_batch, kt_head;
} xattn_attention;

/*
 * xattn_sgemm_batch computes, for i = 0 … count−1,
 *
 *	C_i = alpha·A_i·op(B_i) + beta·C_i (+ 1·biasᵀ when bias != NULL)
 *
 * with A_i = a + i·sa, B_i = b + i·sb, C_i = c + i·sc, op(B) = Bᵀ if transb:
 * blas.Batch, one cblas_sgemm per item.
 */
void xattn_sgemm_batch(int count, int transb, int m, int n, int k, float alpha,
		const float *a, int lda, int64_t sa, const float *b, int ldb, int64_t sb,
		float beta, float *c, int ldc, int64_t sc, const float *bias);

/* xattn_softmax_rows is pure.SoftmaxRows in the variant isa; keep holds Go bools. */
void xattn_softmax_rows(int isa, int m, int n, float *s, int lds,
		const float *bias, int ldbias, const unsigned char *keep, int ldkeep,
		int causal, int64_t lim0, float *mx, float *sum, float *corr);

/* xattn_scale_rows is pure.ScaleRows in the variant isa. */
void xattn_scale_rows(int isa, int m, int n, float *c, int ldc, const float *f);

/*
 * xattn_attend runs tasks [t0, t1) of the attention p, the steps of Go's
 * attendTask, with the row pass of the variant isa. scratch holds
 * q_block·head_block·⌈kv_block/16⌉·16 + 3·q_block·head_block, rounded up to a multiple of 16,
 * + dk·⌈kv_block/64⌉·64 + ⌈dv/64⌉·64·⌈kv_block/16⌉·16 floats (blas.Attention's ScratchLen);
 * the last two parts hold the packed transpose of a key block and the block's
 * values in panels when the variant is AVX-512, whose products run on
 * xattn_gemm_avx512. stats,
 * if not NULL, receives each row's maximum and sum as blas.Attention.Stats;
 * kt, if not NULL, holds the keys packed as blas.Attention.KT, which the
 * AVX-512 variant reads instead of packing a key block when the blocks start
 * on panels (kv_block a multiple of 64).
 */
void xattn_attend(int isa, const xattn_attention *p, const float *q,
		const float *k, const float *v, float *o, const int32_t *key_len,
		const unsigned char *keep, const float *bias, const float *kt, float *stats,
		float *scratch, int64_t t0, int64_t t1);

/*
 * xattn_gemm_avx512 (kernel.c) computes C = alpha·A·B + beta·C (+ 1·biasᵀ)
 * for row-major m×k A and k×n B stored in column panels of 64: columns j …
 * j+63 of row p start at b + (j/64)·pstride + p·ldb. A plain row-major B has
 * pstride = 64; a packed one ldb = 64 and pstride = 64·k. With beta = 0, C is
 * not read. Needs AVX-512 F and DQ; off x86-64 it is an empty stub.
 */
void xattn_gemm_avx512(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias);

/*
 * xattn_gemm_avx512_pf is xattn_gemm_avx512 with only the software prefetches
 * named in pf: XATTN_PF_A and XATTN_PF_C, the next strip's rows of A and C
 * (for operands that come from memory: a tall projection); XATTN_PF_B, the
 * block of a plain B whose rows lie far apart, once (the attention core's
 * values). Operands already in cache gain nothing from them.
 */
enum { XATTN_PF_A = 1, XATTN_PF_B = 2, XATTN_PF_C = 4, XATTN_PF_ALL = 7 };
void xattn_gemm_avx512_pf(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias, int pf);

/*
 * xattn_pack_kt writes the transpose of the nb×dk matrix K (leading dimension
 * ldk) to kt as a packed B for xattn_gemm_avx512: dk×nb, ldb = 64, pstride =
 * 64·dk. kt holds 64·dk·⌈nb/64⌉ floats.
 */
void xattn_pack_kt(int nb, int dk, const float *k, int64_t ldk, float *kt);

/*
 * xattn_pack_rows copies the nb×n matrix V (leading dimension ldv) to vt as a
 * packed B for xattn_gemm_avx512: ldb = 64, pstride = 64·ldp, with ldp ≥ nb
 * rows a panel. Rows of V that lie a page apart (a head's values among all
 * heads' keys and values) map to the same few L1 sets; the copy streams.
 */
void xattn_pack_rows(int nb, int n, const float *v, int64_t ldv, float *vt, int64_t ldp);

/* xattn_exp sets y[i] = e^x[i] for i < n with the exponential of variant isa (for tests). */
void xattn_exp(int isa, int n, const float *x, float *y);

#endif
