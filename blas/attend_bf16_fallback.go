//go:build !cgo || purego

package blas

import "errors"

// BF16 is the BF16 attention core of the OpenBLAS backend; this build has
// none (CGO_ENABLED=0 or -tags purego), and [NewBF16] always fails.
type BF16 struct{}

// BF16KV holds keys and values packed for [BF16.Attend]; never made in this build.
type BF16KV struct{}

// NewBF16 fails: this build has no BF16 core.
func NewBF16(be Backend, kn BF16Kernel) (*BF16, error) {
	return nil, errors.New("blas: no BF16 core in this build (CGO_ENABLED=0 or -tags purego)")
}

// Kernel, Pack and Attend are never reached: NewBF16 returns no BF16.
func (*BF16) Kernel() BF16Kernel      { return BF16Kernel{} }
func (*BF16) Pack(*Attention) *BF16KV { panic("blas: no BF16 core in this build") }
func (*BF16) Attend(*Attention, *BF16KV, int, int, []float32) {
	panic("blas: no BF16 core in this build")
}

func (*BF16) packedLen(int, int, int, int) float64 { return 0 }
func (*BF16KV) bytes() int                         { return 0 }
func (*BF16KV) heads() int                         { return 1 }
func (*BF16) packKeys(*Attention) Packed           { panic("blas: no BF16 core in this build") }
func (*BF16) keyParts(*Attention) int              { return 0 }
func (*BF16) packKeysPart(*Attention, []float32, int) bool {
	panic("blas: no BF16 core in this build")
}
func (*BF16) packKeysSpan(*Attention, int, int, int, []float32) bool {
	panic("blas: no BF16 core in this build")
}
func (*BF16) packKeysIn(*Attention, []float32, bool) Packed {
	panic("blas: no BF16 core in this build")
}
func (*BF16) attendKT(*Attention, int, int, []float32) { panic("blas: no BF16 core in this build") }
