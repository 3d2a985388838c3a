//go:build cgo && !purego

/*
 * The C side of the OpenBLAS backend of package blas, as cblas.go calls it:
 * loops that run a whole batch, row block or task list per cgo crossing,
 * each with the kernels of one variant, a table (struct xattn_kernels) that
 * Go chooses once per backend value with xattn_kernels_for. The C files
 * share internal.h besides; this header holds only what Go calls.
 *
 *	rows.c      the row pass, row scale, finite check and exponential, in
 *	            scalar C, AVX2+FMA and AVX-512
 *	attend.c    the attention core's driver (tasks, blocks, online softmax)
 *	products.c  the attention core's products (OpenBLAS or kernel.c) and
 *	            the batched products on OpenBLAS
 *	kernel.c    the AVX-512 GEMM kernel and its packers
 *	variants.c  the tables and the entry points below
 *
 * Every function trusts its arguments: package blas checks them in Go before
 * calling. All matrices are row-major; sizes and leading dimensions fit an
 * int, offsets are computed in int64_t. No function keeps a pointer after it
 * returns or calls back into Go.
 */
#ifndef XATTN_SHIM_H
#define XATTN_SHIM_H

#include <stdint.h>

/* The row passes and the GEMM kernels a variant may combine. */
enum {
	XATTN_ROWS_SCALAR = 0,
	XATTN_ROWS_AVX2 = 1,   /* AVX2 and FMA */
	XATTN_ROWS_AVX512 = 2, /* AVX-512 F, DQ, BW and VL */
	XATTN_ROWS_N = 3,
};
enum {
	XATTN_GEMM_OPENBLAS = 0, /* OpenBLAS's cblas_sgemm */
	XATTN_GEMM_AVX512 = 1,   /* kernel.c, on operands packed in panels of 64 */
	XATTN_GEMM_N = 2,
};

/*
 * The structural mask of a row pass over a block (blas.Rows, pure.RowMask),
 * computed from indices, never read from memory: a driver fills one per
 * head and key block and hands it to a table's rows_masked. Row r's
 * diagonal is column lim0 − 1 + r (its query's own key position, less the
 * block's first key). Row r sees columns [st, lim) with
 *
 *	lim = causal ? clamp(lim0 + r, 0, n) : n
 *	st  = window > 0 ? clamp(lim0 + r − window, 0, lim) : 0
 *
 * and slope, when not 0, adds the ALiBi term slope·(j − (lim0 − 1 + r)) to
 * the score of column j, rounded as slope·(float)(j − diagonal), before a
 * bias row.
 */
typedef struct {
	int causal;
	int64_t lim0;
	int64_t window; /* 0: none */
	float slope;    /* 0: no ALiBi */
} xattn_rowmask;

/* The kernels of one variant; see internal.h. */
typedef struct xattn_kernels xattn_kernels;

/*
 * xattn_kernels_for returns the table of the row pass rows and the GEMM
 * kernel gemm, which the caller has checked the CPU runs; the tables are
 * constant and live as long as the process.
 */
const xattn_kernels *xattn_kernels_for(int rows, int gemm);

/* What Go asks of a table: names for reports, and how its products run. */
typedef struct {
	const char *rows, *gemm;
	int packs; /* reads packed weights (xattn_gemm_packed) and keys, as xattn_pack lays them out */
	int blas;  /* xattn_attend calls into OpenBLAS */
	/*
	 * The steps its products are best cut in: row_step rows (the strip its
	 * kernel computes at once) and, for a table that packs, col_step
	 * columns, the width of its panels (blas.Backend.Steps).
	 */
	int row_step, col_step;
} xattn_kernel_info;
void xattn_kernels_info(const xattn_kernels *kt, xattn_kernel_info *info);

/*
 * The plain-integer part of blas.Attention; the slices travel as separate
 * pointer arguments of xattn_attend. Field names follow the Go ones; the
 * scratch_* fields are blas.Attention's scratch layout (scratchLayout in
 * blas.go), which Go defines: offsets into the scratch, in floats.
 */
typedef struct {
	int batch, heads, kv_heads, tq, tk, dk, dv;
	float scale;
	int ldq, ldk, ldv, ldo;
	int64_t batch_q, batch_k, batch_v, batch_o;
	int causal;
	int64_t causal_offset;
	int64_t window; /* blas.Attention.Window */
	int64_t keep_stride[3];
	int64_t bias_stride[3];
	int q_block, kv_block, head_block;
	int64_t kt_batch, kt_head;
	int64_t scratch_stats, scratch_keys, scratch_values;
	int scratch_lds, scratch_ldv;
} xattn_attention;

/*
 * One task of blas.Attention, as Go's Attention.task maps it (C never
 * computes the map): batch b, query heads [h0, h0+nh) sharing one
 * key/value head, query rows [q0, q0+mq), and the keys [lo, hi) any of its
 * rows can see, which its walk over the key blocks covers.
 */
typedef struct {
	int b, h0, nh, q0, mq, lo, hi;
} xattn_task;

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

/*
 * xattn_gemm_packed computes C = alpha·A·B + beta·C (+ 1·biasᵀ) with the
 * GEMM kernel of kt, for row-major m×k A and k×n B as xattn_pack lays it
 * out. With beta = 0, C is not read. Only for a table whose info says packs.
 */
