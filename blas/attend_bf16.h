//go:build cgo && !purego

/*
 * The BF16 attention core (attend_bf16.c), as attend_bf16.go calls it: its
 * own header, so that shim.h and internal.h stay as they are.
 */
#ifndef XATTN_ATTEND_BF16_H
#define XATTN_ATTEND_BF16_H

#include <stdint.h>

#include "bf16.h"
#include "shim.h"

/*
 * The product kernel of the core is one of bf16.h's XATTN_BF16_* kernels:
 * AMX (TDPBF16PS; the caller holds the tile data permission), AVX512-BF16
 * (VDPBF16PS), or either rounded one (bf16 operands, FP32 FMAs in portable
 * C).
 */

/*
 * The scratch of one worker, in floats: offsets of its parts (blas's
 * bf16Layout defines them, Go fills this in; C never computes it).
 */
typedef struct {
	int64_t lds, ldp; /* leading dimensions of S (floats) and P (bf16) */
	int64_t s, p, kp, vp, q, o, st;
} xattn_bf16_layout;

/*
 * Keys and values packed for the whole sequence (xattn_pack_bf16), either
 * NULL: the strides between batches and between key/value heads, in bf16
 * elements. Packed values must hold no non-finite value.
 */
typedef struct {
	const uint16_t *k, *v;
	int64_t k_batch, k_head, v_batch, v_head;
} xattn_bf16_packed;

/*
 * xattn_pack_bf16 packs keys [j0, j1) of each of heads key/value heads of
 * K (head g's keys from k + g·dk, leading dimension ldk; tk keys in all)
 * to kp + g·k_head and the values of V to vp + g·v_head (either NULL to
 * skip), in the whole-sequence layouts of attend_bf16.c from key 0: j0 is
 * a multiple of 32, a head holds ⌈tk/32⌉·32·⌈d/32⌉·32 bf16, and keys past
 * tk in the last group are zeros. The packers are those of the product
 * kernel kind (an XATTN_BF16_* of bf16.h; every one writes the same bits).
 * Keys are taken 32 at a time for every head in turn, so that rows shared
 * by the heads are read from memory once. It returns 0 when a value row is
 * not finite (packed as zeros: vp is then unusable).
 */
int xattn_pack_bf16(int kind, int tk, int j0, int j1, int heads, int dk, int dv, const float *k, int64_t ldk,
		const float *v, int64_t ldv, uint16_t *kp, int64_t k_head, uint16_t *vp, int64_t v_head);

/* xattn_amx_probe runs n steps of four independent TDPBF16PS tile chains (the caller holds the tile data permission). */
void xattn_amx_probe(int64_t n);

/* xattn_round_bf16 sets y[i] to x[i] rounded to bf16 as the core rounds its operands (for tests). */
void xattn_round_bf16(int n, const float *x, float *y);

/*
 * xattn_attend_bf16 runs the ntasks tasks of p as xattn_attend does, in
 * BF16 with the product kernel kind (an XATTN_BF16_* of bf16.h) and the
 * FP32 row pass of kt, on scratch laid out as l says. pk may be NULL; its
 * panels serve the tasks whose keys start on a multiple of 32. alibi, if not
 * NULL, holds a slope per query head (blas.Attention.ALiBi); the window and
 * causal offset come in p, as for xattn_attend.
 */
void xattn_attend_bf16(const xattn_kernels *kt, int kind, const xattn_attention *p, const xattn_bf16_layout *l,
		const float *q, const float *k, const float *v, float *o, const unsigned char *keep, const float *bias,
		const float *alibi, const xattn_bf16_packed *pk, float *stats, float *scratch, const xattn_task *tasks,
		int ntasks);

#endif
