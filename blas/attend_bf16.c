//go:build cgo && !purego

/*
 * The BF16 attention core: blas.Attention's contract with Q and K rounded
 * to bf16 for Q·Kᵀ, FP32 scores and softmax, the probabilities rounded to
 * bf16 for P·V with V in bf16, FP32 accumulation and outputs. Its own
 * driver, not one more xattn_products set: the products work on 32 query
 * rows at a time (a 2×2 grid of 16×16 AMX tiles) against key panels of
 * KVBlock keys packed once per task in the VNNI pair layouts below, and the
 * row pass writes P in bf16 directly (see xattn_attend_bf16 in attend_bf16.h).
 *
 * Three product kernels share the layouts and the driver: AMX (TDPBF16PS),
 * AVX512-BF16 (VDPBF16PS) and "rounded", the same bf16 operands multiplied
 * and summed in FP32 by portable C. bf16 rounding is round-to-nearest-even
 * with subnormal inputs flushed to zero (as the hardware's dot products
 * read them) and NaN kept NaN.
 *
 * Layouts (bf16 elements; dkp, dvp: DK, DV rounded up to 32; a key panel
 * of nbp keys, nbp a multiple of 32):
 *
 *	Q rows   32 × dkp, row-major, zero padded.
 *	keys     group g of 16 keys at g·16·dkp; in it feature pair kk of
 *	         key j at kk·32 + 2j (+0, +1): the B operand of Q·Kᵀ, one
 *	         16-row tile per 32 features (kk = 16t … 16t+15).
 *	values   chunk c of 32 keys at c·32·dvp; in it column group e (16
 *	         columns) at e·512, keys 2jj, 2jj+1 of column d at jj·32 + 2d
 *	         (+0, +1): the B operand of P·V, one tile per (c, e).
 *	P        32 × ldp row-major bf16.
 *
 * Whole-sequence packed keys and values (xattn_pack_bf16) use the same
 * layouts from key 0, so a panel starting at a multiple of 32 is a slice.
 */
#include <string.h>

#include "attend_bf16.h"
#include "bf16_internal.h"

enum { BF_ROWS = 32 };

