//go:build cgo && !purego

/*
 * Products on OpenBLAS and the two sets of products of the attention core:
 * OpenBLAS's cblas_sgemm on the blocks in place, and kernel.c's AVX-512
 * kernel on blocks packed in panels (see xattn_products in internal.h).
 */
#include <string.h>

#include <cblas.h>

#include "internal.h"

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

static void qk_openblas(int mq, int nb, int dk, float alpha, const float *q, int64_t ldq, const xattn_block *kb,
		float *s, int lds) {
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mq, nb, dk, alpha, q, (int)ldq, kb->p, (int)kb->ld,
			0.0f, s, lds);
}

static void pv_openblas(int mq, int dv, int nb, const float *s, int lds, const xattn_block *vb, float beta,
		float *o, int64_t ldo) {
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mq, dv, nb, 1.0f, s, lds, vb->p, (int)vb->ld,
			beta, o, (int)ldo);
}

const xattn_products xattn_products_openblas = {
	.name = "openblas", .stacks = 0, .blas = 1, .qk = qk_openblas, .pv = pv_openblas,
	/*
	 * OpenBLAS packs its operands itself, so any cut serves; these are the
	 * AVX-512 kernel's, so that every variant cuts a call alike.
	 */
	.row_step = XATTN_STRIP, .col_step = XATTN_PANEL,
};

/*
 * The AVX-512 products read A in place, the key block from its packed
 * transpose and the value block from its copy in panels (a head's value
 * rows lie a page apart, all in the same few L1 sets: 88 → 75 ms for the
 * Perceiver's core on one thread): OpenBLAS packs both operands on every
 * call, which cost about as much as the products on these tiles. The
 * operands are in cache: no prefetches.
 */
static void qk_avx512(int mq, int nb, int dk, float alpha, const float *q, int64_t ldq, const xattn_block *kb,
		float *s, int lds) {
	xattn_gemm_avx512_pf(mq, nb, dk, alpha, q, ldq, kb->p, kb->ld, kb->pstride, 0.0f, s, lds, NULL, 0);
}

static void pv_avx512(int mq, int dv, int nb, const float *s, int lds, const xattn_block *vb, float beta,
		float *o, int64_t ldo) {
	xattn_gemm_avx512_pf(mq, dv, nb, 1.0f, s, lds, vb->p, vb->ld, vb->pstride, beta, o, ldo, NULL, 0);
}

const xattn_products xattn_products_avx512 = {
	.name = "xattn-avx512", .stacks = 1, .blas = 0, .qk = qk_avx512, .pv = pv_avx512,
	.pack_keys = xattn_pack_kt, .pack_values = xattn_pack_rows, .gemm = xattn_gemm_avx512_pf,
	.row_step = XATTN_STRIP, .col_step = XATTN_PANEL,
};
