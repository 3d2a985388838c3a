package blas

import "math"

// Panic messages of the backends. Both backends run the same checks, in Go,
// before any work (and before any cgo crossing), so they fail identically and
// C only ever sees valid arguments.
const (
	errCount     = "blas: negative Count"
	errDim       = "blas: negative dimension"
	errTooLarge  = "blas: dimension or stride too large"
	errLDA       = "blas: bad leading dimension of A"
	errLDB       = "blas: bad leading dimension of B"
	errLDC       = "blas: bad leading dimension of C"
	errStride    = "blas: negative batch stride"
	errShortA    = "blas: insufficient length of A"
	errShortB    = "blas: insufficient length of B"
	errShortC    = "blas: insufficient length of C"
	errShortBia  = "blas: insufficient length of Bias"
	errLDS       = "blas: bad leading dimension of S"
	errShortS    = "blas: insufficient length of S"
	errLDMask    = "blas: bad leading dimension of a mask"
	errShortMsk  = "blas: insufficient length of a mask"
	errShortRow  = "blas: insufficient length of Max, Sum or Corr"
	errHeads     = "blas: Heads is not a positive multiple of KVHeads"
	errBlock     = "blas: non-positive QBlock or KVBlock"
	errLD        = "blas: bad leading dimension of Q, K, V or O"
	errShortQ    = "blas: insufficient length of Q"
	errShortK    = "blas: insufficient length of K"
	errShortV    = "blas: insufficient length of V"
	errShortO    = "blas: insufficient length of O"
	errKeyLen    = "blas: insufficient length of KeyLen"
	errRowMask   = "blas: negative Window, or ALiBi slopes short or not finite"
	errTasks     = "blas: task range out of bounds"
	errScratch   = "blas: insufficient length of scratch"
	errChunk     = "blas: chunk outside its product"
	errStats     = "blas: insufficient length of Stats"
	errHeadBlock = "blas: HeadBlock does not divide the query heads of a key/value head"
	errShortKT   = "blas: KT of too few keys or items, or of another depth than DK"
	errKeyPart   = "blas: key part out of range of KeyParts"
	errKeysBuf   = "blas: buffer of packed keys shorter than PackedKeysLen"
	errPacked    = "blas: Packed with Count ≠ 1, without TransB, with LDB ≠ K, or of another shape than N×K"
)

// maxC is the largest dimension, leading dimension or stride handed to C: the
// default OpenBLAS interface takes 32-bit int sizes.
const maxC = math.MaxInt32

// checkBatch panics if g is malformed. It reports whether there is any work.
func checkBatch(g *Batch) bool {
	if g.Count < 0 {
		panic(errCount)
	}
	if g.M < 0 || g.N < 0 || g.K < 0 {
		panic(errDim)
	}
	if g.StrideA < 0 || g.StrideB < 0 || g.StrideC < 0 {
		panic(errStride)
	}
	if g.M > maxC || g.N > maxC || g.K > maxC || g.LDA > maxC || g.LDB > maxC || g.LDC > maxC {
		panic(errTooLarge)
	}
	if g.LDA < max(1, g.K) {
		panic(errLDA)
	}
	if g.TransB {
		if g.LDB < max(1, g.K) {
			panic(errLDB)
		}
	} else if g.LDB < max(1, g.N) {
		panic(errLDB)
	}
	if g.LDC < max(1, g.N) {
		panic(errLDC)
	}
	if g.Count == 0 || g.M == 0 || g.N == 0 {
		return false
	}
	if g.K > 0 {
		if need(g.Count, g.StrideA, g.M, g.LDA, g.K) > len(g.A) {
			panic(errShortA)
		}
		rows, cols := g.K, g.N
		if g.TransB {
			rows, cols = g.N, g.K
		}
		if need(g.Count, g.StrideB, rows, g.LDB, cols) > len(g.B) {
			panic(errShortB)
		}
	}
	if need(g.Count, g.StrideC, g.M, g.LDC, g.N) > len(g.C) {
		panic(errShortC)
	}
	if g.Bias != nil && len(g.Bias) < g.N {
		panic(errShortBia)
	}
	if !g.Packed.IsZero() && (g.Count != 1 || !g.TransB || g.LDB != g.K || g.Packed.Count() != 1 ||
		g.Packed.N() != g.N || g.Packed.K() != g.K) {
		panic(errPacked)
	}
	return true
}

