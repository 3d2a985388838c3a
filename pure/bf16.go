package pure

import "math"

// BF16 (bfloat16) is the upper half of a float32: sign, 8 exponent bits and 7
// fraction bits. The rounding here is the one the x86 BF16 instructions
// (VCVTNE2PS2BF16, and the operands of VDPBF16PS and TDPBF16PS) apply, so that
// every BF16 kernel computes the same function:
//
//   - a finite normal value rounds to nearest, ties to even, and may round up
//     to ±Inf;
//   - a subnormal value, or zero, becomes a zero of its sign;
//   - ±Inf stays ±Inf;
//   - a NaN stays a NaN: its upper half with the quiet bit set.

// BF16Bits returns f rounded to bf16 (see above), as its 16 bits.
func BF16Bits(f float32) uint16 {
	u := math.Float32bits(f)
	switch e := u & 0x7f800000; {
	case e == 0: // zero or subnormal
		return uint16(u>>16) & 0x8000
	case e == 0x7f800000: // Inf or NaN
		if u&0x007fffff != 0 {
			return uint16(u>>16) | 0x0040
		}
		return uint16(u >> 16)
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// BF16Float returns the float32 value of the bf16 bits h (exact).
func BF16Float(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// RoundBF16 returns f rounded to bf16 (see [BF16Bits]) as a float32.
func RoundBF16(f float32) float32 { return BF16Float(BF16Bits(f)) }

// The packed BF16 layout of a k×n matrix B, which AMX's TDPBF16PS reads as B
// tiles and VDPBF16PS as vectors: B is cut into panels of BF16Panel columns
// (n padded with zero columns to a whole panel) and k is padded with zero
// rows to Kp = ⌈k/BF16KStep⌉·BF16KStep. Panel q holds columns 16q … 16q+15
// in Kp·16 consecutive values; in it, rows 2p and 2p+1 are interleaved, so
// that element (r, j) of B is
//
//	b[q·Kp·16 + (r/2)·32 + (j%16)·2 + r%2],   q = j/16
//
// (one 64-byte line per pair of rows: the 32-bit word of column j holds row
// 2p in its low and row 2p+1 in its high half). The columns j0 … j0+w−1 of a
// packed matrix with j0 a multiple of BF16Panel are the contiguous
// sub-slice b[j0·Kp : ⌈(j0+w)/16⌉·16·Kp], itself a packed matrix with the
// same Kp.
const (
	BF16Panel = 16
	BF16KStep = 32
)

// BF16PaddedK returns Kp, the padded depth of a packed k×n matrix.
func BF16PaddedK(k int) int { return (k + BF16KStep - 1) / BF16KStep * BF16KStep }

// BF16PackedLen returns the number of bf16 values of a packed k×n matrix.
func BF16PackedLen(k, n int) int {
	return BF16PaddedK(k) * ((n + BF16Panel - 1) / BF16Panel * BF16Panel)
}

// PackBF16 writes the k×n matrix B, rounded to bf16, to dst in the packed
// layout above. B is row-major with leading dimension ldw (element (r, j) at
// w[r·ldw+j]), or, when trans, given as its n×k transpose (element (r, j) at
// w[j·ldw+r], the [out, in] layout of a linear layer's weights). dst has
// BF16PackedLen(k, n) values; the padding is set to zero. PackBF16 trusts its
// arguments.
func PackBF16(dst []uint16, w []float32, k, n, ldw int, trans bool) {
	kp := BF16PaddedK(k)
	np := (n + BF16Panel - 1) / BF16Panel
	dst = dst[:kp*np*BF16Panel]
	clear(dst)
	for j := range n {
		panel := dst[j/BF16Panel*kp*BF16Panel:]
		col := (j % BF16Panel) * 2
		for r := range k {
			var v float32
			if trans {
				v = w[j*ldw+r]
			} else {
				v = w[r*ldw+j]
			}
			panel[r/2*2*BF16Panel+col+r%2] = BF16Bits(v)
		}
	}
}

// GemmBF16 computes
//
//	C = alpha·bf16(A)·B + beta·C (+ 1·biasᵀ when bias != nil)
//
// for row-major A (m×k, leading dimension lda) whose elements are rounded to
// bf16 (see [BF16Bits]) on the way in, B (k×n) packed by [PackBF16] (b holds
// at least BF16PackedLen(k, n) values) and C (m×n, leading dimension ldc).
// The bf16 products are exact in float32; they are summed in float32 in
// order of the row index of B, then scaled. With beta = 0, C is not read.
// Same result as the float64 product of the rounded operands, to float32
// accumulation. GemmBF16 trusts its arguments and allocates nothing.
func GemmBF16(m, n, k int, alpha float32, a []float32, lda int, b []uint16, beta float32, c []float32, ldc int, bias []float32) {
	kp := BF16PaddedK(k)
	for i := range m {
		ai := a[i*lda : i*lda+k]
		ci := c[i*ldc : i*ldc+n]
		for j0 := 0; j0 < n; j0 += BF16Panel {
			panel := b[j0*kp : j0*kp+kp*BF16Panel]
			var acc [BF16Panel]float32
			for r, x := range ai {
				av := RoundBF16(x)
				row := panel[r/2*2*BF16Panel+r%2:]
				for j := range acc {
					acc[j] += av * BF16Float(row[2*j])
				}
			}
			for j := range min(BF16Panel, n-j0) {
				v := alpha * acc[j]
				if beta != 0 {
					v += beta * ci[j0+j]
				}
				if bias != nil {
					v += bias[j0+j]
				}
				ci[j0+j] = v
			}
		}
	}
}
