//go:build cgo && !purego

/*
 * The BF16 attention core (attend_bf16.c), as attend_bf16.go calls it: its
 * own header, so that shim.h and internal.h stay as they are.
 */
#ifndef XATTN_ATTEND_BF16_H
#define XATTN_ATTEND_BF16_H

#include <stdint.h>

#include "shim.h"

/* The product kernels of the BF16 core (XATTN_BF16 names them). */
enum {
	XATTN_BF16_ROUNDED = 0,    /* bf16 operands, FP32 FMAs in portable C */
	XATTN_BF16_AVX512BF16 = 1, /* VDPBF16PS */
	XATTN_BF16_AMX = 2,        /* TDPBF16PS; the caller holds the tile data permission */
	XATTN_BF16_N = 3,
};

/* The scratch of one worker, in floats: offsets of its parts and its length (blas.Attention.ScratchLenBF16). */
typedef struct {
	int64_t lds, ldp; /* leading dimensions of S (floats) and P (bf16) */
	int64_t s, p, kp, vp, q, o, st, len;
} xattn_bf16_layout;
void xattn_bf16_scratch(const xattn_attention *p, xattn_bf16_layout *l);

/* xattn_bf16_name returns the name of kernel kind: "rounded", "avx512bf16" or "amx". */
const char *xattn_bf16_name(int kind);

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
 * xattn_pack_bf16 packs keys [0, nb) of K (nb×dk, leading dimension ldk)
 * to kp and values [0, nb) of V to vp (either NULL to skip) in the layouts
 * of attend_bf16.c, ⌈nb/32⌉·32 keys each, zero padded: kp holds
 * ⌈nb/32⌉·32·⌈dk/32⌉·32 bf16, vp ⌈nb/32⌉·32·⌈dv/32⌉·32. It returns 0 when
 * a value row is not finite (packed as zeros: vp is then unusable).
 */
int xattn_pack_bf16(int nb, int dk, int dv, const float *k, int64_t ldk, const float *v, int64_t ldv,
		uint16_t *kp, uint16_t *vp);

/* xattn_round_bf16 sets y[i] to x[i] rounded to bf16 as the core rounds its operands (for tests). */
void xattn_round_bf16(int n, const float *x, float *y);

/*
 * xattn_attend_bf16 runs tasks [t0, t1) of p as xattn_attend does, in
 * BF16 with the product kernel kind and the FP32 row pass of kt, on
 * scratch of xattn_bf16_scratch's length. pk may be NULL.
 */
void xattn_attend_bf16(const xattn_kernels *kt, int kind, const xattn_attention *p, const float *q,
		const float *k, const float *v, float *o, const int32_t *key_len, const unsigned char *keep,
		const float *bias, const xattn_bf16_packed *pk, float *stats, float *scratch, int64_t t0, int64_t t1);

#endif