// checkPack panics unless w holds an n×k matrix.
func checkPack(w []float32, n, k int) {
	if n < 0 || k < 0 {
		panic(errDim)
	}
	if n > maxC || k > maxC {
		panic(errTooLarge)
	}
	if len(w) < n*k {
		panic(errShortB)
	}
}

// need returns the length a slice must have to hold count matrices of
// rows×cols with leading dimension ld, stride apart. rows, cols, count > 0.
func need(count, stride, rows, ld, cols int) int {
	return (count-1)*stride + (rows-1)*ld + cols
}

// checkRows panics if r is malformed. It reports whether there is any work.
func checkRows(r *Rows) bool {
	if r.M < 0 || r.N < 0 {
		panic(errDim)
	}
	if r.M > maxC || r.N > maxC || r.LDS > maxC || r.LDBias > maxC || r.LDKeep > maxC {
		panic(errTooLarge)
	}
	if r.LDS < max(1, r.N) {
		panic(errLDS)
	}
	if r.LDBias < 0 || r.LDKeep < 0 || (r.LDBias > 0 && r.LDBias < r.N) || (r.LDKeep > 0 && r.LDKeep < r.N) {
		panic(errLDMask)
	}
	if r.Window < 0 || r.Slope-r.Slope != 0 {
		panic(errRowMask)
	}
	if (r.Causal || r.Window > 0 || r.Slope != 0) && (r.Lim0 > maxC || r.Lim0 < -maxC || r.Window > maxC) {
		panic(errTooLarge)
	}
	if r.M == 0 {
		return false
	}
	if len(r.Max) < r.M || len(r.Sum) < r.M || len(r.Corr) < r.M {
		panic(errShortRow)
	}
	if r.N == 0 {
		return true
	}
	if need(1, 0, r.M, r.LDS, r.N) > len(r.S) {
		panic(errShortS)
	}
	if r.Bias != nil && need(1, 0, r.M, r.LDBias, r.N) > len(r.Bias) {
		panic(errShortMsk)
	}
	if r.Keep != nil && need(1, 0, r.M, r.LDKeep, r.N) > len(r.Keep) {
		panic(errShortMsk)
	}
	return true
}

// checkScale panics if the arguments of ScaleRows are malformed. It reports
// whether there is any work.
func checkScale(m, n int, c []float32, ldc int, f []float32) bool {
	if m < 0 || n < 0 {
		panic(errDim)
	}
	if m > maxC || n > maxC || ldc > maxC {
		panic(errTooLarge)
	}
	if ldc < max(1, n) {
		panic(errLDC)
	}
	if m == 0 {
		return false
	}
	if len(f) < m {
		panic(errShortRow)
	}
	if n == 0 {
		return false
	}
	if need(1, 0, m, ldc, n) > len(c) {
		panic(errShortC)
	}
	return true
}

