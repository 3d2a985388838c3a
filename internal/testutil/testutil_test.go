package testutil

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestMatrix(t *testing.T) {
	g := NewMatrix(3, 2, 4, 5)
	if len(g.Buf) != 3*4+10 || len(g.Data()) != 12 || cap(g.Data()) != 12 {
		t.Fatalf("buffer %d, data %d (cap %d)", len(g.Buf), len(g.Data()), cap(g.Data()))
	}
	in := 0
	for i := range g.Buf {
		if g.In(i) {
			in++
		}
	}
	if in != 6 || !g.In(5) || !g.In(6) || g.In(7) || g.In(4) || !g.In(5+2*4+1) || g.In(5+12) {
		t.Fatalf("In: %d cells in the matrix", in)
	}
	g.Fill(rand.New(rand.NewPCG(1, 2)), -1, 1)
	if !g.Intact() {
		t.Fatal("Fill wrote a guard cell")
	}
	for i, v := range g.Buf {
		if g.In(i) == IsGuard(v) {
			t.Fatalf("cell %d = %v after Fill", i, v)
		}
	}
	for _, i := range []int{0, 5 + 2, 5 + 12} { // leading band, row gap, trailing band
		h := NewMatrix(3, 2, 4, 5)
		h.Buf[i] = 0
		if h.Intact() {
			t.Errorf("cell %d overwritten, Intact says not", i)
		}
	}
	s, check := Guarded(3, 2)
	s[0], s[2] = 1, 2
	if !check() || len(s) != 3 || cap(s) != 3 {
		t.Fatal("Guarded")
	}
	s = s[:cap(s)]
	if s = append(s, 0); !check() {
		t.Fatal("append to a full Guarded slice wrote a band")
	}
}

func TestBitDiff(t *testing.T) {
	nan := float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	for _, c := range []struct {
		a, b []float32
		want int
	}{
		{nil, nil, -1},
		{[]float32{1, nan}, []float32{1, nan}, -1},
		{[]float32{1, 0}, []float32{1, negZero}, 1},
		{[]float32{1, 2}, []float32{1, 2, 3}, 2},
		{[]float32{1, 2, 3}, []float32{1}, 1},
		{[]float32{Guard}, []float32{nan}, 0},
	} {
		if got := BitDiff(c.a, c.b); got != c.want || SameBits(c.a, c.b) != (c.want < 0) {
			t.Errorf("BitDiff(%v, %v) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestRound16Ref64(t *testing.T) {
	for _, c := range []struct {
		v    float64
		bf   bool
		want float64
	}{
		{1, false, 1},
		{1 + 0x1p-11, false, 1},            // a tie: to even
		{1 + 3*0x1p-11, false, 1 + 0x1p-9}, // a tie: to even, up
		{65520, false, math.Inf(1)},        // max + ulp/2
		{65519, false, 65504},
		{0x1p-25, false, 0},   // half the smallest subnormal: to even, 0
		{1 + 0x1p-8, true, 1}, // bfloat16 tie
		{-3, true, -3},
	} {
		if got := Round16Ref64(c.v, c.bf); got != c.want {
			t.Errorf("Round16Ref64(%v, %v) = %v, want %v", c.v, c.bf, got, c.want)
		}
	}
}

func TestParallel(t *testing.T) {
	var got [5]int
	Parallel(t, 5, func(g int) func() error {
		return func() error { got[g] = g + 1; return nil }
	})
	for g, v := range got {
		if v != g+1 {
			t.Fatalf("goroutine %d did not run", g)
		}
	}
}