static inline int ceil32(int n) { return (n + 31) / 32 * 32; }
static inline int64_t bf_min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline float bf32(uint16_t h) {
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

void xattn_round_bf16(int n, const float *x, float *y) {
	for (int i = 0; i < n; i++)
		y[i] = bf32(xattn_bf16_bits(x[i]));
}

/* ---- Packers (portable C; the layouts above). ---- */

/* pack_q writes rows [0, m) of the m×dk matrix q (leading dimension ldq) to qb as 32×dkp bf16, zero padded. */
static void pack_q(int m, int dk, int dkp, const float *q, int64_t ldq, uint16_t *qb) {
	for (int r = 0; r < BF_ROWS; r++) {
		uint16_t *row = qb + (int64_t)r * dkp;
		int d = 0;
		if (r < m)
			for (; d < dk; d++)
				row[d] = xattn_bf16_bits(q[(int64_t)r * ldq + d]);
		for (; d < dkp; d++)
			row[d] = 0;
	}
}

/* pack_k writes keys [0, nb) of K (leading dimension ldk) as nbp = ⌈nb/32⌉·32 packed keys. */
static void pack_k(int nb, int dk, int dkp, const float *k, int64_t ldk, uint16_t *kp) {
	const int nbp = ceil32(nb);
	for (int j = 0; j < nbp; j++) {
		uint16_t *g = kp + (int64_t)(j / 16) * 16 * dkp + (j % 16) * 2;
		const float *kj = k + (int64_t)j * ldk;
		for (int d = 0; d < dkp; d += 2) {
			uint16_t *e = g + (d / 2) * 32;
			e[0] = j < nb && d < dk ? xattn_bf16_bits(kj[d]) : 0;
			e[1] = j < nb && d + 1 < dk ? xattn_bf16_bits(kj[d + 1]) : 0;
		}
	}
}

/*
 * pack_v writes values [0, nb) of V (leading dimension ldv) as nbp packed
 * values, a row with a non-finite value as zeros, and returns whether
 * there was one.
 */
static int pack_v(int nb, int dv, int dvp, const float *v, int64_t ldv, uint16_t *vp) {
	const int nbp = ceil32(nb);
	int bad = 0;
	for (int j = 0; j < nbp; j++) {
		uint16_t *c = vp + (int64_t)(j / 32) * 32 * dvp + ((j % 32) / 2) * 32 + (j % 2);
		const float *vj = v + (int64_t)j * ldv;
		int zero = j >= nb || !xattn_finite_scalar(1, dv, vj, 0);
		bad |= j < nb && zero;
		for (int d = 0; d < dvp; d++)
			c[(d / 16) * 512 + (d % 16) * 2] = !zero && d < dv ? xattn_bf16_bits(vj[d]) : 0;
	}
	return bad;
}

/* ---- Products: S = Q·Kᵀ (32 × nbp, unscaled) and O += P·V (32 × dvp). ---- */

typedef struct {
	const char *name;
	/*
	 * qk and pv take the depths dk and dv beside their padded layouts:
	 * a kernel may skip the zero padding past them (the pairs of Q·Kᵀ past
	 * dk, the column groups of O past dv), which changes no result.
	 */
	void (*qk)(int dk, int dkp, int nbp, const uint16_t *q, const uint16_t *kp, float *s, int lds);
	/*
	 * qk_part, where not NULL, is qk in parts: the pairs of key groups
	 * [p0, p1) (keys 32·p0 … 32·p1 − 1), called for p0 = 0, then on from
	 * where the last call ended, with no other tile use in between (the
	 * fused row pass interleaves the parts with its rows).
	 */
	void (*qk_part)(int dkp, int nbp, int p0, int p1, const uint16_t *q, const uint16_t *kp, float *s, int lds);
	void (*pv)(int dv, int dvp, int nbp, const uint16_t *p, int ldp, const uint16_t *vp, float *o);
	/*
	 * pv_part, where not NULL, is pv in parts: steps [t0, t1) of its
	 * (dvp/32)·(nbp/32) steps (a pair of column tiles by a chunk of 32
	 * keys), under the same rule as qk_part.
	 */
	void (*pv_part)(int dvp, int nbp, int t0, int t1, const uint16_t *p, int ldp, const uint16_t *vp, float *o);
	void (*begin)(void);
	void (*end)(void);
} bf16_products;

/*
 * The rounded kernel: a product of two bf16 values is exact in FP32, so
 * each step is one FP32 rounding, as an FMA's.
 */
static void qk_rounded(int dk, int dkp, int nbp, const uint16_t *q, const uint16_t *kp, float *s, int lds) {
	(void)dk;
	for (int g = 0; g < nbp / 16; g++) {
		const uint16_t *kg = kp + (int64_t)g * 16 * dkp;
		for (int r = 0; r < BF_ROWS; r++) {
			const uint16_t *qr = q + (int64_t)r * dkp;
			float acc[16] = {0};
			for (int kk = 0; kk < dkp / 2; kk++) {
				const float q0 = bf32(qr[2 * kk]), q1 = bf32(qr[2 * kk + 1]);
				const uint16_t *e = kg + kk * 32;
				for (int j = 0; j < 16; j++)
					acc[j] = acc[j] + q0 * bf32(e[2 * j]) + q1 * bf32(e[2 * j + 1]);
			}
			memcpy(s + (int64_t)r * lds + g * 16, acc, sizeof acc);
		}
	}
}

static void pv_rounded(int dv, int dvp, int nbp, const uint16_t *p, int ldp, const uint16_t *vp, float *o) {
	(void)dv;
	for (int r = 0; r < BF_ROWS; r++) {
		const uint16_t *pr = p + (int64_t)r * ldp;
		for (int e = 0; e < dvp / 16; e++) {
			float acc[16];
			memcpy(acc, o + (int64_t)r * dvp + e * 16, sizeof acc);
			for (int c = 0; c < nbp / 32; c++) {
				const uint16_t *ve = vp + (int64_t)c * 32 * dvp + e * 512;
				for (int jj = 0; jj < 16; jj++) {
					const float p0 = bf32(pr[c * 32 + 2 * jj]), p1 = bf32(pr[c * 32 + 2 * jj + 1]);
					const uint16_t *w = ve + jj * 32;
					for (int d = 0; d < 16; d++)
						acc[d] = acc[d] + p0 * bf32(w[2 * d]) + p1 * bf32(w[2 * d + 1]);
				}
			}
			memcpy(o + (int64_t)r * dvp + e * 16, acc, sizeof acc);
		}
	}
}

static const bf16_products prod_rounded = {.name = "rounded", .qk = qk_rounded, .pv = pv_rounded};

#if defined(XATTN_X86)

/* pair512 broadcasts the bf16 pair at p (32 bits) to 16 lanes. */
#define PAIR512(p) ((__m512bh)_mm512_set1_epi32(*(const int32_t *)(const void *)(p)))

/* qk_avx512bf16: 8 query rows × 2 key groups of 16 per step, 16 accumulators, over the ⌈dk/2⌉ pairs that are not padding. */
XATTN_AVX512BF16 static void qk_avx512bf16(int dk, int dkp, int nbp, const uint16_t *q, const uint16_t *kp, float *s,
		int lds) {
	const int pairs = (dk + 1) / 2;
	for (int g = 0; g < nbp / 16; g += 2) {
		const uint16_t *k0 = kp + (int64_t)g * 16 * dkp, *k1 = k0 + 16 * dkp;
		for (int r = 0; r < BF_ROWS; r += 8) {
			__m512 a[8][2];
			_Pragma("GCC unroll 8")
			for (int i = 0; i < 8; i++)
				a[i][0] = a[i][1] = _mm512_setzero_ps();
			const uint16_t *qr = q + (int64_t)r * dkp;
			for (int kk = 0; kk < pairs; kk++) {
				__m512bh b0 = (__m512bh)_mm512_loadu_si512(k0 + kk * 32);
				__m512bh b1 = (__m512bh)_mm512_loadu_si512(k1 + kk * 32);
				_Pragma("GCC unroll 8")
				for (int i = 0; i < 8; i++) {
					__m512bh qa = PAIR512(qr + (int64_t)i * dkp + 2 * kk);
					a[i][0] = _mm512_dpbf16_ps(a[i][0], qa, b0);
					a[i][1] = _mm512_dpbf16_ps(a[i][1], qa, b1);
				}
			}
			_Pragma("GCC unroll 8")
			for (int i = 0; i < 8; i++) {
				_mm512_storeu_ps(s + (int64_t)(r + i) * lds + g * 16, a[i][0]);
				_mm512_storeu_ps(s + (int64_t)(r + i) * lds + g * 16 + 16, a[i][1]);
			}
		}
	}
}

/*
 * pv_group computes NG (1 or 2) column groups of 16 from group e of O for
 * 8 rows from r, over all chunks of keys.
 */
static inline __attribute__((always_inline)) XATTN_AVX512BF16 void pv_group(const int NG, int e, int r, int dvp,
		int nbp, const uint16_t *p, int ldp, const uint16_t *vp, float *o) {
	__m512 a[8][2];
	_Pragma("GCC unroll 8")
	for (int i = 0; i < 8; i++) {
		a[i][0] = _mm512_loadu_ps(o + (int64_t)(r + i) * dvp + e * 16);
		a[i][1] = NG > 1 ? _mm512_loadu_ps(o + (int64_t)(r + i) * dvp + e * 16 + 16) : a[i][0];
	}
	for (int c = 0; c < nbp / 32; c++) {
		const uint16_t *v0 = vp + (int64_t)c * 32 * dvp + e * 512, *v1 = v0 + 512;
		const uint16_t *pr = p + (int64_t)r * ldp + c * 32;
		for (int jj = 0; jj < 16; jj++) {
			__m512bh b0 = (__m512bh)_mm512_loadu_si512(v0 + jj * 32);
			__m512bh b1 = NG > 1 ? (__m512bh)_mm512_loadu_si512(v1 + jj * 32) : b0;
			_Pragma("GCC unroll 8")
			for (int i = 0; i < 8; i++) {
				__m512bh pa = PAIR512(pr + (int64_t)i * ldp + 2 * jj);
				a[i][0] = _mm512_dpbf16_ps(a[i][0], pa, b0);
				if (NG > 1)
					a[i][1] = _mm512_dpbf16_ps(a[i][1], pa, b1);
			}
		}
	}
	_Pragma("GCC unroll 8")
	for (int i = 0; i < 8; i++) {
		_mm512_storeu_ps(o + (int64_t)(r + i) * dvp + e * 16, a[i][0]);
		if (NG > 1)
			_mm512_storeu_ps(o + (int64_t)(r + i) * dvp + e * 16 + 16, a[i][1]);
	}
}

/*
 * pv_avx512bf16: 8 rows × 2 column groups per step over all chunks, one
 * group for the last of an odd count; the groups past dv (padding, never
 * stored) are left alone.
 */
XATTN_AVX512BF16 static void pv_avx512bf16(int dv, int dvp, int nbp, const uint16_t *p, int ldp, const uint16_t *vp,
		float *o) {
	const int ng = (dv + 15) / 16;
	for (int e = 0; e < ng; e += 2)
		for (int r = 0; r < BF_ROWS; r += 8) {
			if (e + 1 < ng)
				pv_group(2, e, r, dvp, nbp, p, ldp, vp, o);
			else
				pv_group(1, e, r, dvp, nbp, p, ldp, vp, o);
		}
}

static const bf16_products prod_avx512bf16 = {.name = "avx512bf16", .qk = qk_avx512bf16, .pv = pv_avx512bf16};

/*
 * AMX: every tile is 16 rows of 64 bytes (16 fp32 or 32 bf16). Tiles 0–3
 * accumulate a 2×2 grid of 16×16 blocks of C, 4–5 hold A's two row
 * halves, 6–7 B's two column halves, so each loaded tile feeds two
 * products. The configuration is loaded on entry to xattn_attend_bf16 and
 * released before it returns.
 */
XATTN_AMX static void amx_begin(void) { xattn_amx_begin(); }

XATTN_AMX static void amx_end(void) { _tile_release(); }

/*
 * The key and value tiles of the panel load with TILELOADDT1 (a hint that
 * they need not stay in L1: the panel comes back from L2 for every block
 * of queries), so that the scores, P and the queries keep L1: 477 → 560
 * GFLOP/s at the perceiver shape (medians of 5, BenchmarkAttendBF16).
 */
XATTN_AMX static void qk_amx_part(int dkp, int nbp, int p0, int p1, const uint16_t *q, const uint16_t *kp, float *s,
		int lds) {
	(void)nbp;
	const int64_t gs = (int64_t)16 * dkp; /* a key group */
	if (dkp == 64) {
		/*
		 * The 32×64 queries stay in tiles 4–7 for the whole panel, so
		 * that only the keys stream from L2 (half the tile loads).
		 */
		if (p0 == 0) {
			_tile_loadd(4, q, 128);
			_tile_loadd(5, q + 32, 128);
			_tile_loadd(6, q + 16 * 64, 128);
			_tile_loadd(7, q + 16 * 64 + 32, 128);
		}
		for (int g = 2 * p0; g < 2 * p1; g++) {
			const uint16_t *k0 = kp + g * gs;
			_tile_zero(0);
			_tile_zero(1);
			_tile_stream_loadd(2, k0, 64);
			_tile_stream_loadd(3, k0 + 512, 64);
			_tile_dpbf16ps(0, 4, 2);
			_tile_dpbf16ps(1, 6, 2);
			_tile_dpbf16ps(0, 5, 3);
			_tile_dpbf16ps(1, 7, 3);
			_tile_stored(0, s + g * 16, lds * 4);
			_tile_stored(1, s + (int64_t)16 * lds + g * 16, lds * 4);
		}
		return;
	}
	for (int g = 2 * p0; g < 2 * p1; g += 2) {
		const uint16_t *k0 = kp + g * gs;
		_tile_zero(0);
		_tile_zero(1);
		_tile_zero(2);
		_tile_zero(3);
		for (int t = 0; t < dkp / 32; t++) {
			_tile_loadd(4, q + t * 32, dkp * 2);
			_tile_loadd(6, k0 + t * 512, 64);
			_tile_loadd(7, k0 + gs + t * 512, 64);
			_tile_loadd(5, q + 16 * dkp + t * 32, dkp * 2);
			_tile_dpbf16ps(0, 4, 6);
			_tile_dpbf16ps(1, 4, 7);
			_tile_dpbf16ps(2, 5, 6);
			_tile_dpbf16ps(3, 5, 7);
		}
		_tile_stored(0, s + g * 16, lds * 4);
		_tile_stored(1, s + g * 16 + 16, lds * 4);
		_tile_stored(2, s + (int64_t)16 * lds + g * 16, lds * 4);
		_tile_stored(3, s + (int64_t)16 * lds + g * 16 + 16, lds * 4);
	}
}

XATTN_AMX static void qk_amx(int dk, int dkp, int nbp, const uint16_t *q, const uint16_t *kp, float *s, int lds) {
	(void)dk; /* tiles of 32 features: the padding is computed */
	qk_amx_part(dkp, nbp, 0, nbp / 32, q, kp, s, lds);
}

XATTN_AMX static void pv_amx_part(int dvp, int nbp, int t0, int t1, const uint16_t *p, int ldp, const uint16_t *vp,
		float *o) {
	const int nc = nbp / 32;
	for (int t = t0; t < t1; t++) {
		const int e = t / nc * 2, c = t % nc;
		float *o0 = o + e * 16, *o1 = o + (int64_t)16 * dvp + e * 16;
		if (c == 0) {
			_tile_loadd(0, o0, dvp * 4);
			_tile_loadd(1, o0 + 16, dvp * 4);
			_tile_loadd(2, o1, dvp * 4);
			_tile_loadd(3, o1 + 16, dvp * 4);
		}
		const uint16_t *v0 = vp + (int64_t)c * 32 * dvp + e * 512;
		_tile_loadd(4, p + c * 32, ldp * 2);
		_tile_stream_loadd(6, v0, 64);
		_tile_stream_loadd(7, v0 + 512, 64);
		_tile_loadd(5, p + (int64_t)16 * ldp + c * 32, ldp * 2);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
		if (c == nc - 1) {
			_tile_stored(0, o0, dvp * 4);
			_tile_stored(1, o0 + 16, dvp * 4);
			_tile_stored(2, o1, dvp * 4);
			_tile_stored(3, o1 + 16, dvp * 4);
		}
	}
}

XATTN_AMX static void pv_amx(int dv, int dvp, int nbp, const uint16_t *p, int ldp, const uint16_t *vp, float *o) {
	(void)dv;
	pv_amx_part(dvp, nbp, 0, dvp / 32 * (nbp / 32), p, ldp, vp, o);
}

/*
 * xattn_amx_probe runs n steps of four independent TDPBF16PS chains on
 * tiles that stay loaded (the register-only loop of xbench's AMX probe):
 * 4·16·16·32·2 flops a step, the tile peak the core is held against.
 */
XATTN_AMX void xattn_amx_probe(int64_t n) {
	static const uint16_t ops[16 * 32] __attribute__((aligned(64))) = {0};
	xattn_amx_begin();
	_tile_loadd(4, ops, 64);
	_tile_loadd(5, ops, 64);
	_tile_loadd(6, ops, 64);
	_tile_loadd(7, ops, 64);
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	for (int64_t i = 0; i < n; i++) {
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	_tile_release();
}

static const bf16_products prod_amx = {
	.name = "amx", .qk = qk_amx, .qk_part = qk_amx_part, .pv = pv_amx, .pv_part = pv_amx_part, .begin = amx_begin, .end = amx_end};

#else
void xattn_amx_probe(int64_t n) {
	(void)n;
	XATTN_UNAVAILABLE("xattn_amx_probe");
}
static const bf16_products prod_avx512bf16 = {.name = "avx512bf16"};
static const bf16_products prod_amx = {.name = "amx"};
#endif

/* ---- Row passes: scores of a panel to P in bf16. ---- */

/*
 * tile_jobs is the tile work the fused row pass of a block of 32 query rows
 * runs in parts between its rows (tile_step before row r), so that the
 * tiles multiply while the vector units compute exponentials: first the
 * npv steps of the P·V of the block before (its P, its O), then the nqk
 * pairs of key groups of the Q·Kᵀ of the block after (its Q, its scores).
 */
typedef struct {
	const bf16_products *prod;
	int npv, nqk;
	int dkp, dvp, nbp, lds, ldp;
	const uint16_t *kp, *vp, *q, *p;
	float *s, *o;
} tile_jobs;

/* tile_step runs the parts of j due before row r: units [r·u/32, (r+1)·u/32) of u = npv + nqk. */
static inline void tile_step(const tile_jobs *j, int r) {
	if (!j)
		return;
	const int u = j->npv + j->nqk, u0 = r * u / BF_ROWS, u1 = (r + 1) * u / BF_ROWS;
	if (u0 < j->npv)
		j->prod->pv_part(j->dvp, j->nbp, u0, u1 < j->npv ? u1 : j->npv, j->p, j->ldp, j->vp, j->o);
	if (u1 > j->npv)
		j->prod->qk_part(j->dkp, j->nbp, (u0 > j->npv ? u0 : j->npv) - j->npv, u1 - j->npv, j->q, j->kp, j->s, j->lds);
}

/*
 * The two vector steps of rows_generic, one pair per ISA: scale_row
 * multiplies the n floats at x by scale; p_row writes n probabilities as
 * bf16 (RNE, subnormals to zero, as xattn_bf16_bits) and zeros to nbp.
 */
typedef struct {
	void (*scale_row)(int n, float scale, float *x);
	void (*p_row)(int n, int nbp, const float *x, uint16_t *p);
} row_steps;

static void scale_row_c(int n, float scale, float *x) {
	for (int j = 0; j < n; j++)
		x[j] *= scale;
}

static void p_row_c(int n, int nbp, const float *x, uint16_t *p) {
	int j = 0;
	for (; j < n; j++)
		p[j] = xattn_bf16_bits(x[j]);
	for (; j < nbp; j++)
		p[j] = 0;
}

static const row_steps steps_c = {scale_row_c, p_row_c};

/*
 * rows_generic scales rows [0, m) of S (nb scores, unscaled) by scale, runs
 * the variant's FP32 row pass on them (every mask kind, the non-finite
 * rule) and writes P: rows [0, m) rounded to bf16, the rest of its mp × nbp
 * rows and columns zero, with the steps of st.
 */
static void rows_generic(const row_steps *st, const xattn_kernels *kt, int m, int mp, int nb, float scale, float *s,
		int lds, uint16_t *p, int ldp, const float *bias, int ldbias, const unsigned char *keep, int ldkeep,
		const xattn_rowmask *rm, float *mx, float *sum, float *corr) {
	const int nbp = ceil32(nb);
	for (int r = 0; r < m; r++)
		st->scale_row(nb, scale, s + (int64_t)r * lds);
	kt->rows_masked(m, nb, s, lds, bias, ldbias, keep, ldkeep, rm, mx, sum, corr);
	for (int r = 0; r < mp; r++)
		st->p_row(r < m ? nb : 0, nbp, s + (int64_t)r * lds, p + (int64_t)r * ldp);
}

#if defined(XATTN_X86)
#define LOG2E_F 1.44269504088896341f

/*
 * exp2_512 is 2^t for t ≥ −126 (the caller clamps: a score less its row
 * maximum, in base 2 with the scale folded in, so that no subnormal ever
 * reaches P, the sum or a correction: one subnormal in an FMA chain costs
 * microcode assists): 2^⌊t⌋·2^f, f = t − ⌊t⌋ ∈ [0, 1) in one VREDUCEPS
 * (AVX512-DQ), 2^f by a degree-4 polynomial with 1 at f = 0 fitted for
 * relative error (< 3e-6: P is rounded to bf16, 2^-9, for P·V; the sum
 * keeps the FP32 values), and VSCALEFPS, which takes ⌊t⌋ of t itself.
 */
XATTN_AVX512 static inline __m512 exp2_512(__m512 t) {
	__m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
	__m512 y = _mm512_set1_ps(1.3426683843135834e-2f);
	y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.2242472767829895e-2f));
	y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.41280198097229e-1f));
	y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.930448412895203e-1f));
	y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(y, t);
}

