package testutil

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// Guard bands, after gonum's internal/asm/f32/util_test.go: an output lives
// in a buffer that starts and ends with guard cells, and the gaps of its
// rows (columns n to ld−1) are guard cells too. A guard cell holds Guard, a
// NaN with a payload no arithmetic makes, so it is told apart, bitwise, from
// any value a kernel writes.
const GuardBits = 0x7fc0beef

// Guard is the value of a guard cell: math.Float32frombits(GuardBits).
var Guard = math.Float32frombits(GuardBits)

// IsGuard reports whether v is still Guard, bit for bit.
func IsGuard(v float32) bool { return math.Float32bits(v) == GuardBits }

// Matrix is an M×N row-major matrix with leading dimension LD in the middle
// of a buffer of guard cells: Pad of them before it and after it, and the
// gaps of its rows.
type Matrix struct {
	Buf           []float32 // the whole buffer, guard cells and matrix
	M, N, LD, Pad int
}

// NewMatrix returns an m×n matrix with leading dimension ld (≥ n) between
// guard bands of pad cells, every cell of it Guard.
func NewMatrix(m, n, ld, pad int) *Matrix {
	buf := make([]float32, m*ld+2*pad)
	for i := range buf {
		buf[i] = Guard
	}
	return &Matrix{Buf: buf, M: m, N: n, LD: ld, Pad: pad}
}

// Data returns the matrix: the M·LD cells after the leading band, gaps
// included, with no capacity beyond them.
func (g *Matrix) Data() []float32 {
	end := g.Pad + g.M*g.LD
	return g.Buf[g.Pad:end:end]
}

// In reports whether cell i of Buf is in the matrix, not a guard.
func (g *Matrix) In(i int) bool {
	i -= g.Pad
	return i >= 0 && i < g.M*g.LD && i%g.LD < g.N
}

// Fill sets the matrix's cells, in order, to uniform values in [lo, hi).
func (g *Matrix) Fill(rng *rand.Rand, lo, hi float32) {
	for i := range g.Buf {
		if g.In(i) {
			g.Buf[i] = lo + (hi-lo)*rng.Float32()
		}
	}
}

// Intact reports whether every guard cell still holds Guard.
func (g *Matrix) Intact() bool {
	for i, v := range g.Buf {
		if !g.In(i) && !IsGuard(v) {
			return false
		}
	}
	return true
}

// Check fails t for every guard cell that no longer holds Guard, naming the
// first five.
func (g *Matrix) Check(t testing.TB, name string) {
	t.Helper()
	bad := 0
	for i, v := range g.Buf {
		if !g.In(i) && !IsGuard(v) {
			bad++
			if bad <= 5 {
				t.Errorf("%s: guard cell %d (matrix offset %d) overwritten with %v", name, i, i-g.Pad, v)
			}
		}
	}
}

// Guarded returns a slice of n cells, every one Guard, between guard bands
// of pad cells; check reports whether the bands are intact.
func Guarded(n, pad int) (s []float32, check func() bool) {
	g := NewMatrix(1, n, n, pad)
	return g.Data(), g.Intact
}

// Fill sets s to uniform values in [lo, hi).
func Fill(rng *rand.Rand, s []float32, lo, hi float32) {
	for i := range s {
		s[i] = lo + (hi-lo)*rng.Float32()
	}
}

// GuardLen is the length of a guard band where a test has no reason to
// choose another: odd, so that it misaligns what follows it.
const GuardLen = 7

// CheckWritten fails t unless a call wrote every cell of s, a slice of
// [Guarded] whose check is intact, with a number (NaN is not one), and
// nothing around it.
func CheckWritten(t testing.TB, name string, s []float32, intact func() bool) {
	t.Helper()
	if !intact() {
		t.Fatalf("%s: a guard band overwritten", name)
	}
	for i, v := range s {
		if math.IsNaN(float64(v)) {
			t.Fatalf("%s[%d] = %v", name, i, v)
		}
	}
}

// RawSafetensors returns a safetensors file with the given header text and
// byte buffer, unchecked: the tests of the format and of its loaders build
// malformed files with it.
func RawSafetensors(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}
