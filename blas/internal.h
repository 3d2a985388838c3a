//go:build cgo && !purego

/*
 * The C files' own header (cgo reads only shim.h): the target attributes
 * of the vector code, the kernel functions of each file and the table of a
 * variant, struct xattn_kernels, whose entries the entry points of
 * variants.c and the attention driver (attend.c) call.
 */
#ifndef XATTN_INTERNAL_H
#define XATTN_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "shim.h"

#if defined(__x86_64__)
#define XATTN_X86 1
#include <immintrin.h>
/*
 * Per-function targets, so that the files need no -m flags and run on any
 * x86-64: the variant tables reach each function only on a CPU with its
 * features.
 */
#define XATTN_AVX2 __attribute__((target("avx2,fma")))
#define XATTN_AVX512 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")))
#endif

/*
 * Column panel width of the packed operands of xattn_gemm_avx512
 * (kernel.c), and the rows of its register block, a strip.
 */
#define XATTN_PANEL 64
#define XATTN_STRIP 6

/* The row pass, row scale, finite check and exponential of one ISA (rows.c). */
typedef void (*xattn_rows_fn)(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, int causal, int64_t lim0, float *mx, float *sum, float *corr);
/*
 * The row pass with a structural mask (shim.h's xattn_rowmask): the entry a
 * driver calls. rows is the same with a causal limit alone.
 */
typedef void (*xattn_rowsm_fn)(int m, int n, float *s, int lds, const float *bias, int ldbias,
		const unsigned char *keep, int ldkeep, const xattn_rowmask *rm, float *mx, float *sum, float *corr);
typedef void (*xattn_scale_fn)(int m, int n, float *c, int ldc, const float *f);
typedef int (*xattn_finite_fn)(int m, int n, const float *c, int64_t ldc);
typedef void (*xattn_exp_fn)(int n, const float *x, float *y);

#define XATTN_ROW_PASS(isa)                                                                         \
	void xattn_rows_##isa(int m, int n, float *s, int lds, const float *bias, int ldbias,          \
			const unsigned char *keep, int ldkeep, int causal, int64_t lim0, float *mx, float *sum, \
			float *corr);                                                                       \
	void xattn_rowsm_##isa(int m, int n, float *s, int lds, const float *bias, int ldbias,         \
			const unsigned char *keep, int ldkeep, const xattn_rowmask *rm, float *mx, float *sum,   \
			float *corr);                                                                       \
	void xattn_scale_##isa(int m, int n, float *c, int ldc, const float *f);                     \
	int xattn_finite_##isa(int m, int n, const float *c, int64_t ldc);                            \
	void xattn_exp_##isa(int n, const float *x, float *y);
XATTN_ROW_PASS(scalar)
XATTN_ROW_PASS(avx2)
XATTN_ROW_PASS(avx512)

/*
 * XATTN_ROW_PASS_UNAVAILABLE(isa) defines the functions of
 * XATTN_ROW_PASS(isa) for a target that cannot run them: each ends the
 * process with a message (XATTN_UNAVAILABLE, below).
 */