/* bf16x32_emul rounds a and b (finite, normal or 0) to 32 bf16 (RNE), a first, in AVX-512F/BW integer steps. */
XATTN_AVX512 static inline __m512i bf16x32_emul(__m512 a, __m512 b) {
	const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
	__m512i ua = _mm512_castps_si512(a), ub = _mm512_castps_si512(b);
	ua = _mm512_srli_epi32(_mm512_add_epi32(ua, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(ua, 16), one))), 16);
	ub = _mm512_srli_epi32(_mm512_add_epi32(ub, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(ub, 16), one))), 16);
	/* packus interleaves 128-bit lanes: a0 b0 a1 b1 …; permute back. */
	__m512i pk = _mm512_packus_epi32(ua, ub);
	return _mm512_permutexvar_epi64(_mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0), pk);
}

/*
 * rows_fast_body is rows_generic for a panel without bias, keep or a causal
 * cut (every row sees all nb keys) and 0 < scale ≤ 1 (no finite score
 * overflows when scaled), fused: one pass for the maximum and the finite
 * check, one for 2^max(x·scale·log2 e − max·log2 e, −126), the sum and P
 * in bf16. A row with a non-finite score, or already NaN, goes through
 * rows_generic's row pass instead. Before each row it runs the parts of
 * tj (if not NULL) due there (tile_step). cvt rounds 32 probabilities to bf16:
 * bf16x32_emul, or VCVTNE2PS2BF16, the same bits on these values.
 */
