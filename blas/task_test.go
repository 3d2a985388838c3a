package blas

import (
	"fmt"
	"testing"
)

// TestTaskMap checks Attention.task, the one task map of every backend:
// the tasks cover each (batch, head, query row) exactly once, a task's
// heads share their key/value head, and its keys [lo, hi) are those its
// rows can see at all; and Attention.scratch, whose parts do not overlap
// and start aligned.
func TestTaskMap(t *testing.T) {
	for _, c := range []struct{ b, h, kvh, hb, tq, qb, tk, off int }{
		{1, 1, 1, 0, 1, 1, 1, 0},
		{2, 8, 2, 4, 13, 6, 100, 0},
		{3, 6, 3, 2, 7, 7, 9, -3},
		{1, 4, 1, 4, 33, 5, 40, 20},
		{2, 3, 3, 1, 20, 64, 5, 2},
	} {
		for _, causal := range []bool{false, true} {
			name := fmt.Sprintf("B=%d/H=%d/G=%d/hb=%d/Tq=%d/qb=%d/Tk=%d/causal=%v", c.b, c.h, c.kvh, c.hb, c.tq, c.qb, c.tk, causal)
			t.Run(name, func(t *testing.T) {
				a := &Attention{Batch: c.b, Heads: c.h, KVHeads: c.kvh, HeadBlock: c.hb, Tq: c.tq, Tk: c.tk,
					DK: 40, DV: 72, QBlock: c.qb, KVBlock: 48, Causal: causal, CausalOffset: c.off}
				a.KeyLen = make([]int32, c.b)
				for i := range a.KeyLen {
					a.KeyLen[i] = int32(c.tk - 7*i)
				}
				seen := make([]int, c.b*c.h*c.tq)
				for ti := range a.Tasks() {
					k := a.task(ti)
					if k.nh < 1 || k.mq < 1 || k.h0/(c.h/c.kvh) != (k.h0+k.nh-1)/(c.h/c.kvh) {
						t.Fatalf("task %d = %+v: empty, or heads of two key/value heads", ti, k)
					}
					hi := min(c.tk, max(int(a.KeyLen[k.b]), 0))
					if causal {
						hi = min(hi, max(k.q0+k.mq+c.off, 0))
					}
					if k.lo != 0 || k.hi != hi {
						t.Fatalf("task %d = %+v: keys [%d, %d), want [0, %d)", ti, k, k.lo, k.hi, hi)
					}
					for h := k.h0; h < k.h0+k.nh; h++ {
						for i := k.q0; i < k.q0+k.mq; i++ {
							seen[(k.b*c.h+h)*c.tq+i]++
						}
					}
				}
				for i, n := range seen {
					if n != 1 {
						t.Fatalf("row %d of (batch, head, row) is in %d tasks", i, n)
					}
				}
				l := a.scratch()
				hq := c.qb * max(c.hb, 1)
				if l.scores != 0 || l.ldS < a.KVBlock || l.stats < hq*l.ldS || l.keys < l.stats+3*hq ||
					l.values < l.keys+a.DK*a.KVBlock || l.len < l.values+a.DV*l.ldV || l.ldV < a.KVBlock {
					t.Fatalf("scratch layout %+v overlaps", l)
				}
				for _, v := range []int{l.ldS, l.stats, l.keys, l.values, l.ldV, l.len} {
					if v%16 != 0 {
						t.Fatalf("scratch layout %+v: %d is not a multiple of 16", l, v)
					}
				}
			})
		}
	}
}