// checkAttention panics if a, the task range or the scratch are malformed.
// It reports whether there is any work.
func checkAttention(a *Attention, t0, t1 int, scratch []float32) bool {
	if a.Batch < 0 || a.Heads < 0 || a.KVHeads < 0 || a.Tq < 0 || a.Tk < 0 || a.DK < 0 || a.DV < 0 {
		panic(errDim)
	}
	if a.QBlock <= 0 || a.KVBlock <= 0 {
		panic(errBlock)
	}
	for _, v := range [...]int{a.Batch, a.Heads, a.Tq, a.Tk, a.DK, a.DV, a.QBlock, a.KVBlock,
		a.LDQ, a.LDK, a.LDV, a.LDO, a.CausalOffset, -a.CausalOffset, a.Window,
		a.KeepStride[0], a.KeepStride[1], a.KeepStride[2], a.BiasStride[0], a.BiasStride[1], a.BiasStride[2]} {
		if v > maxC {
			panic(errTooLarge)
		}
	}
	if a.HeadBlock > maxC || a.QBlock*max(a.HeadBlock, 1) > maxC || a.scratch().stats > maxC {
		panic(errTooLarge)
	}
	if a.Heads > 0 && (a.KVHeads <= 0 || a.Heads%a.KVHeads != 0) {
		panic(errHeads)
	}
	if a.HeadBlock < 0 || a.HeadBlock > 1 && (a.KVHeads <= 0 || (a.Heads/a.KVHeads)%a.HeadBlock != 0) {
		panic(errHeadBlock)
	}
	if a.LDQ < max(1, a.Heads*a.DK) || a.LDO < max(1, a.Heads*a.DV) ||
		a.LDK < max(1, a.KVHeads*a.DK) || a.LDV < max(1, a.KVHeads*a.DV) {
		panic(errLD)
	}
	if a.BatchQ < 0 || a.BatchK < 0 || a.BatchV < 0 || a.BatchO < 0 {
		panic(errStride)
	}
	for _, s := range [...]int{a.KeepStride[0], a.KeepStride[1], a.KeepStride[2], a.BiasStride[0], a.BiasStride[1], a.BiasStride[2]} {
		if s < 0 {
			panic(errStride)
		}
	}
	if (a.Keep != nil && a.KeepStride[2] > 0 && a.KeepStride[2] < a.Tk) ||
		(a.Bias != nil && a.BiasStride[2] > 0 && a.BiasStride[2] < a.Tk) {
		panic(errLDMask)
	}
	if t0 < 0 || t1 < t0 || t1 > a.Tasks() {
		panic(errTasks)
	}
	if t0 == t1 {
		return false
	}
	// Tasks exist, so Batch, Heads and Tq are positive.
	if len(scratch) < a.ScratchLen() {
		panic(errScratch)
	}
	if a.DV > 0 && need(a.Batch, a.BatchO, a.Tq, a.LDO, a.Heads*a.DV) > len(a.O) {
		panic(errShortO)
	}
	if a.DK > 0 && need(a.Batch, a.BatchQ, a.Tq, a.LDQ, a.Heads*a.DK) > len(a.Q) {
		panic(errShortQ)
	}
	if a.KeyLen != nil && len(a.KeyLen) < a.Batch {
		panic(errKeyLen)
	}
	if a.Window < 0 {
		panic(errRowMask)
	}
	if a.ALiBi != nil {
		if len(a.ALiBi) < a.Heads {
			panic(errRowMask)
		}
		checkSlopes(a, t0, t1)
	}
	if a.Stats != nil && len(a.Stats) < 2*a.Batch*a.Heads*a.Tq {
		panic(errStats)
	}
	if a.Tk == 0 {
		return true
	}
	if a.DK > 0 && need(a.Batch, a.BatchK, a.Tk, a.LDK, a.KVHeads*a.DK) > len(a.K) {
		panic(errShortK)
	}
	if a.DV > 0 && need(a.Batch, a.BatchV, a.Tk, a.LDV, a.KVHeads*a.DV) > len(a.V) {
		panic(errShortV)
	}
	if !a.KT.IsZero() && (a.KT.Count() < a.Batch*a.KVHeads || a.KT.N() < a.Tk || a.KT.K() != a.DK) {
		panic(errShortKT)
	}
	if a.Keep != nil && maskNeed(a.KeepStride, a.Batch, a.Heads, a.Tq, a.Tk) > len(a.Keep) {
		panic(errShortMsk)
	}
	if a.Bias != nil && maskNeed(a.BiasStride, a.Batch, a.Heads, a.Tq, a.Tk) > len(a.Bias) {
		panic(errShortMsk)
	}
	return true
}

// checkSlopes panics if an ALiBi slope of a head that tasks [t0, t1) of a
// run (t0 < t1) is not finite: only those, so that a call split into many
// crossings (one a chunk of tasks) looks at each slope about once per batch,
// not Heads slopes a crossing.
func checkSlopes(a *Attention, t0, t1 int) {
	hb, nqb := a.headBlock(), ceilDiv(a.Tq, a.QBlock)
	nhb := ceilDiv(a.Heads, hb)
	bh0, bh1 := t0/nqb, (t1-1)/nqb // the (batch, head block) pairs of the tasks
	for bh := bh0; bh <= min(bh1, bh0+nhb-1); bh++ {
		h0 := bh % nhb * hb
		for _, v := range a.ALiBi[h0:min(h0+hb, a.Heads)] {
			if v-v != 0 {
				panic(errRowMask)
			}
		}
	}
}

// maskNeed returns the length a mask with the given strides needs.
func maskNeed(s [3]int, b, h, tq, tk int) int {
	return (b-1)*s[0] + (h-1)*s[1] + (tq-1)*s[2] + tk
}