#define ROWS_FAST_BODY(cvt)                                                                                    \
	const int nbp = ceil32(nb);                                                                           \
	const xattn_rowmask none = {0, 0, 0, 0.0f};                                                           \
	const __m512 c2 = _mm512_set1_ps(scale * LOG2E_F), lo = _mm512_set1_ps(-126.0f);                      \
	for (int r = 0; r < BF_ROWS; r++) {                                                                   \
		tile_step(tj, r);                                                                             \
		uint16_t *pr = p + (int64_t)r * ldp;                                                          \
		if (r >= m) {                                                                                 \
			memset(pr, 0, (size_t)nbp * sizeof *pr);                                              \
			continue;                                                                             \
		}                                                                                             \
		float *row = s + (int64_t)r * lds;                                                            \
		__m512 vm0 = _mm512_set1_ps(-INFINITY), vm1 = vm0;                                            \
		__mmask16 bad = 0;                                                                            \
		int j = 0;                                                                                    \
		for (; j + 32 <= nb; j += 32) {                                                               \
			__m512 x0 = _mm512_loadu_ps(row + j), x1 = _mm512_loadu_ps(row + j + 16);             \
			bad |= _mm512_fpclass_ps_mask(x0, 0x99) | _mm512_fpclass_ps_mask(x1, 0x99);           \
			vm0 = _mm512_max_ps(vm0, x0);                                                         \
			vm1 = _mm512_max_ps(vm1, x1);                                                         \
		}                                                                                             \
		for (; j < nb; j += 16) {                                                                     \
			__mmask16 mask = xattn_mask16(nb - j); \
			__m512 x = _mm512_maskz_loadu_ps(mask, row + j);                                      \
			bad |= _mm512_mask_fpclass_ps_mask(mask, x, 0x99);                                    \
			vm0 = _mm512_mask_max_ps(vm0, mask, vm0, x);                                          \
		}                                                                                             \
		if (bad || mx[r] != mx[r]) {                                                                  \
			rows_generic(&steps_c, kt, 1, 1, nb, scale, row, lds, pr, ldp, NULL, 0, NULL, 0, &none, mx + r,      \
					sum + r, corr + r);                                                   \
			continue;                                                                             \
		}                                                                                             \
		const float rm = _mm512_reduce_max_ps(_mm512_max_ps(vm0, vm1)) * scale;                       \
		const float mnew = mx[r] > rm ? mx[r] : rm;                                                   \
		const __m512 mb = _mm512_set1_ps(mnew * LOG2E_F);                                             \
		__m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;                                               \
		for (j = 0; j + 32 <= nb; j += 32) {                                                          \
			__m512 x0 = _mm512_loadu_ps(row + j), x1 = _mm512_loadu_ps(row + j + 16);             \
			__m512 p0 = exp2_512(_mm512_max_ps(_mm512_fmsub_ps(x0, c2, mb), lo));                 \
			__m512 p1 = exp2_512(_mm512_max_ps(_mm512_fmsub_ps(x1, c2, mb), lo));                 \
			acc0 = _mm512_add_ps(acc0, p0);                                                       \
			acc1 = _mm512_add_ps(acc1, p1);                                                       \
			_mm512_storeu_si512(pr + j, cvt(p0, p1));                                             \
		}                                                                                             \
		if (j < nb) {                                                                                 \
			int rem = nb - j;                                                                     \
			__mmask16 m0 = xattn_mask16(rem);          \
			__mmask16 m1 = xattn_mask16(rem - 16);                    \
			__m512 x0 = _mm512_maskz_loadu_ps(m0, row + j), x1 = _mm512_maskz_loadu_ps(m1, row + j + 16); \
			__m512 p0 = _mm512_maskz_mov_ps(m0, exp2_512(_mm512_max_ps(_mm512_fmsub_ps(x0, c2, mb), lo))); \
			__m512 p1 = _mm512_maskz_mov_ps(m1, exp2_512(_mm512_max_ps(_mm512_fmsub_ps(x1, c2, mb), lo))); \
			acc0 = _mm512_add_ps(acc0, p0);                                                       \
			acc1 = _mm512_add_ps(acc1, p1);                                                       \
			_mm512_storeu_si512(pr + j, cvt(p0, p1));                                             \
		}                                                                                             \
		float c = 1.0f;                                                                               \
		if (mx[r] != -INFINITY) {                                                                     \
			float t = (mx[r] - mnew) * LOG2E_F;                                                   \
			c = _mm512_cvtss_f32(exp2_512(_mm512_max_ps(_mm512_set1_ps(t), lo)));                 \
		}                                                                                             \
		corr[r] = c;                                                                                  \
		sum[r] = sum[r] * c + _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));                        \
		mx[r] = mnew;                                                                                 \
	}

