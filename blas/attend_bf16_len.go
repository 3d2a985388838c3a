package blas

// ScratchLenBF16 returns the number of float32 scratch values one worker
// needs for [BF16.Attend] on a: at least a.ScratchLen(). It holds the
// scores and bf16 probabilities of 32 query rows against a key panel of
// KVBlock keys (rounded up to 32), the panel's packed keys and values,
// and, for each head of a task and each 32 of its QBlock query rows, the
// bf16 queries, the FP32 output accumulators and the running statistics.
func (a *Attention) ScratchLenBF16() int { return max(a.bf16Len(), a.ScratchLen()) }

// bf16Len is the length of the BF16 core's own scratch (xattn_bf16_scratch).
func (a *Attention) bf16Len() int {
	dkp, dvp, nbp := ceilDiv(a.DK, 32)*32, ceilDiv(a.DV, 32)*32, ceilDiv(a.KVBlock, 32)*32
	chunks := a.headBlock() * ceilDiv(a.QBlock, 32)
	n := 32*(nbp+16) + 32*(nbp+32)/2
	n += ceilDiv(nbp*dkp/2, 16)*16 + ceilDiv(nbp*dvp/2, 16)*16
	n += chunks * (32*dkp/2 + 32*dvp + 3*32)
	return n
}
