package blas

import (
	"math"
	"testing"
)

// TestCheckSlopesPerTasks checks that Attend validates the ALiBi slopes of
// the heads its tasks run, once a crossing: a NaN slope of head 1 panics a
// call whose tasks run head 1, on every backend, the BF16 ones included,
// and not one that runs head 0 only (it never reads that slope).
func TestCheckSlopesPerTasks(t *testing.T) {
	bes := All()
	for _, be := range All() {
		if b, err := WithBF16(be, BF16Default()); err == nil {
			bes = append(bes, b)
		}
	}
	for _, be := range bes {
		for _, hb := range []int{0, 2} {
			a := &Attention{Batch: 2, Heads: 2, KVHeads: 1, Tq: 3, Tk: 4, DK: 2, DV: 3, Scale: 1, HeadBlock: hb,
				Q: make([]float32, 24), K: make([]float32, 16), V: make([]float32, 24), O: make([]float32, 36),
				LDQ: 4, LDK: 2, LDV: 3, LDO: 6, BatchQ: 12, BatchK: 8, BatchV: 12, BatchO: 18, QBlock: 2, KVBlock: 2,
				ALiBi: []float32{0.5, float32(math.NaN())}}
			scratch := make([]float32, be.ScratchLen(a))
			// Tasks: batch, head block, query block (2 a head): 0 and 1 run
			// batch 0's head 0 (both heads for a head block of 2).
			if hb == 0 {
				be.Attend(a, 0, 2, scratch)
				mustPanic(t, errRowMask, func() { be.Attend(a, 1, 3, scratch) })
			}
			mustPanic(t, errRowMask, func() { be.Attend(a, 0, a.Tasks(), scratch) })
			mustPanic(t, errRowMask, func() { be.Attend(a, a.Tasks()-1, a.Tasks(), scratch) })
		}
	}
}