XATTN_AVX512 static void rows_fast512(const xattn_kernels *kt, int m, int nb, float scale, float *s, int lds,
		uint16_t *p, int ldp, float *mx, float *sum, float *corr, const tile_jobs *tj) {
	ROWS_FAST_BODY(bf16x32_emul)
}

#define CVT_NATIVE(a, b) ((__m512i)_mm512_cvtne2ps_pbh((b), (a)))
XATTN_AVX512BF16 static void rows_fast512bf(const xattn_kernels *kt, int m, int nb, float scale, float *s, int lds,
		uint16_t *p, int ldp, float *mx, float *sum, float *corr, const tile_jobs *tj) {
	ROWS_FAST_BODY(CVT_NATIVE)
}

/* The steps of rows_generic on vectors (VCVTNE2PS2BF16), for the AMX and AVX512-BF16 kernels. */
XATTN_AVX512 static void scale_row512(int n, float scale, float *x) {
	const __m512 sc = _mm512_set1_ps(scale);
	for (int j = 0; j < n; j += 16) {
		__mmask16 mask = xattn_mask16(n - j);
		_mm512_mask_storeu_ps(x + j, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + j), sc));
	}
}

XATTN_AVX512BF16 static void p_row_bf(int n, int nbp, const float *x, uint16_t *p) {
	for (int j = 0; j < nbp; j += 32) {
		__mmask16 m0 = xattn_mask16(n - j), m1 = xattn_mask16(n - j - 16);
		__m512 x0 = _mm512_maskz_loadu_ps(m0, x + j), x1 = _mm512_maskz_loadu_ps(m1, x + j + 16);
		_mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
	}
}

static const row_steps steps_bf = {scale_row512, p_row_bf};

/* PAIRS16 interleaves the 16 bf16 of a's low half with those of its high half: a0 b0 a1 b1 … */
#define PAIRS16 _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, \
		20, 4, 19, 3, 18, 2, 17, 1, 16, 0)

/* row_finite512 reports whether the n floats at x are finite. */
XATTN_AVX512 static inline int row_finite512(const float *x, int n) {
	__mmask16 bad = 0;
	int d = 0;
	for (; d + 16 <= n; d += 16)
		bad |= _mm512_fpclass_ps_mask(_mm512_loadu_ps(x + d), 0x99);
	if (d < n) {
		__mmask16 mask = xattn_mask16(n - d);
		bad |= _mm512_mask_fpclass_ps_mask(mask, _mm512_maskz_loadu_ps(mask, x + d), 0x99);
	}
	return !bad;
}

/* pack_v_bf is pack_v with VCVTNE2PS2BF16: two key rows to one 64-byte row of pairs per 16 columns. */
XATTN_AVX512BF16 static int pack_v_bf(int nb, int dv, int dvp, const float *v, int64_t ldv, uint16_t *vp) {
	const int nbp = ceil32(nb);
	const __m512i idx = PAIRS16;
	int bad = 0;
	for (int j = 0; j < nbp; j += 2) {
		const float *v0 = v + (int64_t)j * ldv, *v1 = v0 + ldv;
		int z0 = j < nb && row_finite512(v0, dv), z1 = j + 1 < nb && row_finite512(v1, dv);
		bad |= (j < nb && !z0) || (j + 1 < nb && !z1);
		uint16_t *c = vp + (int64_t)(j / 32) * 32 * dvp + ((j % 32) / 2) * 32;
		for (int d = 0; d < dvp; d += 16) {
			__m512 a = xattn_load16(v0 + d, z0 ? dv - d : 0), b = xattn_load16(v1 + d, z1 ? dv - d : 0);
			__m512i w = (__m512i)_mm512_cvtne2ps_pbh(b, a);
			_mm512_storeu_si512(c + (d / 16) * 512, _mm512_permutexvar_epi16(idx, w));
		}
	}
	return bad;
}

