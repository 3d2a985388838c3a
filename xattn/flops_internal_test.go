package xattn

import "testing"

// TestWork pins work, the threads' budget of the cache and batch calls, to
// the formula it had when it was written out on its own.
func TestWork(t *testing.T) {
	for _, c := range []Config{
		{QueryDim: 320, ContextDim: 768, ValueDim: 768, Heads: 8, KVHeads: 8, HeadDim: 40, ValueHeadDim: 40, OutDim: 320},
		{QueryDim: 96, ContextDim: 64, ValueDim: 48, Heads: 6, KVHeads: 2, HeadDim: 16, ValueHeadDim: 8, OutDim: 7},
	} {
		for _, r := range [][3]float64{{0, 0, 0}, {1, 1, 1}, {0, 154, 0}, {8, 0, 8 * 1500}, {4096, 77, 4096 * 77}, {3, 5, 11}} {
			rq, rkv, pairs := r[0], r[1], r[2]
			h, g, dk, dv := float64(c.Heads), float64(c.KVHeads), float64(c.HeadDim), float64(c.ValueHeadDim)
			proj := rq*float64(c.QueryDim)*h*dk + rkv*(float64(c.ContextDim)*g*dk+float64(c.ValueDim)*g*dv) +
				rq*h*dv*float64(c.OutDim)
			if got, want := work(&c, rq, rkv, pairs), 2*proj+2*h*pairs*(dk+dv); got != want {
				t.Errorf("work(%v, %v, %v, %v) = %v, want %v", c, rq, rkv, pairs, got, want)
			}
		}
	}
}
