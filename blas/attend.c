//go:build cgo && !purego

/*
 * The attention core's driver: the tasks of blas.Attention, each walked
 * block by block over its keys with online softmax, on the kernels of one
 * variant table (the products, the row pass and row scale it holds).
 */
#include <math.h>
#include <string.h>

#include "internal.h"

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/*
 * Non-finite values. A visible non-finite score ends its row in xattn_row_bad, so
 * that the row's output is NaN; a masked key's score never counts. A masked
 * key's value row is still multiplied by its probability 0 in P·V, and
 * 0·NaN = NaN: the products cannot leave it out. So a task whose outputs
 * are all finite is done; one with a non-finite output runs again,
 * careful: each value block that holds a non-finite row is read from a copy
 * with those rows zeroed, the same bits a finite row with probability 0
 * gives, and fix_pv adds p·V_j of each such row j back to the rows that see
 * it, p = 0 (underflow) included, as a product would: 0·NaN = NaN.
 */

/* v_bad reports whether row j of the nb×dv value block v (leading dimension ldv) holds a non-finite value. */
static inline int v_bad(const float *v, int64_t ldv, int j, int dv) {
	return !xattn_finite_scalar(1, dv, v + (int64_t)j * ldv, 0);
}

/*
 * fix_pv adds p[r,j]·v[j,:] to o[r,:] for every row r < mq and every
 * non-finite row j < nb of v that row r sees (its limit, keep and bias rows
 * as for the row pass).
 */
static void fix_pv(int mq, int nb, int dv, const float *p, int lds, const float *v, int64_t ldv,
		const float *bias, int ldbias, const unsigned char *keep, int ldkeep, const xattn_rowmask *rm,
		float *o, int64_t ldo) {
	for (int j = 0; j < nb; j++) {
		if (!v_bad(v, ldv, j, dv))
			continue;
		const float *vj = v + (int64_t)j * ldv;
		for (int r = 0; r < mq; r++) {
			const float *b = bias ? bias + (int64_t)r * ldbias : NULL;
			const unsigned char *k = keep ? keep + (int64_t)r * ldkeep : NULL;
			int st;
			if (!seen(j, row_span(nb, rm, r, &st), b, k) || j < st)
				continue;
			const float pr = p[(int64_t)r * lds + j];
			float *orow = o + (int64_t)r * ldo;
			for (int d = 0; d < dv; d++)
				orow[d] += pr * vj[d];
		}
	}
}

/*
 * block_zero_row zeroes row j (n values) of a value block copied to vt in
 * the layout vb describes.
 */
static void block_zero_row(float *vt, const xattn_block *vb, int j, int n) {
	if (vb->pstride == 0) {
		memset(vt + (int64_t)j * vb->ld, 0, (size_t)n * sizeof *vt);
		return;
	}
	for (int d = 0; d < n; d++)
		vt[(int64_t)(d / XATTN_PANEL) * vb->pstride + (int64_t)j * XATTN_PANEL + d % XATTN_PANEL] = 0.0f;
}