/* pack_q_bf is pack_q with VCVTNE2PS2BF16. */
XATTN_AVX512BF16 static void pack_q_bf(int m, int dk, int dkp, const float *q, int64_t ldq, uint16_t *qb) {
	for (int r = 0; r < BF_ROWS; r++) {
		uint16_t *row = qb + (int64_t)r * dkp;
		const float *qr = q + (int64_t)r * ldq;
		for (int d = 0; d < dkp; d += 32) {
			int rem = r < m ? dk - d : 0;
			__m512 x0 = xattn_load16(qr + d, rem), x1 = xattn_load16(qr + d + 16, rem - 16);
			_mm512_storeu_si512(row + d, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
		}
	}
}

/* store_o512 is store_o on 16 lanes. */
XATTN_AVX512 static void store_o512(int m, int dv, int dvp, const float *ob, const float *f, float *o, int64_t ldo) {
	for (int r = 0; r < m; r++) {
		float *orow = o + (int64_t)r * ldo;
		const float *src = ob + (int64_t)r * dvp;
		if (f[r] == 0.0f) {
			memset(orow, 0, (size_t)dv * sizeof *orow);
			continue;
		}
		const __m512 fr = _mm512_set1_ps(f[r]);
		for (int d = 0; d < dv; d += 16)
			xattn_store16(orow + d, _mm512_mul_ps(_mm512_loadu_ps(src + d), fr), dv - d);
	}
}

/* scale_o512 is scale_o on 16 lanes. */
XATTN_AVX512 static void scale_o512(int m, int n, float *o, const float *f) {
	for (int r = 0; r < m; r++) {
		float *row = o + (int64_t)r * n;
		if (f[r] == 1.0f)
			continue;
		if (f[r] == 0.0f) {
			memset(row, 0, (size_t)n * sizeof *row);
			continue;
		}
		const __m512 fr = _mm512_set1_ps(f[r]);
		for (int d = 0; d < n; d += 16)
			_mm512_storeu_ps(row + d, _mm512_mul_ps(_mm512_loadu_ps(row + d), fr));
	}
}

/* pack_k_bf is pack_k with VCVTNE2PS2BF16 and a 16×16 transpose of the pairs of 16 keys. */
XATTN_AVX512BF16 static void pack_k_bf(int nb, int dk, int dkp, const float *k, int64_t ldk, uint16_t *kp) {
	const int nbp = ceil32(nb);
	for (int g = 0; g < nbp / 16; g++) {
		uint16_t *kg = kp + (int64_t)g * 16 * dkp;
		for (int t = 0; t < dkp; t += 32) {
			__m512i r[16], a[16], b[16];
			for (int i = 0; i < 16; i++) {
				const int j = g * 16 + i;
				const float *kj = k + (int64_t)j * ldk + t;
				const int rem = j < nb ? dk - t : 0;
				__m512 x0 = xattn_load16(kj, rem), x1 = xattn_load16(kj + 16, rem - 16);
				/* 32 bf16 in feature order: as 32-bit lanes, pair l = features t+2l, t+2l+1. */
				r[i] = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
			}
			for (int i = 0; i < 16; i += 2) {
				a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
				a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
			}
			for (int q = 0; q < 16; q += 4) {
				b[q] = _mm512_unpacklo_epi64(a[q], a[q + 2]);
				b[q + 1] = _mm512_unpackhi_epi64(a[q], a[q + 2]);
				b[q + 2] = _mm512_unpacklo_epi64(a[q + 1], a[q + 3]);
				b[q + 3] = _mm512_unpackhi_epi64(a[q + 1], a[q + 3]);
			}
			for (int e = 0; e < 4; e++) {
				__m512i y0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x44), y1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xEE);
				__m512i y2 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0x44), y3 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0xEE);
				/* Pair l = 4L + e of every key: row t/2 + l of the group. */
				_mm512_storeu_si512(kg + (t / 2 + 0 + e) * 32, _mm512_shuffle_i32x4(y0, y2, 0x88));
				_mm512_storeu_si512(kg + (t / 2 + 4 + e) * 32, _mm512_shuffle_i32x4(y0, y2, 0xDD));
				_mm512_storeu_si512(kg + (t / 2 + 8 + e) * 32, _mm512_shuffle_i32x4(y1, y3, 0x88));
				_mm512_storeu_si512(kg + (t / 2 + 12 + e) * 32, _mm512_shuffle_i32x4(y1, y3, 0xDD));
			}
		}
	}
}

static int rows_fast_ok = 1;
#else
static void rows_fast512(const xattn_kernels *kt, int m, int nb, float scale, float *s, int lds, uint16_t *p,
		int ldp, float *mx, float *sum, float *corr, const tile_jobs *tj) {
	(void)kt, (void)m, (void)nb, (void)scale, (void)s, (void)lds, (void)p, (void)ldp, (void)mx, (void)sum, (void)corr;
	(void)tj;
	XATTN_UNAVAILABLE("rows_fast512");
}
#define rows_fast512bf rows_fast512
#define pack_k_bf pack_k
#define pack_v_bf pack_v
#define pack_q_bf pack_q
#define steps_bf steps_c
#define store_o512 store_o
#define scale_o512 scale_o
static int rows_fast_ok = 0;
#endif

/* ---- The driver. ---- */

/*
 * fix_pv_bf16 adds p[r,j]·v[j,:] to o[r,:] (32 × dvp) for every row r < m
 * and every non-finite row j < nb of v that row r sees, as a product would
 * (0·NaN = NaN): pack_v left those rows out.
 */
static void fix_pv_bf16(int m, int nb, int dv, int dvp, const uint16_t *p, int ldp, const float *v, int64_t ldv,
		const float *bias, int ldbias, const unsigned char *keep, int ldkeep, const xattn_rowmask *rm, float *o) {
	for (int j = 0; j < nb; j++) {
		const float *vj = v + (int64_t)j * ldv;
		if (xattn_finite_scalar(1, dv, vj, 0))
			continue;
		for (int r = 0; r < m; r++) {
			const float *b = bias ? bias + (int64_t)r * ldbias : NULL;
			const unsigned char *k = keep ? keep + (int64_t)r * ldkeep : NULL;
			int st;
			if (!seen(j, row_span(nb, rm, r, &st), b, k) || j < st)
				continue;
			const float pr = bf32(p[(int64_t)r * ldp + j]);
			for (int d = 0; d < dv; d++)
				o[(int64_t)r * dvp + d] += pr * bf32(xattn_bf16_bits(vj[d]));
		}
	}
}

/* scale_o multiplies row r < m of o (32 × n) by f[r] as ScaleRows: 1 skips, 0 stores zeros. */
static void scale_o(int m, int n, float *o, const float *f) {
	for (int r = 0; r < m; r++) {
		float *row = o + (int64_t)r * n;
		if (f[r] == 1.0f)
			continue;
		if (f[r] == 0.0f) {
			memset(row, 0, (size_t)n * sizeof *row);
			continue;
		}
		for (int d = 0; d < n; d++)
			row[d] *= f[r];
	}
}

