package testutil

import "math"

// ProductBound is the error bound of a float32 sum of k products against
// its float64 value, for a magnitude mag = Σ|terms| (with alpha and beta·C
// folded in by the caller): the computed value is within k·2⁻²³·mag of the
// exact one; the bound allows 4 times that, for the different orders of
// summation of blocked kernels.
//
//	|got − want| ≤ 4·k·2⁻²³·mag
func ProductBound(k int, mag float64) float64 { return 4 * float64(k) * 0x1p-23 * mag }

// ProbLo is pure.ProbLo: the row pass's exponentials (probabilities and
// corrections) are 0 for arguments below it, so that none is subnormal.
const ProbLo = -87.0

// ProbFloor is e^ProbLo, the least nonzero probability of the row pass: the
// absolute slack of a reference's probabilities near the cut.
var ProbFloor = math.Exp(ProbLo)

// ExpProb64 is the float64 reference of pure.ExpProb: e^x, but 0 where x
// lies below ProbLo by more than 1e-3 (far more than the rounding of a
// float32 argument), where the row pass must give exactly 0. Within that
// margin of the cut the row pass may give 0 or e^x, both within ProbFloor of
// the reference.
func ExpProb64(x float64) float64 {
	if x < ProbLo-1e-3 {
		return 0
	}
	return math.Exp(x)
}
