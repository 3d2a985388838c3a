package blas

import (
	"math"
	"slices"

	"github.com/xattn/xattn/pure"
)

// Pure returns the portable backend: package pure's kernels, on gonum's Go
// SGEMM. It is in every binary.
func Pure() Backend { return pureBackend{} }

type pureBackend struct{}

func (pureBackend) Name() string { return "pure" }

func (pureBackend) kernels() string { return "pure" }

// Pack returns the zero Packed: the pure backend reads B as it is. It
// checks its arguments as the OpenBLAS backend does.
func (pureBackend) Pack(w []float32, n, k int) Packed {
	checkPack(w, n, k)
	return Packed{}
}

// Steps returns the cut of the OpenBLAS backend's AVX-512 kernel (strips of
// 6 rows, panels of 64 columns): gonum's products care for neither, and
// this way every backend cuts a call alike.
func (pureBackend) Steps() (rows, cols int) { return 6, 64 }

// PackKeys returns false: the pure backend reads K as it is.
func (pureBackend) PackKeys(a *Attention) bool { return false }

func (pureBackend) packedKeysLen(items, tk, dk, dv int) float64 { return 0 }

func (pureBackend) Sgemm(g *Batch) {
	if !checkBatch(g) {
		return
	}
	for i := 0; i < g.Count; i++ {
		c := g.C[i*g.StrideC:]
		beta := g.Beta
		if g.Bias != nil {
			addBias(g.M, g.N, c, g.LDC, beta, g.Bias)
			beta = 1
		}
		if g.K == 0 {
			if g.Bias == nil {
				scaleAll(g.M, g.N, c, g.LDC, beta)
			}
			continue
		}
		pure.Sgemm(g.TransB, g.M, g.N, g.K, g.Alpha, g.A[i*g.StrideA:], g.LDA, g.B[i*g.StrideB:], g.LDB, beta, c, g.LDC)
	}
}

func (pureBackend) SoftmaxRows(r *Rows) {
	if !checkRows(r) {
		return
	}
	pure.SoftmaxRowsMasked(r.M, r.N, r.S, r.LDS, r.Bias, r.LDBias, r.Keep, r.LDKeep, r.rowMask(), r.Max, r.Sum, r.Corr)
}

func (pureBackend) ScaleRows(m, n int, c []float32, ldc int, f []float32) {
	if !checkScale(m, n, c, ldc, f) {
		return
	}
	pure.ScaleRows(m, n, c, ldc, f)
}

func (pureBackend) Attend(a *Attention, t0, t1 int, scratch []float32) {
	if !checkAttention(a, t0, t1, scratch) {
		return
	}
	for t := t0; t < t1; t++ {
		attendTask(a, t, scratch)
	}
}

// ScratchLen returns a.ScratchLen().
func (pureBackend) ScratchLen(a *Attention) int { return a.ScratchLen() }

// attendTask is one task of the attention core in Go; the C driver of the
// OpenBLAS backend runs the same steps.
func attendTask(a *Attention, t int, scratch []float32) {
	k := a.task(t)
	for h := k.h0; h < k.h0+k.nh; h++ {
		attendHead(a, &k, h, scratch)
	}
}

// attendHead runs head h of task k. The C core walks the key blocks once
// for all heads of a task; the heads do not depend on each other, so the
// order gives the same values. It uses the scratch as a.scratch lays it
// out, with the scores of one head at a time.
func attendHead(a *Attention, k *task, h int, scratch []float32) {
	attendHeadAs(a, k, h, scratch, false)
}

