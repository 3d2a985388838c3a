package safetensors

import (
	"encoding/binary"
	"math"
	"slices"
)

// dtypeSize gives the size in bytes of one element of every dtype the format
// defines with a whole number of bytes. Others (the sub-byte F4 and F6
// formats, and anything unknown) make a file malformed for this reader.
var dtypeSize = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// dtypes lists the keys of dtypeSize, so that a header entry holds its
// dtype as an index.
var dtypes = func() []string {
	d := make([]string, 0, len(dtypeSize))
	for k := range dtypeSize {
		d = append(d, k)
	}
	slices.Sort(d)
	return d
}()

// decodeFloats converts the little-endian values b of the given dtype to dst.
func decodeFloats(dst []float32, b []byte, dtype string) {
	for i := range dst {
		dst[i] = decodeFloat(b, dtype, i)
	}
}

// decodeFloat returns element i of the little-endian values b of dtype F32,
// F16, BF16 or F64 as float32: exactly, or rounded to nearest from F64.
func decodeFloat(b []byte, dtype string, i int) float32 {
	le := binary.LittleEndian
	switch dtype {
	case "F32":
		return math.Float32frombits(le.Uint32(b[4*i:][:4]))
	case "F16":
		return f16to32(le.Uint16(b[2*i:][:2]))
	case "BF16":
		return math.Float32frombits(uint32(le.Uint16(b[2*i:][:2])) << 16)
	}
	return float32(math.Float64frombits(le.Uint64(b[8*i:][:8])))
}

// f16to32 converts an IEEE 754 binary16 value to float32, exactly.
func f16to32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // ±Inf, NaN (payload kept)
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal: rebias the exponent from 15 to 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	default: // ±0 and subnormals: man·2⁻²⁴, exact in float32
		return math.Float32frombits(sign | math.Float32bits(float32(man)*(1.0/(1<<24))))
	}
}

// f32to16 rounds a float32 to the nearest binary16, ties to even. Values
// beyond the binary16 range become ±Inf; NaN stays NaN (quiet).
func f32to16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e <= 0: // a binary16 subnormal, or zero
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		return sign | uint16(roundShift(man|0x800000, uint(14-e)))
	}
	// A carry out of the mantissa moves to the exponent, and past the
	// largest exponent to Inf, which is the correct rounding.
	return sign | uint16(uint32(e)<<10+roundShift(man, 13))
}

// roundShift returns m >> shift rounded to nearest, ties to even; 1 ≤ shift ≤ 31.
func roundShift(m uint32, shift uint) uint32 {
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return q
}

// f32toBF16 rounds a float32 to the nearest bfloat16, ties to even; NaN
// stays NaN (quiet).
func f32toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
