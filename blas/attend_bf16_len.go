package blas

// ScratchLenBF16 returns the number of float32 scratch values one worker
// needs for [BF16.Attend] on a: at least a.ScratchLen(). It holds the
// scores and bf16 probabilities of two blocks of 32 query rows (one
// block's row pass runs beside the other's products) against a key panel of
// KVBlock keys (rounded up to 32), the panel's packed keys and values,
// and, for each head of a task and each 32 of its QBlock query rows, the
// bf16 queries, the FP32 output accumulators and the running statistics.
func (a *Attention) ScratchLenBF16() int { return max(a.bf16Scratch().len, a.ScratchLen()) }

// bf16Rows is the query rows the BF16 core's products take at once (a 2×2
// grid of 16×16 AMX tiles), and the multiple its operands' depths and key
// panels are padded to (one tile's depth of bf16 pairs).
const bf16Rows = 32

// bf16Layout is where the parts of one worker's scratch start for the BF16
// core, in floats (bf16 parts take half a float a value): the one
// definition, which Go hands to C (xattn_bf16_layout).
type bf16Layout struct {
	// lds is the leading dimension of the 32 rows of scores s (floats),
	// ldp that of the bf16 probabilities p (bf16 values).
	lds, ldp int
	// s, p: scores and probabilities of two blocks of 32 query rows
	// against one panel (the second at s + 32·lds, p + 32·ldp);
	// kp, vp: the panel's keys and values in the products' pair layouts;
	// q, o, st: for each head of a task and each 32 of its query rows,
	// the bf16 queries, the FP32 output accumulators and the running
	// maximum, sum and correction.
	s, p, kp, vp, q, o, st int
	len                    int
}

// bf16Scratch returns the layout of a worker's scratch for the BF16 core
// on a. Every part starts on a multiple of 16 floats.
func (a *Attention) bf16Scratch() bf16Layout {
	dkp, dvp, nbp := ceilDiv(a.DK, bf16Rows)*bf16Rows, ceilDiv(a.DV, bf16Rows)*bf16Rows, ceilDiv(a.KVBlock, bf16Rows)*bf16Rows
	chunks := a.headBlock() * ceilDiv(a.QBlock, bf16Rows)
	l := bf16Layout{lds: nbp + 16, ldp: nbp + 32}
	l.p = l.s + 2*bf16Rows*l.lds // two blocks of scores
	l.kp = l.p + bf16Rows*l.ldp  // two blocks of probabilities
	l.vp = l.kp + ceilDiv(nbp*dkp/2, 16)*16
	l.q = l.vp + ceilDiv(nbp*dvp/2, 16)*16
	l.o = l.q + chunks*bf16Rows*dkp/2
	l.st = l.o + chunks*bf16Rows*dvp
	l.len = l.st + chunks*3*bf16Rows
	return l
}
