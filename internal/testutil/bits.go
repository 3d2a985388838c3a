package testutil

import "math"

// BitDiff returns the first index at which a and b differ as float32 bits
// (a NaN equals only the same NaN; −0 differs from +0), or −1 if they are
// the same. Of two slices of different lengths that agree on the shorter,
// it returns the shorter's length.
func BitDiff(a, b []float32) int {
	n := min(len(a), len(b))
	for i := range n {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}

// SameBits reports whether a and b hold the same float32 bits.
func SameBits(a, b []float32) bool { return BitDiff(a, b) < 0 }
