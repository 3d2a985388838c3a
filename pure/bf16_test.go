package pure

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// roundBF16Ref rounds f to 8 significant bits, ties to even, with math/big
// (an implementation that shares nothing with BF16Bits), applying the
// conventions BF16Bits documents: subnormals to a signed zero, NaN quiet,
// ±Inf kept, overflow past the largest bf16 to ±Inf.
func roundBF16Ref(f float32) float32 {
	x := float64(f)
	switch {
	case math.IsNaN(x):
		return math.Float32frombits(math.Float32bits(f)&0xffff0000 | 0x00400000)
	case math.IsInf(x, 0):
		return f
	case math.Float32bits(f)&0x7f800000 == 0:
		return float32(math.Copysign(0, x))
	}
	r, _ := new(big.Float).SetMode(big.ToNearestEven).SetPrec(8).SetFloat64(x).Float64()
	if math.Abs(r) >= math.Ldexp(1, 128) {
		return float32(math.Inf(int(math.Copysign(1, x))))
	}
	return float32(r)
}

func TestBF16Bits(t *testing.T) {
	lows := []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xffff, 0x4000}
	bad := 0
	check := func(u uint32) {
		f := math.Float32frombits(u)
		got, want := RoundBF16(f), roundBF16Ref(f)
		if math.Float32bits(got) != math.Float32bits(want) {
			if bad++; bad <= 5 {
				t.Errorf("RoundBF16(%#08x) = %#08x, want %#08x", u, math.Float32bits(got), math.Float32bits(want))
			}
		}
		if BF16Float(BF16Bits(f)) != got && !math.IsNaN(float64(got)) {
			t.Fatalf("BF16Float(BF16Bits(%#08x)) != RoundBF16", u)
		}
	}
	for hi := uint32(0); hi < 1<<16; hi++ {
		for _, lo := range lows {
			check(hi<<16 | lo)
		}
	}
	if !testing.Short() {
		for u := uint32(0x3f800000); u < 0x3f800000+1<<20; u++ {
			check(u)
		}
	}
	if bad > 0 {
		t.Errorf("%d patterns wrong", bad)
	}
}

// TestPackBF16 checks every element of the layout documented on
// BF16Panel against the formula, padding included, for both input layouts.
func TestPackBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][2]int{{1, 1}, {31, 17}, {32, 16}, {33, 40}, {77, 5}} {
		k, n := sh[0], sh[1]
		ldw := n + 3
		w := make([]float32, k*ldw)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		wt := make([]float32, n*(k+2)) // the transpose, leading dimension k+2
		for r := range k {
			for j := range n {
				wt[j*(k+2)+r] = w[r*ldw+j]
			}
		}
		kp := (k + 31) / 32 * 32
		np := (n + 15) / 16 * 16
		if BF16PackedLen(k, n) != kp*np {
			t.Fatalf("BF16PackedLen(%d, %d) = %d, want %d", k, n, BF16PackedLen(k, n), kp*np)
		}
		for _, trans := range []bool{false, true} {
			dst := make([]uint16, kp*np)
			for i := range dst {
				dst[i] = 0xffff
			}
			if trans {
				PackBF16(dst, wt, k, n, k+2, true)
			} else {
				PackBF16(dst, w, k, n, ldw, false)
			}
			for r := range kp {
				for j := range np {
					var want uint16
					if r < k && j < n {
						want = BF16Bits(w[r*ldw+j])
					}
					if got := dst[(j/16)*kp*16+(r/2)*32+(j%16)*2+r%2]; got != want {
						t.Fatalf("k=%d n=%d trans=%v: element (%d, %d) = %#04x, want %#04x", k, n, trans, r, j, got, want)
					}
				}
			}
		}
	}
}

func TestGemmBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		m, n, k     int
		alpha, beta float32
		bias        bool
	}{
		{1, 1, 1, 1, 0, false}, {7, 33, 40, 1, 1, true}, {16, 16, 64, 0.5, 0, true},
		{31, 77, 31, -2, 0.25, false}, {5, 40, 0, 1, 1, true}, {3, 20, 300, 1, 0, true},
	} {
		lda, ldc := tc.k+1, tc.n+2
		a := make([]float32, tc.m*lda)
		w := make([]float32, tc.k*tc.n)
		c := make([]float32, tc.m*ldc)
		bias := make([]float32, tc.n)
		for _, s := range [][]float32{a, w, c, bias} {
			for i := range s {
				s[i] = float32(rng.NormFloat64())
			}
		}
		if !tc.bias {
			bias = nil
		}
		b := make([]uint16, BF16PackedLen(tc.k, tc.n))
		PackBF16(b, w, tc.k, tc.n, tc.n, false)
		// The reference: the float64 product of the operands rounded by math/big.
		want := make([]float64, tc.m*tc.n)
		mag := make([]float64, tc.m*tc.n)
		for i := range tc.m {
			for j := range tc.n {
				var s, abs float64
				for r := range tc.k {
					p := float64(roundBF16Ref(a[i*lda+r])) * float64(roundBF16Ref(w[r*tc.n+j]))
					s += p
					abs += math.Abs(p)
				}
				s, abs = s*float64(tc.alpha), abs*math.Abs(float64(tc.alpha))
				if tc.beta != 0 {
					s += float64(tc.beta) * float64(c[i*ldc+j])
					abs += math.Abs(float64(tc.beta) * float64(c[i*ldc+j]))
				}
				if bias != nil {
					s += float64(bias[j])
					abs += math.Abs(float64(bias[j]))
				}
				want[i*tc.n+j], mag[i*tc.n+j] = s, abs
			}
		}
		if tc.beta == 0 {
			for i := range c {
				c[i] = float32(math.NaN()) // not read
			}
		}
		GemmBF16(tc.m, tc.n, tc.k, tc.alpha, a, lda, b, tc.beta, c, ldc, bias)
		for i := range tc.m {
			for j := range tc.n {
				got := float64(c[i*ldc+j])
				if d := math.Abs(got - want[i*tc.n+j]); !(d <= float64(tc.k+4)*mag[i*tc.n+j]/(1<<23)+1e-30) {
					t.Fatalf("m=%d n=%d k=%d: C[%d,%d] = %g, want %g", tc.m, tc.n, tc.k, i, j, got, want[i*tc.n+j])
				}
			}
		}
	}
}
