package testutil

import "math"

// Round16Ref64 rounds v to the nearest binary16 (bf false) or bfloat16 (bf true),
// ties to even, in float64: the reference for F16 and BF16 conversions.
// Overflow gives ±Inf.
func Round16Ref64(v float64, bf bool) float64 {
	mant, minExp, maxVal := 10, -14, 65504.0
	if bf {
		mant, minExp, maxVal = 7, -126, float64(math.Float32frombits(0x7f7f0000))
	}
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	_, e := math.Frexp(v) // |v| = f·2^e, f ∈ [0.5, 1)
	e = max(e-1, minExp)  // exponent of v, or of the subnormal range
	ulp := math.Ldexp(1, e-mant)
	r := math.RoundToEven(v/ulp) * ulp
	// Beyond max, the rounding goes to Inf once v reaches max + ulp/2.
	if math.Abs(r) > maxVal {
		return math.Copysign(math.Inf(1), v)
	}
	return r
}

// RoundBF16Flush is v rounded to bfloat16 as the BF16 products read their
// operands: subnormals flushed to zero (keeping no sign), then
// Round16Ref64's nearest even.
func RoundBF16Flush(v float32) float32 {
	if math.Abs(float64(v)) < 0x1p-126 {
		v = 0
	}
	return float32(Round16Ref64(float64(v), true))
}