/* store_o writes rows [0, m) of o (32 × dvp) times f[r] to O, zeros where f[r] = 0. */
static void store_o(int m, int dv, int dvp, const float *ob, const float *f, float *o, int64_t ldo) {
	for (int r = 0; r < m; r++) {
		float *orow = o + (int64_t)r * ldo;
		const float *src = ob + (int64_t)r * dvp;
		if (f[r] == 0.0f)
			memset(orow, 0, (size_t)dv * sizeof *orow);
		else
			for (int d = 0; d < dv; d++)
				orow[d] = src[d] * f[r];
	}
}

static const bf16_products *bf16_prod(int kind) {
	switch (kind) {
	case XATTN_BF16_AMX:
		return &prod_amx;
	case XATTN_BF16_AVX512BF16:
		return &prod_avx512bf16;
	}
	return &prod_rounded;
}

/* bf16_native says whether the product kernel kind has AVX512-BF16 (VCVTNE2PS2BF16 for the packers and the row pass). */
static inline int bf16_native(int kind) { return kind == XATTN_BF16_AVX512BF16 || kind == XATTN_BF16_AMX; }

/* The packers of keys and values for a product kernel: every kernel's write the same bits. */
typedef struct {
	void (*keys)(int nb, int dk, int dkp, const float *k, int64_t ldk, uint16_t *kp);
	int (*values)(int nb, int dv, int dvp, const float *v, int64_t ldv, uint16_t *vp);
} kv_packers;

static kv_packers kv_packers_of(int kind) {
	return bf16_native(kind) ? (kv_packers){pack_k_bf, pack_v_bf} : (kv_packers){pack_k, pack_v};
}

int xattn_pack_bf16(int kind, int tk, int j0, int j1, int heads, int dk, int dv, const float *k, int64_t ldk,
		const float *v, int64_t ldv, uint16_t *kp, int64_t k_head, uint16_t *vp, int64_t v_head) {
	const kv_packers pk = kv_packers_of(kind);
	const int dkp = ceil32(dk), dvp = ceil32(dv);
	int bad = 0;
	for (int j = j0; j < j1; j += BF_ROWS) {
		const int nb = tk - j < BF_ROWS ? tk - j : BF_ROWS;
		for (int g = 0; g < heads; g++) {
			if (kp)
				pk.keys(nb, dk, dkp, k + (int64_t)j * ldk + (int64_t)g * dk, ldk, kp + g * k_head + (int64_t)j * dkp);
			if (vp)
				bad |= pk.values(nb, dv, dvp, v + (int64_t)j * ldv + (int64_t)g * dv, ldv,
						vp + g * v_head + (int64_t)j * dvp);
		}
	}
	return !bad;
}

