//go:build !cgo || purego

package blas

import (
	"errors"

	"github.com/xattn/xattn/pure"
)

var errBF16NoC = errors.New("built without cgo (or with purego): only the pure kernel")

// bf16Avail: without cgo only the pure kernel exists.
func bf16Avail(id int) error {
	if id == bf16Pure {
		return nil
	}
	return errBF16NoC
}

// bf16Gemm is never reached without cgo (bf16Avail admits only pure).
func bf16Gemm(id, m, n, k int, alpha float32, a []float32, lda int, b []uint16, beta float32, c []float32, ldc int, bias []float32) {
	pure.GemmBF16(m, n, k, alpha, a, lda, b, beta, c, ldc, bias)
}

func bf16Round(id int, dst []uint16, src []float32) {
	for i := range min(len(dst), len(src)) {
		dst[i] = pure.BF16Bits(src[i])
	}
}
