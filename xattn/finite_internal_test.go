package xattn

import (
	"math"
	"testing"
)

// TestFirstNonFinite puts NaN, +Inf and −Inf at every index of slices of
// lengths around the scan's 16-value blocks: the first one is found, and
// the largest finite values are not taken for infinities.
func TestFirstNonFinite(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 100} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(i%7) - 3
			if i%5 == 0 {
				x[i] = math.MaxFloat32 * float32(1-2*(i%2))
			}
		}
		if got := firstNonFinite(x); got != -1 {
			t.Fatalf("n=%d finite: %d, want -1", n, got)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for i := range n {
				y := append([]float32(nil), x...)
				y[i] = bad
				if i+3 < n {
					y[i+3] = bad // a later one is not the first
				}
				if got := firstNonFinite(y); got != i {
					t.Fatalf("n=%d, %v at %d: got %d", n, bad, i, got)
				}
			}
		}
	}
}

// BenchmarkFirstNonFinite times the scan of WithFiniteCheck over a
// context-sized input (77×768, Stable Diffusion's text embedding).
func BenchmarkFirstNonFinite(b *testing.B) {
	x := make([]float32, 77*768)
	for i := range x {
		x[i] = float32(i%13) - 6
	}
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		if firstNonFinite(x) >= 0 {
			b.Fatal("found one")
		}
	}
	b.ReportMetric(float64(len(x))*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "elem/ns")
}
