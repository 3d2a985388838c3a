//go:build cgo && !purego

package blas

/*
#cgo noescape xattn_gemm_bf16
#cgo nocallback xattn_gemm_bf16
#cgo noescape xattn_bf16_round
#cgo nocallback xattn_bf16_round
#include "bf16.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
	"github.com/xattn/xattn/pure"
)

// bf16C maps the Go ids of the BF16 kernels to the C ones of bf16.h.
var bf16C = [...]C.int{
	bf16RoundedScalar: C.XATTN_BF16_ROUNDED_SCALAR,
	bf16Rounded:       C.XATTN_BF16_ROUNDED_AVX512,
	bf16AVX512BF16:    C.XATTN_BF16_AVX512BF16,
	bf16AMX:           C.XATTN_BF16_AMX,
}

// bf16Avail says why the CPU cannot run BF16 kernel id, or nil: the only
// place the BF16 kernels look at the CPU (and, for AMX, ask Linux).
func bf16Avail(id int) error {
	avx512 := cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ, cpuid.AVX512BW, cpuid.AVX512VL, cpuid.AVX2, cpuid.FMA3)
	switch id {
	case bf16AMX:
		if !avx512 || !cpuid.CPU.Supports(cpuid.AVX512BF16, cpuid.AMXTILE, cpuid.AMXBF16) {
			return errors.New("the CPU lacks AMX-TILE, AMX-BF16 or AVX512-BF16")
		}
		return RequestAMX()
	case bf16AVX512BF16:
		if !avx512 || !cpuid.CPU.Supports(cpuid.AVX512BF16) {
			return errors.New("the CPU lacks AVX512-BF16")
		}
	case bf16Rounded:
		if !avx512 {
			return errors.New("the CPU lacks AVX-512 F, DQ, BW or VL")
		}
	}
	return nil
}

// bf16Gemm runs C kernel id on arguments GemmBF16 checked (k, m, n > 0).
func bf16Gemm(id, m, n, k int, alpha float32, a []float32, lda int, b []uint16, beta float32, c []float32, ldc int, bias []float32) {
	C.xattn_gemm_bf16(bf16C[id], C.int(m), C.int(n), C.int(k), C.float(alpha), fptr(a), C.int64_t(lda),
		(*C.uint16_t)(unsafe.Pointer(&b[0])), C.float(beta), fptr(c), C.int64_t(ldc), fptr(bias))
}

// bf16Round sets dst[i] to the bf16 bits of src[i] with the conversion of
// kernel id, for tests; pure's for the pure kernel.
func bf16Round(id int, dst []uint16, src []float32) {
	n := min(len(dst), len(src))
	if id == bf16Pure {
		for i := range n {
			dst[i] = pure.BF16Bits(src[i])
		}
		return
	}
	if n > 0 {
		C.xattn_bf16_round(bf16C[id], C.int64_t(n), fptr(src), (*C.uint16_t)(unsafe.Pointer(&dst[0])))
	}
}
