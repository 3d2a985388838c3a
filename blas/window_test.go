package blas

import "testing"

// TestTaskMapWindow checks that a window starts every task's keys at its
// first row's first visible key (rounded down to a panel with packed keys)
// and ends them at its last row's diagonal: a task walks at most QBlock +
// Window − 1 keys (+63 with packed keys), however many keys there are, so
// the work grows with the window, not with Tk.
func TestTaskMapWindow(t *testing.T) {
	for _, c := range []struct{ tq, tk, off, w, qb int }{
		{4096, 4096, 0, 256, 64}, {100, 1000, 900, 7, 6}, {7, 13, 6, 1, 4}, {5, 3, -2, 2, 2}, {9, 9, 0, 100, 4},
	} {
		for _, packed := range []bool{false, true} {
			a := &Attention{Batch: 1, Heads: 1, KVHeads: 1, Tq: c.tq, Tk: c.tk, Causal: true, CausalOffset: c.off,
				Window: c.w, QBlock: c.qb, KVBlock: 64}
			if packed {
				a.KT = Packed{layout: layoutPanels}
			}
			for ti := range a.Tasks() {
				k := a.task(ti)
				first := k.q0 + c.off - c.w + 1 // the first row's first visible key
				wantHi := min(max(k.q0+k.mq+c.off, 0), c.tk)
				if k.hi != wantHi {
					t.Fatalf("%+v packed=%t task %d: hi=%d, want %d", c, packed, ti, k.hi, wantHi)
				}
				slack := 0
				if packed {
					slack = maxPanel - 1
				}
				if k.lo > max(first, 0) && k.lo < k.hi || k.lo < min(max(first-slack, 0), k.hi) {
					t.Fatalf("%+v packed=%t task %d: lo=%d, first visible key %d", c, packed, ti, k.lo, first)
				}
				if packed && k.lo%maxPanel != 0 && k.lo != k.hi {
					t.Fatalf("%+v packed: task %d starts at key %d, off a panel", c, ti, k.lo)
				}
				if n := k.hi - k.lo; n > c.qb+c.w-1+slack {
					t.Fatalf("%+v packed=%t task %d: %d keys, more than QBlock+Window−1", c, packed, ti, n)
				}
			}
		}
	}
}
