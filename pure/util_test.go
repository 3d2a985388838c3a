package pure

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Guard bands, after gonum's internal/asm/f32/util_test.go: a matrix lives in
// a buffer that starts and ends with guardLen guard cells, and the gaps of its
// rows (columns n to ld−1) are guard cells too. A guard cell holds a NaN with
// a payload of its own, so it is told apart, bitwise, from any value a kernel
// writes.
const (
	guardLen  = 7
	guardBits = 0x7fc0dead
)

var guardVal = math.Float32frombits(guardBits)

// newGuarded returns a buffer for an m×n matrix with leading dimension ld,
// every cell a guard; the matrix is buf[guardLen:].
func newGuarded(m, ld int) []float32 {
	buf := make([]float32, m*ld+2*guardLen)
	for i := range buf {
		buf[i] = guardVal
	}
	return buf
}

// inMatrix reports whether cell i of a newGuarded buffer is inside the m×n
// matrix, not a guard.
func inMatrix(i, m, n, ld int) bool {
	i -= guardLen
	return i >= 0 && i < m*ld && i%ld < n
}

// checkGuards reports every guard cell of buf that a kernel wrote to.
func checkGuards(t *testing.T, name string, buf []float32, m, n, ld int) {
	t.Helper()
	bad := 0
	for i, v := range buf {
		if !inMatrix(i, m, n, ld) && math.Float32bits(v) != guardBits {
			bad++
			if bad <= 5 {
				t.Errorf("%s: guard cell %d (matrix offset %d) overwritten with %v", name, i, i-guardLen, v)
			}
		}
	}
}

// fillMatrix sets the m×n matrix of a newGuarded buffer to uniform values in
// [−scale, scale).
func fillMatrix(rng *rand.Rand, buf []float32, m, n, ld int, scale float32) {
	for i := range buf {
		if inMatrix(i, m, n, ld) {
			buf[i] = scale * (2*rng.Float32() - 1)
		}
	}
}

// sameBits reports whether a and b hold the same bit patterns.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
