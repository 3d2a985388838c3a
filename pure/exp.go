package pure

import "math"

// Constants of the float32 exponential. The polynomial is the classic minimax
// fit of (e^r − 1 − r)/r² on |r| ≤ ln2/2 (Cephes expf); ln 2 is split in a
// high part exact in float32 and a low correction (Cody–Waite), so that
// r = x − n·ln2 is computed without cancellation error.
const (
	expHi   = 88.72283935546875   // smallest float32 x whose e^x rounds to +Inf in float32
	expLo   = -103.97208404541016 // largest float32 x whose e^x rounds to 0 in float32
	log2e   = 1.44269504088896341
	ln2Hi   = 0.693359375
	ln2Lo   = -2.12194440e-4
	expP0   = 1.9875691500e-4
	expP1   = 1.3981999507e-3
	expP2   = 8.3334519073e-3
	expP3   = 4.1665795894e-2
	expP4   = 1.6666665459e-1
	expP5   = 5.0000001201e-1
	expBias = 127
)

// Exp returns e^x in float32, within 2 ulp of the correctly rounded result for
// normal results and within 1 ulp of the smallest subnormal for subnormal ones.
// Exp(−Inf) = 0, Exp(+Inf) = +Inf, Exp(NaN) = NaN, and results below the
// smallest subnormal are 0.
//
// The method is range reduction x = n·ln2 + r, |r| ≤ ln2/2, a degree-7
// polynomial for e^r, and an exact scaling by 2^n built from the exponent bits
// (in two steps where 2^n alone is not a normal float32).
func Exp(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > expHi:
		return float32(math.Inf(1))
	case x < expLo:
		return 0
	}
	return expReduced(x)
}

// ProbLo is the least argument of [ExpProb] whose result is not 0.
const ProbLo = -87

// ExpProb is the exponential of the row pass ([SoftmaxRows]): [Exp](x), but
// 0 for x < ProbLo, so that no probability or correction is subnormal. e^−87
// ≈ 1.6e-38 lies above the smallest normal float32 (2^−126 ≈ 1.2e-38); a
// probability that small is below float32's resolution of any row sum that
// holds its row's largest term, e^0 = 1, so the rows' sums, and outputs but
// for values of v beyond 1e30, are what the subnormals would give, while a
// subnormal operand costs a microcode assist in every product it enters
// (ALiBi's standard slopes put most of a long row's scores in e^−104 … e^−87).
func ExpProb(x float32) float32 {
	if x < ProbLo {
		return 0
	}
	return Exp(x)
}

// expReduced is Exp for x in [expLo, expHi], no special cases.
func expReduced(x float32) float32 {
	t := x * log2e
	var n int32
	if t >= 0 {
		n = int32(t + 0.5)
	} else {
		n = int32(t - 0.5)
	}
	fn := float32(n)
	r := x - fn*ln2Hi
	r -= fn * ln2Lo
	p := float32(expP0)
	p = p*r + expP1
	p = p*r + expP2
	p = p*r + expP3
	p = p*r + expP4
	p = p*r + expP5
	y := p*(r*r) + r + 1
	return scale2(y, n)
}

// scale2 returns y·2^n for y in [0.5, 2] and n in [−151, 128] exactly, up to the
// one rounding of a subnormal result.
func scale2(y float32, n int32) float32 {
	switch {
	case n > 127:
		return y * pow2(n-1) * 2
	case n < -126:
		return y * pow2(n+64) * pow2(-64)
	}
	return y * pow2(n)
}

// pow2 returns 2^n for n in [−126, 127].
func pow2(n int32) float32 {
	return math.Float32frombits(uint32(n+expBias) << 23)
}