void xattn_gemm_packed(const xattn_kernels *kt, int m, int n, int k, float alpha, const float *a,
		int64_t lda, const float *b, float beta, float *c, int64_t ldc, const float *bias);

/*
 * xattn_pack writes the transpose of the n×k matrix w (leading dimension
 * ldw) to out in the layout of kt's products: panels of col_step columns
 * of the k×n transpose, each k×col_step and contiguous, the columns past n
 * left as they are (zero); out holds col_step·k·⌈n/col_step⌉ floats. It
 * packs weights (w is a layer's n×k weight matrix, the product A·wᵀ) and
 * keys (w is nb keys of dk features). Only for a table whose info says
 * packs.
 */
void xattn_pack(const xattn_kernels *kt, int n, int k, const float *w, int64_t ldw, float *out);

/* xattn_softmax_rows is pure.SoftmaxRowsMasked with the row pass of kt; keep holds Go bools. */
void xattn_softmax_rows(const xattn_kernels *kt, int m, int n, float *s, int lds,
		const float *bias, int ldbias, const unsigned char *keep, int ldkeep,
		const xattn_rowmask *rm, float *mx, float *sum, float *corr);

/* xattn_scale_rows is pure.ScaleRows with the row scale of kt. */
void xattn_scale_rows(const xattn_kernels *kt, int m, int n, float *c, int ldc, const float *f);

/* xattn_exp sets y[i] = e^x[i] for i < n with the exponential of kt (for tests). */
void xattn_exp(const xattn_kernels *kt, int n, const float *x, float *y);

/*
 * xattn_attend runs the ntasks tasks of the attention p, the steps of Go's
 * attendTask, with the kernels of kt. scratch is laid out as p's scratch_*
 * fields say: the last two parts hold a key block's packed transpose and
 * the block's values in panels when kt's products pack, and a copy of a
 * value block in the careful rerun of a task with a non-finite output (see
 * attend.c). stats, if not NULL, receives each row's maximum and sum as
 * blas.Attention.Stats; kt_keys, if not NULL, holds the keys packed as
 * blas.Attention.KT, which packing products read instead of packing a key
 * block when the blocks start on panels. alibi, if not NULL, holds a slope
 * per query head (blas.Attention.ALiBi).
 */
void xattn_attend(const xattn_kernels *kt, const xattn_attention *p, const float *q,
		const float *k, const float *v, float *o, const unsigned char *keep, const float *bias,
		const float *alibi, const float *kt_keys, float *stats, float *scratch, const xattn_task *tasks, int ntasks);

/*
 * The crew (team.c): the backend's own threads, which run the items of one
 * phase of a call beside the calling thread (blas.Crew). A team is the
 * state of one call's phases: xattn_team_new makes or recycles one,
 * xattn_team_free recycles it (never frees it).
 */
typedef struct xattn_team xattn_team;
xattn_team *xattn_team_new(void);
void xattn_team_free(xattn_team *t);
/* xattn_team_threads returns how many crew threads have started. */
int xattn_team_threads(void);

/* The most products of one xattn_team_gemms phase. */
#define XATTN_TEAM_GEMMS 3
/* One product of a phase, C = A·B (+ 1·biasᵀ) with B packed (xattn_pack):
 * its integers (its pointers travel as arguments). */
typedef struct {
	int k;
	int64_t lda, ldc;
} xattn_team_gemm;
/* A chunk of a phase: rows [r0, r1) and columns [c0, c1) of product g, whose
 * packed columns start b_off floats into its B. */
typedef struct {
	int g, r0, r1, c0, c1;
	int64_t b_off;
} xattn_team_chunk;

/*
 * xattn_team_gemms runs the nchunks chunks of the (at most XATTN_TEAM_GEMMS)
 * products g, with pointers a_i, b_i, c_i and bias_i (NULL: none), on the
 * caller and up to threads−1 crew threads, with the GEMM kernel of kt (a
 * table whose info says packs); each chunk is xattn_gemm_packed with
 * alpha 1 and beta 0.
 */
void xattn_team_gemms(xattn_team *t, int threads, const xattn_kernels *kt, const xattn_team_gemm *g,
		const float *a0, const float *b0, float *c0, const float *bias0,
		const float *a1, const float *b1, float *c1, const float *bias1,
		const float *a2, const float *b2, float *c2, const float *bias2,
		const xattn_team_chunk *chunks, int nchunks);

/*
 * xattn_team_attend runs the ntasks tasks of p in items of chunk tasks, each
 * an xattn_attend on the worker's scratch (worker slot s: scratch_len floats
 * from scratch + s·scratch_len), on the caller and up to threads−1 crew
 * threads. Only for a table whose info does not say blas.
 */
void xattn_team_attend(xattn_team *t, int threads, const xattn_kernels *kt, const xattn_attention *p,
		const float *q, const float *k, const float *v, float *o, const unsigned char *keep, const float *bias,
		const float *alibi, const float *kt_keys, float *stats, float *scratch, int64_t scratch_len,
		const xattn_task *tasks, int ntasks, int chunk);

#endif
