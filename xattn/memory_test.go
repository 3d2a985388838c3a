package xattn

import (
	"math/rand/v2"
	"testing"
)

// workingSet returns the bytes a workspace holds beyond the projections Q,
// K|V and the attention output O: the per-worker tiles, the split-key parts
// and the descriptors' arrays.
func (ws *workspace) workingSet() int {
	const f = 4 // bytes of a float32 or int32
	return f*(cap(ws.scratch)+cap(ws.partO)+cap(ws.partStats)+cap(ws.partLen)+cap(ws.keyLen)) +
		cap(ws.gemms)*64 + cap(ws.chunks)*40 + cap(ws.batches)*300 + cap(ws.parts)*400
}

// TestWorkingSetIndependentOfTk runs a Perceiver-like layer (a few latent
// queries, one or two heads, so that the keys are split over the workers too)
// at growing key counts and holds the working set beyond Q, K|V and O to the
// same size: nothing in a forward pass grows with Tk but the projections of
// the keys and values themselves.
func TestWorkingSetIndependentOfTk(t *testing.T) {
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
			if err := l.ForwardInto(y, x, ctx, s, &Mask{KeyLen: []int{tk - 3}}); err != nil {
				t.Fatal(err)
			}
			if len(l.free.items) != 1 {
				t.Fatalf("%d workspaces pooled, want 1", len(l.free.items))
			}
			ws := &l.free.items[0].x.ws
			sizes = append(sizes, ws.workingSet())
			t.Logf("heads=%d Tk=%d: working set %d bytes; K|V %d bytes", heads, tk, ws.workingSet(), 4*cap(ws.kv))
		}
		for _, n := range sizes[1:] {
			if n != sizes[0] {
				t.Fatalf("heads=%d: working set %v bytes over Tk = 1e3, 1e4, 1e5: it grows with Tk", heads, sizes)
			}
		}
	}
}