void xattn_attend(const xattn_kernels *kt, const xattn_attention *p, const float *q,
		const float *k, const float *v, float *o, const unsigned char *keep, const float *bias,
		const float *alibi, const float *ktp, float *stats, float *scratch, const xattn_task *tasks, int ntasks) {
	const xattn_rowsm_fn rows = kt->rows_masked;
	const xattn_scale_fn scale = kt->scale;
	const xattn_products *prod = kt->prod;
	const int hb = p->head_block;
	const int group = p->heads / p->kv_heads;
	/* Scores of a block: q_block rows of every head of a task (stacked, below). */
	float *s = scratch;
	const int lds = p->scratch_lds;
	/* Running maximum, sum and correction of row r of head i of the task: [i·q_block + r]. */
	float *mxs = scratch + p->scratch_stats;
	float *sums = mxs + (int64_t)p->q_block * hb;
	float *corrs = sums + (int64_t)p->q_block * hb;
	/*
	 * Products that pack read the key block from its packed transpose kt
	 * and the value block from its copy in panels vt, each packed once for
	 * all the heads of a task; the others read both in place, and use vt
	 * only for a careful block's copy of its values (row-major, leading
	 * dimension dv).
	 */
	const int packs = prod->pack_keys != NULL;
	float *kt_buf = scratch + p->scratch_keys;
	float *vt = scratch + p->scratch_values;
	const int64_t ldp = p->scratch_ldv; /* rows of a panel of packed values */

	for (int ti = 0; ti < ntasks; ti++) {
		/*
		 * The task: batch b, query heads [h0, h0+nh) sharing key/value
		 * head g, query rows [q0, q0+mq), keys [lo, hi). The keys are
		 * walked once, block by block, for all its heads.
		 */
		const xattn_task *tk = tasks + ti;
		const int b = tk->b, h0 = tk->h0, nh = tk->nh, q0 = tk->q0, mq = tk->mq;
		const int64_t lo = tk->lo, hi = tk->hi;
		const int g = h0 / group;
		const int64_t kb = p->batch_k * b + (int64_t)p->dk * g;
		const int64_t vb = p->batch_v * b + (int64_t)p->dv * g;
		const int stack = prod->stacks && nh > 1 && nh == p->heads && p->ldq == (int64_t)p->heads * p->dk &&
				p->ldo == (int64_t)p->heads * p->dv;
		/* Packed keys serve where the key blocks start on their panels. */
		const int use_ktp = ktp && p->kv_block % XATTN_PANEL == 0 && lo % XATTN_PANEL == 0;
		int careful = 0;
	again:
		for (int r = 0; r < p->q_block * nh; r++) {
			mxs[r] = -INFINITY;
			sums[r] = 0.0f;
		}

		for (int64_t k0 = lo; k0 < hi; k0 += p->kv_block) {
			const int nb = (int)min64(p->kv_block, hi - k0);
			const float *vin = v + vb + k0 * p->ldv; /* the value block in V */
			xattn_block kblk = {k + kb + k0 * p->ldk, p->ldk, 0};
			xattn_block vblk = {vin, p->ldv, 0};
			if (p->dk > 0 && packs) {
				kblk = (xattn_block){kt_buf, XATTN_PANEL, (int64_t)XATTN_PANEL * p->dk};
				if (use_ktp)
					kblk.p = ktp + p->kt_batch * b + p->kt_head * g + k0 * (int64_t)p->dk;
				else
					prod->pack_keys(nb, p->dk, k + kb + k0 * p->ldk, p->ldk, kt_buf);
			}
			if (p->dv > 0 && packs) {
				prod->pack_values(nb, p->dv, vin, p->ldv, vt, ldp);
				vblk = (xattn_block){vt, XATTN_PANEL, XATTN_PANEL * ldp};
			}
			int fix = 0; /* the block has non-finite values, zeroed in vt */
			if (careful && p->dv > 0) {
				for (int j = 0; j < nb && !fix; j++)
					fix = v_bad(vin, p->ldv, j, p->dv);
				if (fix && !packs) {
					for (int j = 0; j < nb; j++)
						memcpy(vt + (int64_t)j * p->dv, vin + (int64_t)j * p->ldv, (size_t)p->dv * sizeof *vt);
					vblk = (xattn_block){vt, p->dv, 0};
				}
				for (int j = 0; fix && j < nb; j++)
					if (v_bad(vin, p->ldv, j, p->dv))
						block_zero_row(vt, &vblk, j, p->dv);
			}
			if (stack) {
				/*
				 * Every head of the row, side by side in Q and O: row i
				 * of head h is row i·heads + h of one matrix with
				 * leading dimension dk (dv), so both products run once
				 * for all heads, mq·heads rows tall; the row pass runs
				 * per head on every heads-th row of S.
				 */
				const int ms = mq * nh;
				float *os = o + p->batch_o * b + (int64_t)p->ldo * q0;
				if (p->dk > 0)
					prod->qk(ms, nb, p->dk, p->scale, q + p->batch_q * b + (int64_t)p->ldq * q0, p->dk, &kblk, s, lds);
				else
					memset(s, 0, (size_t)ms * (size_t)lds * sizeof *s);
				for (int i = 0; i < nh; i++) {
					const int h = h0 + i;
					float *mx = mxs + i * p->q_block, *sum = sums + i * p->q_block, *corr = corrs + i * p->q_block;
					const float *bb = bias ? bias + p->bias_stride[0] * b + p->bias_stride[1] * h + p->bias_stride[2] * q0 + k0 : NULL;
					const unsigned char *kk = keep ? keep + p->keep_stride[0] * b + p->keep_stride[1] * h + p->keep_stride[2] * q0 + k0 : NULL;
					const xattn_rowmask rm = row_mask(p, alibi, h, q0, k0);
					rows(mq, nb, s + (int64_t)i * lds, lds * nh, bb, (int)p->bias_stride[2], kk, (int)p->keep_stride[2],
							&rm, mx, sum, corr);
					if (p->dv > 0 && k0 > lo)
						scale(mq, p->dv, os + (int64_t)p->dv * h, p->ldo, corr);
				}
				if (p->dv > 0)
					prod->pv(ms, p->dv, nb, s, lds, &vblk, k0 > lo ? 1.0f : 0.0f, os, p->dv);
				for (int i = 0; fix && i < nh; i++) {
					const int h = h0 + i;
					const float *bb = bias ? bias + p->bias_stride[0] * b + p->bias_stride[1] * h + p->bias_stride[2] * q0 + k0 : NULL;
					const unsigned char *kk = keep ? keep + p->keep_stride[0] * b + p->keep_stride[1] * h + p->keep_stride[2] * q0 + k0 : NULL;
					const xattn_rowmask rm = row_mask(p, alibi, h, q0, k0);
					fix_pv(mq, nb, p->dv, s + (int64_t)i * lds, lds * nh, vin, p->ldv,
							bb, (int)p->bias_stride[2], kk, (int)p->keep_stride[2], &rm,
							os + (int64_t)p->dv * h, p->ldo);
				}
				continue;
			}
			for (int i = 0; i < nh; i++) {
				const int h = h0 + i;
				float *mx = mxs + i * p->q_block, *sum = sums + i * p->q_block, *corr = corrs + i * p->q_block;
				const float *qt = p->dk > 0 ? q + p->batch_q * b + (int64_t)p->ldq * q0 + (int64_t)p->dk * h : NULL;
				float *ot = p->dv > 0 ? o + p->batch_o * b + (int64_t)p->ldo * q0 + (int64_t)p->dv * h : NULL;
				/* S = Scale·Q_blk·K_blkᵀ, mq×nb with leading dimension lds. */
				if (p->dk > 0)
					prod->qk(mq, nb, p->dk, p->scale, qt, p->ldq, &kblk, s, lds);
				else
					memset(s, 0, (size_t)mq * (size_t)lds * sizeof *s);
				const float *bb = bias ? bias + p->bias_stride[0] * b + p->bias_stride[1] * h + p->bias_stride[2] * q0 + k0 : NULL;
				const unsigned char *kk = keep ? keep + p->keep_stride[0] * b + p->keep_stride[1] * h + p->keep_stride[2] * q0 + k0 : NULL;
				const xattn_rowmask rm = row_mask(p, alibi, h, q0, k0);
				rows(mq, nb, s, lds, bb, (int)p->bias_stride[2], kk, (int)p->keep_stride[2], &rm, mx, sum, corr);
				if (p->dv == 0)
					continue;
				/* O_blk = corr·O_blk + P·V_blk; the first block overwrites O. */
				float beta = 0.0f;
				if (k0 > lo) {
					scale(mq, p->dv, ot, p->ldo, corr);
					beta = 1.0f;
				}
				prod->pv(mq, p->dv, nb, s, lds, &vblk, beta, ot, p->ldo);
				if (fix)
					fix_pv(mq, nb, p->dv, s, lds, vin, p->ldv, bb, (int)p->bias_stride[2],
							kk, (int)p->keep_stride[2], &rm, ot, p->ldo);
			}
		}
		int ok = 1;
		for (int i = 0; i < nh; i++) {
			const int h = h0 + i;
			float *mx = mxs + i * p->q_block, *sum = sums + i * p->q_block, *corr = corrs + i * p->q_block;
			if (stats) {
				float *st = stats + 2 * (((int64_t)b * p->heads + h) * p->tq + q0);
				for (int r = 0; r < mq; r++) {
					st[2 * r] = mx[r];
					st[2 * r + 1] = sum[r];
				}
			}
			if (p->dv == 0)
				continue;
			/*
			 * Normalise; a row that saw no key (sum 0, or no block at
			 * all) becomes 0, a NaN row (sum NaN) stays NaN.
			 */
			for (int r = 0; r < mq; r++)
				corr[r] = hi > lo && sum[r] != 0.0f ? 1.0f / sum[r] : 0.0f;
			float *ot = o + p->batch_o * b + (int64_t)p->ldo * q0 + (int64_t)p->dv * h;
			scale(mq, p->dv, ot, p->ldo, corr);
			ok = ok && kt->finite(mq, p->dv, ot, p->ldo);
		}
		if (!ok && !careful) {
			careful = 1;
			goto again;
		}
	}
}