// attendHeadAs is attendHead, or with bf16 its BF16 form (attendRounded):
// Q, each key block and each value block rounded to bf16 into the scratch
// as a.roundedScratch lays it out, and the probabilities rounded in place
// after the row pass. Without bf16 it computes what it always has.
func attendHeadAs(a *Attention, k *task, h int, scratch []float32, bf16 bool) {
	b, q0, mq := k.b, k.q0, k.mq
	lay := a.scratch()
	g := h / (a.Heads / a.KVHeads)
	qb := a.BatchQ*b + a.LDQ*q0 + a.DK*h
	ob := a.BatchO*b + a.LDO*q0 + a.DV*h
	kb := a.BatchK*b + a.DK*g
	vb := a.BatchV*b + a.DV*g
	o := a.O[ob:]
	q, ldq := a.Q[qb:], a.LDQ
	var rl roundedLayout
	if bf16 {
		rl = a.roundedScratch()
		qr := scratch[rl.q:rl.k]
		roundInto(qr, q, mq, a.DK, ldq)
		q, ldq = qr, max(a.DK, 1)
	}

	s, lds := scratch[lay.scores:], lay.ldS
	hq := a.QBlock * a.headBlock()
	mx := scratch[lay.stats:][:mq]
	sum := scratch[lay.stats+hq:][:mq]
	corr := scratch[lay.stats+2*hq:][:mq]
	for r := range mq {
		mx[r] = negInf
		sum[r] = 0
	}

	for k0 := k.lo; k0 < k.hi; k0 += a.KVBlock {
		nb := min(a.KVBlock, k.hi-k0)
		kk, ldk := a.K[kb+k0*a.LDK:], a.LDK
		vv, ldv := a.V[vb+k0*a.LDV:], a.LDV
		if bf16 {
			kr, vr := scratch[rl.k:rl.v], scratch[rl.v:rl.len]
			roundInto(kr, kk, nb, a.DK, ldk)
			roundInto(vr, vv, nb, a.DV, ldv)
			kk, ldk, vv, ldv = kr, max(a.DK, 1), vr, max(a.DV, 1)
		}
		pure.Sgemm(true, mq, nb, a.DK, a.Scale, q, ldq, kk, ldk, 0, s, lds)
		var bias []float32
		if a.Bias != nil {
			bias = a.Bias[a.BiasStride[0]*b+a.BiasStride[1]*h+a.BiasStride[2]*q0+k0:]
		}
		var keep []bool
		if a.Keep != nil {
			keep = a.Keep[a.KeepStride[0]*b+a.KeepStride[1]*h+a.KeepStride[2]*q0+k0:]
		}
		rm := a.rowMask(h, q0, k0)
		pure.SoftmaxRowsMasked(mq, nb, s, lds, bias, a.BiasStride[2], keep, a.KeepStride[2], rm, mx, sum, corr)
		if bf16 {
			for r := range mq {
				row := s[r*lds:][:nb]
				for j, p := range row {
					row[j] = pure.RoundBF16(p)
				}
			}
		}
		beta := float32(0)
		if k0 > k.lo {
			pure.ScaleRows(mq, a.DV, o, a.LDO, corr)
			beta = 1
		}
		pure.Sgemm(false, mq, a.DV, nb, 1, s, lds, vv, ldv, beta, o, a.LDO)
		if a.DV > 0 {
			addSkipped(mq, nb, a.DV, s, lds, vv, ldv, bias, a.BiasStride[2], keep, a.KeepStride[2],
				&rm, o, a.LDO, scratch[lay.values:][:nb])
		}
	}
	if a.Stats != nil {
		st := a.Stats[2*((b*a.Heads+h)*a.Tq+q0):]
		for r := range mq {
			st[2*r], st[2*r+1] = mx[r], sum[r]
		}
	}
	// Normalise; a row that saw no key (sum 0, or no block at all) becomes
	// 0, a NaN row (sum NaN) stays NaN. gonum's product skips the terms of
	// a probability 0, so a masked key's value row, NaN or not, adds
	// nothing: pure needs no careful pass (see attend.c), only addSkipped.
	for r := range mq {
		if k.hi > k.lo && sum[r] != 0 {
			corr[r] = 1 / sum[r]
		} else {
			corr[r] = 0
		}
	}
	pure.ScaleRows(mq, a.DV, o, a.LDO, corr)
}

// addSkipped adds to o the terms of P·V that gonum's product skips and the
// C products compute: p = 0 (an exponential that underflowed) on a key the
// row sees, times a value row that is not finite, 0·NaN = NaN. s holds the
// mq×nb probabilities (leading dimension lds) of the row pass run with the
// bias, keep and structural mask arguments given; seen is scratch for nb
// values.
func addSkipped(mq, nb, dv int, s []float32, lds int, v []float32, ldv int, bias []float32, ldbias int, keep []bool, ldkeep int,
	rm *pure.RowMask, o []float32, ldo int, seen []float32) {
	clear(seen) // per key: 0 not looked at, 1 finite, 2 not
	for r := range mq {
		st, lim := rm.Span(r, nb)
		row := s[r*lds : r*lds+lim]
		if !slices.Contains(row[st:], 0) {
			continue // the common case: no key of the row has probability 0
		}
		for j, p := range row {
			if j < st {
				continue
			}
			if p != 0 || keep != nil && !keep[r*ldkeep+j] || bias != nil && math.IsInf(float64(bias[r*ldbias+j]), -1) {
				continue
			}
			vj := v[j*ldv : j*ldv+dv]
			if seen[j] == 0 {
				seen[j] = 1
				for _, x := range vj {
					if x-x != 0 {
						seen[j] = 2
						break
					}
				}
			}
			if seen[j] == 2 {
				orow := o[r*ldo : r*ldo+dv]
				for d, x := range vj {
					orow[d] += p * x
				}
			}
		}
	}
}

// addBias sets row i of the m×n matrix c to beta·c[i] + bias; with beta = 0, c
// is not read.
func addBias(m, n int, c []float32, ldc int, beta float32, bias []float32) {
	bias = bias[:n]
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			copy(row, bias)
			continue
		}
		for j, v := range bias {
			row[j] = beta*row[j] + v
		}
	}
}

// scaleAll multiplies the m×n matrix c by beta; beta = 0 stores zeros.
func scaleAll(m, n int, c []float32, ldc int, beta float32) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}
