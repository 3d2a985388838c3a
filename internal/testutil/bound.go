package testutil

// ProductBound is the error bound of a float32 sum of k products against
// its float64 value, for a magnitude mag = Σ|terms| (with alpha and beta·C
// folded in by the caller): the computed value is within k·2⁻²³·mag of the
// exact one; the bound allows 4 times that, for the different orders of
// summation of blocked kernels.
//
//	|got − want| ≤ 4·k·2⁻²³·mag
func ProductBound(k int, mag float64) float64 { return 4 * float64(k) * 0x1p-23 * mag }