void xattn_attend_bf16(const xattn_kernels *kt, int kind, const xattn_attention *p, const xattn_bf16_layout *lp,
		const float *q, const float *k, const float *v, float *o, const unsigned char *keep, const float *bias,
		const float *alibi, const xattn_bf16_packed *pk, float *stats, float *scratch, const xattn_task *tasks,
		int ntasks) {
	const bf16_products *prod = bf16_prod(kind);
	const xattn_bf16_layout l = *lp;
	const int dkp = ceil32(p->dk), dvp = ceil32(p->dv);
	const int panel = ceil32(p->kv_block);
	const int group = p->heads / p->kv_heads;
	/* Two blocks of scores and of P: the row pass of one runs beside the tile work of the others (tile_jobs). */
	float *sbuf[2] = {scratch + l.s, scratch + l.s + (int64_t)BF_ROWS * l.lds};
	uint16_t *pbuf[2] = {(uint16_t *)(scratch + l.p), (uint16_t *)(scratch + l.p) + (int64_t)BF_ROWS * l.ldp};
	uint16_t *kbuf = (uint16_t *)(scratch + l.kp), *vbuf = (uint16_t *)(scratch + l.vp);
	uint16_t *qbuf = (uint16_t *)(scratch + l.q);
	float *obuf = scratch + l.o, *st = scratch + l.st;
	/* The fused row pass where the panel allows it (see rows_fast_body); AVX512-BF16 where the products have it. */
	const int fast_rows = rows_fast_ok && kt->rows == xattn_rows_avx512 && !keep && !bias && p->scale > 0 &&
			p->scale <= 1;
	const int native = bf16_native(kind);
	const kv_packers packers = kv_packers_of(kind);
	void (*rows_fast)(const xattn_kernels *, int, int, float, float *, int, uint16_t *, int, float *, float *,
			float *, const tile_jobs *) = native ? rows_fast512bf : rows_fast512;
	void (*pack_rows)(int, int, int, const float *, int64_t, uint16_t *) = native ? pack_q_bf : pack_q;
	void (*store)(int, int, int, const float *, const float *, float *, int64_t) = native ? store_o512 : store_o;
	const row_steps *steps = native ? &steps_bf : &steps_c;
	void (*scale)(int, int, float *, const float *) = native ? scale_o512 : scale_o;
	const int ldp = (int)l.ldp, lds = (int)l.lds;

	if (prod->begin)
		prod->begin();
	for (int ti = 0; ti < ntasks; ti++) {
		/* The task (Go maps it): batch b, heads [h0, h0+nh) of key/value head g, rows [q0, q0+mq), keys [lo, hi). */
		const xattn_task *tk = tasks + ti;
		const int b = tk->b, h0 = tk->h0, nh = tk->nh, q0 = tk->q0, mq = tk->mq;
		const int64_t lo = tk->lo, hi = tk->hi;
		/* Whole-sequence packed panels serve where the panels start on their 32-key groups. */
		const int use_pk = pk && lo % BF_ROWS == 0;
		const int nch = (mq + BF_ROWS - 1) / BF_ROWS;
		const int g = h0 / group;
		const int64_t kb = p->batch_k * b + (int64_t)p->dk * g;
		const int64_t vb = p->batch_v * b + (int64_t)p->dv * g;

		for (int i = 0; i < nh; i++)
			for (int c = 0; c < nch; c++) {
				const int x = i * nch + c, m = mq - c * BF_ROWS < BF_ROWS ? mq - c * BF_ROWS : BF_ROWS;
				if (p->dk > 0)
					pack_rows(m, p->dk, dkp, q + p->batch_q * b + (int64_t)p->ldq * (q0 + c * BF_ROWS) + (int64_t)p->dk * (h0 + i),
							p->ldq, qbuf + (int64_t)x * BF_ROWS * dkp);
				memset(obuf + (int64_t)x * BF_ROWS * dvp, 0, (size_t)BF_ROWS * dvp * sizeof(float));
				for (int r = 0; r < BF_ROWS; r++) {
					st[(int64_t)x * 3 * BF_ROWS + r] = -INFINITY;
					st[(int64_t)x * 3 * BF_ROWS + BF_ROWS + r] = 0.0f;
				}
			}

		for (int64_t k0 = lo; k0 < hi; k0 += panel) {
			const int nb = (int)bf_min64(panel, hi - k0), nbp = ceil32(nb);
			const float *vin = v + vb + k0 * p->ldv;
			const uint16_t *kp = kbuf, *vp = vbuf;
			if (p->dk > 0) {
				if (use_pk && pk->k)
					kp = pk->k + pk->k_batch * b + pk->k_head * g + k0 * dkp;
				else
					packers.keys(nb, p->dk, dkp, k + kb + k0 * p->ldk, p->ldk, kbuf);
			}
			int fix = 0;
			if (p->dv > 0) {
				/* Prepacked values hold no non-finite row (xattn_pack_bf16's caller checks). */
				if (use_pk && pk->v)
					vp = pk->v + pk->v_batch * b + pk->v_head * g + k0 * dvp;
				else
					fix = packers.values(nb, p->dv, dvp, vin, p->ldv, vbuf);
			}
			/*
			 * Block x (head h0 + x/nch, rows 32·(x%nch) on) scores into
			 * sbuf[x&1] and writes P to pbuf[x&1]. Where the products
			 * come in parts, the fused row pass of block x runs the P·V
			 * of block x−1 and then the Q·Kᵀ of block x+1 between its
			 * rows (tile_jobs); otherwise, and for a block that takes
			 * the generic pass, they run before and after it. Each
			 * block gets the same operations in the same order either way.
			 */
			const int nblocks = nh * nch;
			const int parts = prod->qk_part && prod->pv_part;
			const int npv = dvp / 32 * (nbp / 32);
			int pending = -1; /* the block whose P·V is still to run */
			if (p->dk > 0)
				prod->qk(p->dk, dkp, nbp, qbuf, kp, sbuf[0], lds);
			for (int x = 0; x < nblocks; x++) {
				const int i = x / nch, c = x % nch, h = h0 + i;
				const int m = mq - c * BF_ROWS < BF_ROWS ? mq - c * BF_ROWS : BF_ROWS;
				const int r0 = q0 + c * BF_ROWS;
				float *s = sbuf[x & 1];
				uint16_t *pb = pbuf[x & 1];
				if (p->dk == 0)
					for (int r = 0; r < BF_ROWS; r++)
						memset(s + (int64_t)r * lds, 0, (size_t)nbp * sizeof *s);
				float *mx = st + (int64_t)x * 3 * BF_ROWS, *sum = mx + BF_ROWS, *corr = sum + BF_ROWS;
				float *ob = obuf + (int64_t)x * BF_ROWS * dvp;
				const int next = x + 1 < nblocks && p->dk > 0;
				const tile_jobs tj = {prod, pending >= 0 ? npv : 0, next ? nbp / 32 : 0, dkp, dvp, nbp, lds, ldp, kp, vp,
					qbuf + (int64_t)(x + 1) * BF_ROWS * dkp, pbuf[(x + 1) & 1], sbuf[(x + 1) & 1],
					obuf + (int64_t)(x - 1) * BF_ROWS * dvp};
				const float *bb = bias ? bias + p->bias_stride[0] * b + p->bias_stride[1] * h + p->bias_stride[2] * r0 + k0 : NULL;
				const unsigned char *kk = keep ? keep + p->keep_stride[0] * b + p->keep_stride[1] * h + p->keep_stride[2] * r0 + k0 : NULL;
				/*
				 * The fused pass only where no row of the panel meets a
				 * structural edge: no causal cut (lim0 ≥ nb), no window
				 * start (the last row's starts at 0), no ALiBi.
				 */
				const xattn_rowmask rm = row_mask(p, alibi, h, r0, k0);
				if (parts && fast_rows && (!rm.causal || rm.lim0 >= nb) &&
						(rm.window <= 0 || rm.lim0 + m - 1 - rm.window <= 0) && rm.slope == 0.0f) {
					rows_fast(kt, m, nb, p->scale, s, lds, pb, ldp, mx, sum, corr, tj.npv || tj.nqk ? &tj : NULL);
				} else {
					if (pending >= 0)
						prod->pv(p->dv, dvp, nbp, tj.p, ldp, vp, tj.o);
					if (fast_rows && (!rm.causal || rm.lim0 >= nb) &&
							(rm.window <= 0 || rm.lim0 + m - 1 - rm.window <= 0) && rm.slope == 0.0f)
						rows_fast(kt, m, nb, p->scale, s, lds, pb, ldp, mx, sum, corr, NULL);
					else
						rows_generic(steps, kt, m, BF_ROWS, nb, p->scale, s, lds, pb, ldp, bb,
								(int)p->bias_stride[2], kk, (int)p->keep_stride[2], &rm, mx, sum, corr);
					if (next)
						prod->qk(p->dk, dkp, nbp, tj.q, kp, tj.s, lds);
				}
				pending = -1;
				if (p->dv == 0)
					continue;
				if (k0 > lo)
					scale(m, dvp, ob, corr);
				if (parts && fast_rows && !fix && x + 1 < nblocks) {
					pending = x;
					continue;
				}
				prod->pv(p->dv, dvp, nbp, pb, ldp, vp, ob);
				if (fix)
					fix_pv_bf16(m, nb, p->dv, dvp, pb, ldp, vin, p->ldv, bb, (int)p->bias_stride[2], kk,
							(int)p->keep_stride[2], &rm, ob);
			}
		}

		for (int i = 0; i < nh; i++) {
			const int h = h0 + i;
			for (int c = 0; c < nch; c++) {
				const int x = i * nch + c, m = mq - c * BF_ROWS < BF_ROWS ? mq - c * BF_ROWS : BF_ROWS;
				const int r0 = q0 + c * BF_ROWS;
				const float *mx = st + (int64_t)x * 3 * BF_ROWS, *sum = mx + BF_ROWS;
				const float *ob = obuf + (int64_t)x * BF_ROWS * dvp;
				if (stats) {
					float *sp = stats + 2 * (((int64_t)b * p->heads + h) * p->tq + r0);
					for (int r = 0; r < m; r++) {
						sp[2 * r] = mx[r];
						sp[2 * r + 1] = sum[r];
					}
				}
				if (p->dv == 0)
					continue;
				float *ot = o + p->batch_o * b + (int64_t)p->ldo * r0 + (int64_t)p->dv * h;
				float *f = st + (int64_t)x * 3 * BF_ROWS + 2 * BF_ROWS; /* corr, no longer needed */
				for (int r = 0; r < m; r++)
					f[r] = hi > lo && sum[r] != 0.0f ? 1.0f / sum[r] : 0.0f;
				store(m, p->dv, dvp, ob, f, ot, p->ldo);
			}
		}
	}
	if (prod->end)
		prod->end();
}
