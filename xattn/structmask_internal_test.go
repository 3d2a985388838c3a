package xattn

import (
	"math/rand/v2"
	"testing"
)

// TestWorkingSetStructMasks is TestWorkingSetIndependentOfTk for the
// structural masks: a window (bottom-right, so that the queries sit at the
// end of the keys) and ALiBi hold the working set beyond Q, K|V and O to the
// same size at every key count, and the standard slopes take Heads values.
func TestWorkingSetStructMasks(t *testing.T) {
	for _, m := range []Mask{
		{Window: 64, CausalLowerRight: true},
		{ALiBi: &ALiBi{}},
		{Window: 100, CausalLowerRight: true, ALiBi: &ALiBi{}, KeyLen: []int{0}},
	} {
		for _, heads := range []int{1, 8} {
			cfg := Config{QueryDim: 32, ContextDim: 16, Heads: heads, HeadDim: 8}
			w, err := NewWeights(cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			l, err := New(cfg, w, WithThreads(4), WithTile(8, 64), WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			var sizes []int
			for _, tk := range []int{1000, 10000, 100000} {
				s := Shape{Batch: 1, Tq: 16, Tk: tk}
				x := make([]float32, s.Tq*cfg.QueryDim)
				ctx := make([]float32, tk*cfg.ContextDim)
				for i := range ctx {
					ctx[i] = float32(rng.NormFloat64())
				}
				y := make([]float32, s.Tq*cfg.QueryDim)
				mm := m
				if mm.KeyLen != nil {
					mm.KeyLen = []int{tk - 3}
				}
				if err := l.ForwardInto(y, x, ctx, s, &mm); err != nil {
					t.Fatal(err)
				}
				if len(l.free.items) != 1 {
					t.Fatalf("%d workspaces pooled, want 1", len(l.free.items))
				}
				ws := &l.free.items[0].x.ws
				n := ws.workingSet() + 4*cap(ws.slopes)
				sizes = append(sizes, n)
				if m.ALiBi != nil && cap(ws.slopes) != heads {
					t.Errorf("standard slopes hold %d values, want Heads=%d", cap(ws.slopes), heads)
				}
				t.Logf("mask=%+v heads=%d Tk=%d: working set %d bytes; K|V %d bytes", m, heads, tk, n, 4*cap(ws.kv))
			}
			for _, n := range sizes[1:] {
				if n != sizes[0] {
					t.Fatalf("mask=%+v heads=%d: working set %v bytes over Tk = 1e3, 1e4, 1e5: it grows with Tk", m, heads, sizes)
				}
			}
		}
	}
}
