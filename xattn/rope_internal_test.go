package xattn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// checkCosSin checks entries [p0, p1) of table t (first position tp)
// against math.Sincos.
func checkCosSin(t *testing.T, rp *rope, tab []float32, tp, p0, p1 int) {
	t.Helper()
	for p := p0; p < p1; p++ {
		for k, f := range rp.freq {
			s, c := math.Sincos(float64(p) * f)
			i := (p-tp)*rp.dims + 2*k
			if tab[i] != float32(c) || tab[i+1] != float32(s) {
				t.Fatalf("position %d pair %d: cos, sin = %v, %v, want %v, %v", p, k, tab[i], tab[i+1], float32(c), float32(s))
			}
		}
	}
}

// TestRoPETable checks the layer's shared table of angles: it doubles from
// 64 positions as calls need more, keeps every entry right, is not
// replaced while it serves, stops at maxPos and leaves positions outside
// [0, maxPos) to the call's own table.
func TestRoPETable(t *testing.T) {
	rp, err := newRoPE(&RoPE{Base: 10000, Dims: 6}, 8)
	if err != nil {
		t.Fatal(err)
	}
	if rp.maxPos != ropeTablePositions {
		t.Fatalf("maxPos = %d, want %d", rp.maxPos, ropeTablePositions)
	}
	var scratch []float32
	for _, c := range []struct{ p0, p1, n int }{{0, 1, 64}, {3, 64, 64}, {60, 65, 128}, {0, 129, 256}, {900, 1000, 1024}, {0, 10, 1024}} {
		tab, tp := rp.cosSin(&scratch, c.p0, c.p1)
		if tp != 0 || rp.tab.Load().n != c.n || len(tab) != c.n*rp.dims {
			t.Fatalf("positions [%d, %d): table of %d positions from %d (len %d), want %d from 0", c.p0, c.p1, rp.tab.Load().n, tp, len(tab), c.n)
		}
		checkCosSin(t, rp, tab, 0, 0, c.n)
	}
	if scratch != nil {
		t.Fatal("a call within the shared table filled its own")
	}
	shared := rp.tab.Load()
	rp.maxPos = 1500
	for _, c := range []struct{ p0, p1 int }{{1400, 1600}, {-3, 5}, {-7, -2}} {
		tab, tp := rp.cosSin(&scratch, c.p0, c.p1)
		if tp != c.p0 || rp.tab.Load() != shared {
			t.Fatalf("positions [%d, %d): table from %d, shared table replaced: %v", c.p0, c.p1, tp, rp.tab.Load() != shared)
		}
		checkCosSin(t, rp, tab, tp, c.p0, c.p1)
	}
	tab, _ := rp.cosSin(&scratch, 0, 1100)
	if n := rp.tab.Load().n; n != 1500 {
		t.Fatalf("grown past 1024 under maxPos 1500: %d positions, want 1500", n)
	}
	checkCosSin(t, rp, tab, 0, 0, 1500)
	// The byte budget caps wide heads.
	if wide, _ := newRoPE(&RoPE{Base: 10000}, 256); wide.maxPos != ropeTableBytes/(4*256) {
		t.Fatalf("maxPos of 256 rotated values = %d, want %d", wide.maxPos, ropeTableBytes/(4*256))
	}
}

// TestRoPETableFallback checks that a layer whose calls overrun the shared
// table (maxPos made small) computes the bits of one that does not.
func TestRoPETableFallback(t *testing.T) {
	cfg := Config{QueryDim: 12, Heads: 3, HeadDim: 4}
	w, _ := NewWeights(cfg, 3)
	r := RoPE{Interleaved: true}
	a, err := New(cfg, w, WithRoPE(r), WithThreads(2), WithSerialFLOPs(0))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, w, WithRoPE(r), WithThreads(2), WithSerialFLOPs(0))
	if err != nil {
		t.Fatal(err)
	}
	b.rope.maxPos = 16
	rng := rand.New(rand.NewPCG(1, 2))
	s := Shape{Batch: 2, Tq: 5, Tk: 40}
	x := make([]float32, s.Batch*s.Tq*12)
	ctx := make([]float32, s.Batch*s.Tk*12)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range ctx {
		ctx[i] = float32(rng.NormFloat64())
	}
	m := &Mask{CausalLowerRight: true}
	ya, yb := make([]float32, len(x)), make([]float32, len(x))
	if err := a.ForwardInto(ya, x, ctx, s, m); err != nil {
		t.Fatal(err)
	}
	if err := b.ForwardInto(yb, x, ctx, s, m); err != nil {
		t.Fatal(err)
	}
	for i := range ya {
		if math.Float32bits(ya[i]) != math.Float32bits(yb[i]) {
			t.Fatalf("y[%d] = %v past the shared table, %v within it", i, yb[i], ya[i])
		}
	}
	if b.rope.tab.Load() != nil {
		t.Fatal("a call past maxPos grew the shared table")
	}
}