#define XATTN_ROW_PASS_UNAVAILABLE(isa)                                                                  \
	void xattn_rows_##isa(int m, int n, float *s, int lds, const float *bias, int ldbias,               \
			const unsigned char *keep, int ldkeep, int causal, int64_t lim0, float *mx, float *sum,      \
			float *corr) {                                                                           \
		(void)m, (void)n, (void)s, (void)lds, (void)bias, (void)ldbias, (void)keep, (void)ldkeep;      \
		(void)causal, (void)lim0, (void)mx, (void)sum, (void)corr;                                     \
		XATTN_UNAVAILABLE("xattn_rows_" #isa);                                                         \
	}                                                                                                  \
	void xattn_rowsm_##isa(int m, int n, float *s, int lds, const float *bias, int ldbias,              \
			const unsigned char *keep, int ldkeep, const xattn_rowmask *rm, float *mx, float *sum,        \
			float *corr) {                                                                           \
		(void)m, (void)n, (void)s, (void)lds, (void)bias, (void)ldbias, (void)keep, (void)ldkeep;      \
		(void)rm, (void)mx, (void)sum, (void)corr;                                                     \
		XATTN_UNAVAILABLE("xattn_rowsm_" #isa);                                                        \
	}                                                                                                  \
	void xattn_scale_##isa(int m, int n, float *c, int ldc, const float *f) {                           \
		(void)m, (void)n, (void)c, (void)ldc, (void)f;                                                 \
		XATTN_UNAVAILABLE("xattn_scale_" #isa);                                                        \
	}                                                                                                  \
	int xattn_finite_##isa(int m, int n, const float *c, int64_t ldc) {                                 \
		(void)m, (void)n, (void)c, (void)ldc;                                                          \
		XATTN_UNAVAILABLE("xattn_finite_" #isa);                                                       \
	}                                                                                                  \
	void xattn_exp_##isa(int n, const float *x, float *y) {                                             \
		(void)n, (void)x, (void)y;                                                                     \
		XATTN_UNAVAILABLE("xattn_exp_" #isa);                                                          \
	}

/* The running state of a row that saw no score (rows.c): as pure.SoftmaxRows with n = 0. */
void xattn_rows_empty(int m, float *mx, float *sum, float *corr);

/*
 * The AVX-512 GEMM kernel and its packers (kernel.c). xattn_gemm_avx512
 * computes C = alpha·A·B + beta·C (+ 1·biasᵀ) for row-major m×k A and k×n B
 * stored in column panels of XATTN_PANEL: columns j … j+63 of row p start at
 * b + (j/64)·pstride + p·ldb. A plain row-major B has pstride = 64; a packed
 * one ldb = 64 and pstride = 64·k. With beta = 0, C is not read.
 * xattn_gemm_avx512_pf is the same with only the software prefetches named
 * in pf: XATTN_PF_A and XATTN_PF_C, the next strip's rows of A and C (for
 * operands that come from memory: a tall projection); XATTN_PF_B, the block
 * of a plain B whose rows lie far apart, once. Operands already in cache gain
 * nothing from them.
 */
enum { XATTN_PF_A = 1, XATTN_PF_B = 2, XATTN_PF_C = 4, XATTN_PF_ALL = 7 };
void xattn_gemm_avx512(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias);
void xattn_gemm_avx512_pf(int m, int n, int k, float alpha, const float *a, int64_t lda,
		const float *b, int64_t ldb, int64_t pstride, float beta, float *c, int64_t ldc,
		const float *bias, int pf);

/*
 * xattn_pack_kt writes the transpose of the nb×dk matrix K (leading dimension
 * ldk) to kt as a packed B: dk×nb, ldb = 64, pstride = 64·dk; kt holds
 * 64·dk·⌈nb/64⌉ floats. xattn_pack_rows copies the nb×n matrix V (leading
 * dimension ldv) to vt as a packed B: ldb = 64, pstride = 64·ldp, with
 * ldp ≥ nb rows a panel. Rows of V that lie a page apart (a head's values
 * among all heads' keys and values) map to the same few L1 sets; the copy
 * streams.
 */
void xattn_pack_kt(int nb, int dk, const float *k, int64_t ldk, float *kt);
void xattn_pack_rows(int nb, int n, const float *v, int64_t ldv, float *vt, int64_t ldp);

/*
 * A key or value block as a product reads it: element (j, d) of the block
 * (row j of K or V) at p + j·ld + d when pstride = 0 (row-major, in place or
 * a copy), else at p + (d/XATTN_PANEL)·pstride + j·XATTN_PANEL + d%XATTN_PANEL
 * (packed panels; for keys d is the key's row and j its feature: the
 * transpose).
 */
typedef struct {
	const float *p;
	int64_t ld, pstride;
} xattn_block;

/*
 * The products of the attention core, one set per GEMM kernel (products.c).
 * qk sets S = alpha·Q·Kᵀ (mq×nb, leading dimension lds, not read) from the
 * key block kb; pv sets O = P·V + beta·O from the value block vb. With
 * pack_keys NULL the blocks are read in place, else pack_keys and
 * pack_values copy them to the scratch's panels first (see shim.h for
 * their layout). stacks: the heads of a task whose rows lie side by side in
 * Q and O may run as one product. blas: the products call into OpenBLAS, so
 * Go holds a token of its buffer pool around the crossing.
 */
typedef struct {
	const char *name;
	int stacks, blas;
	int row_step, col_step; /* as xattn_kernel_info's */
	void (*qk)(int mq, int nb, int dk, float alpha, const float *q, int64_t ldq, const xattn_block *kb,
			float *s, int lds);
	void (*pv)(int mq, int dv, int nb, const float *s, int lds, const xattn_block *vb, float beta,
			float *o, int64_t ldo);
	void (*pack_keys)(int nb, int dk, const float *k, int64_t ldk, float *kt);
	void (*pack_values)(int nb, int n, const float *v, int64_t ldv, float *vt, int64_t ldp);
	/* gemm is xattn_gemm_avx512_pf on a packed B, or NULL: the products of [Backend.Pack]'s weights. */
	void (*gemm)(int m, int n, int k, float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
			int64_t pstride, float beta, float *c, int64_t ldc, const float *bias, int pf);
} xattn_products;

extern const xattn_products xattn_products_openblas, xattn_products_avx512;

/* The kernels of a variant: a row pass and a set of products, chosen apart. */
struct xattn_kernels {
	const char *rows_name;
	xattn_rows_fn rows;
	xattn_rowsm_fn rows_masked;
	xattn_scale_fn scale;
	xattn_finite_fn finite;
	xattn_exp_fn exp;
	const xattn_products *prod;
};

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
 * row_span is the part of row r of an n-column block that rm lets it see:
 * it returns the limit lim (as row_limit) and sets *st to the first
 * visible column, as shim.h's xattn_rowmask defines them.
 */
static inline int row_span(int n, const xattn_rowmask *rm, int r, int *st) {
	int lim = row_limit(n, rm->causal, rm->lim0, r);
	*st = 0;
	if (rm->window > 0) {
		int64_t s = rm->lim0 + r - rm->window;
		*st = s < 0 ? 0 : s < lim ? (int)s : lim;
	}
	return lim;
}

/*
 * row_mask is the structural mask of head h's rows from q0 on over the key
 * block from k0 on, for a driver's row pass (rows_masked): query i sits at
 * key position i + causal_offset for the causal limit, the window and ALiBi
 * alike (blas.Attention); alibi is NULL or a slope per head.
 */
static inline xattn_rowmask row_mask(const xattn_attention *p, const float *alibi, int h, int q0, int64_t k0) {
	xattn_rowmask rm = {p->causal, q0 + p->causal_offset + 1 - k0, p->window, alibi ? alibi[h] : 0.0f};
	return rm;
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
 * XATTN_UNAVAILABLE(what) ends the process with a message: the body of a
 * kernel compiled for a target that cannot run it, which no table the Go
 * side selects reaches; a slip is loud, never silent garbage.
 */
#define XATTN_UNAVAILABLE(what) xattn_unavailable(what, __FILE__, __LINE__)
__attribute__((noreturn, cold)) void xattn_unavailable(const char *what, const char *file, int line);

#endif
