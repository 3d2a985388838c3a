//go:build cgo && !purego

/*
 * The variant tables: each row pass with each set of products, so that a
 * test, XATTN_KERNELS or blas.OpenBLASVariant reaches every combination on
 * one machine; and the entry points of shim.h that run one table's kernel.
 * A new kernel is one more entry here (and its enum in shim.h) plus its
 * file; the Go side only checks the CPU for it (blas/cblas.go's
 * rowsFeatures and gemmFeatures).
 */
#include "internal.h"

#define ROWS(isa) .rows_name = #isa, .rows = xattn_rows_##isa, .rows_masked = xattn_rowsm_##isa, .scale = xattn_scale_##isa, \
		.finite = xattn_finite_##isa, .exp = xattn_exp_##isa
static const struct xattn_kernels tables[XATTN_ROWS_N][XATTN_GEMM_N] = {
	[XATTN_ROWS_SCALAR] = {{ROWS(scalar), .prod = &xattn_products_openblas},
			{ROWS(scalar), .prod = &xattn_products_avx512}},
	[XATTN_ROWS_AVX2] = {{ROWS(avx2), .prod = &xattn_products_openblas},
			{ROWS(avx2), .prod = &xattn_products_avx512}},
	[XATTN_ROWS_AVX512] = {{ROWS(avx512), .prod = &xattn_products_openblas},
			{ROWS(avx512), .prod = &xattn_products_avx512}},
};

const xattn_kernels *xattn_kernels_for(int rows, int gemm) { return &tables[rows][gemm]; }

void xattn_kernels_info(const xattn_kernels *kt, xattn_kernel_info *info) {
	info->rows = kt->rows_name;
	info->gemm = kt->prod->name;
	info->packs = kt->prod->gemm != NULL;
	info->blas = kt->prod->blas;
	info->row_step = kt->prod->row_step;
	info->col_step = kt->prod->col_step;
}

void xattn_gemm_packed(const xattn_kernels *kt, int m, int n, int k, float alpha, const float *a,
		int64_t lda, const float *b, float beta, float *c, int64_t ldc, const float *bias) {
	kt->prod->gemm(m, n, k, alpha, a, lda, b, XATTN_PANEL, (int64_t)XATTN_PANEL * k, beta, c, ldc, bias,
			XATTN_PF_ALL);
}

void xattn_pack(const xattn_kernels *kt, int n, int k, const float *w, int64_t ldw, float *out) {
	kt->prod->pack_keys(n, k, w, ldw, out);
}

void xattn_softmax_rows(const xattn_kernels *kt, int m, int n, float *s, int lds,
		const float *bias, int ldbias, const unsigned char *keep, int ldkeep,
		const xattn_rowmask *rm, float *mx, float *sum, float *corr) {
	if (n == 0) {
		/* No scores (s may be NULL): only the running state moves, as in pure. */
		xattn_rows_empty(m, mx, sum, corr);
		return;
	}
	kt->rows_masked(m, n, s, lds, bias, ldbias, keep, ldkeep, rm, mx, sum, corr);
}

void xattn_scale_rows(const xattn_kernels *kt, int m, int n, float *c, int ldc, const float *f) {
	kt->scale(m, n, c, ldc, f);
}

void xattn_exp(const xattn_kernels *kt, int n, const float *x, float *y) { kt->exp(n, x, y); }
