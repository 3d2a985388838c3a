package xattn

import (
	"fmt"

	"github.com/xattn/xattn/blas"
)

// Precision is the arithmetic of a Layer's products and attention core.
type Precision int

const (
	// FP32, the default: float32 operands and accumulation throughout.
	FP32 Precision = iota
	// BF16: the weights held as bf16 only, packed once at New in the
	// layout of the BF16 kernels (half the memory of FP32); activations
	// rounded to bf16 on their way into each product (nearest even,
	// subnormals to zero); FP32 accumulation; FP32 softmax statistics and
	// exponentials; the probabilities rounded to bf16 for P·V; FP32
	// outputs. Inputs and outputs stay []float32. The kernel is
	// [blas.BF16Default]'s (AMX, AVX512-BF16, or rounded operands with
	// FP32 arithmetic; the environment variable XATTN_BF16 forces one),
	// or that of a backend made by [blas.WithBF16] and given to
	// [WithBackend]; every kernel, and the pure backend, computes the same
	// function class. Against the FP32 layer's float64 reference a BF16
	// layer stays within about 2e-2·max(1, ‖ref‖∞).
	//
	// The absorbed form ([WithAbsorb]) runs in BF16 too: its weights (Wk
	// per head transposed, Wv per head) are packed in bf16 at New, from
	// the FP32 weights before they go, up to half again the bf16 weights'
	// memory; WithAbsorb(false) saves it. A BF16 [FiLM] holds [Wγ; Wβ]
	// in bf16 only and rounds the conditioning on its way into the
	// product; its sums and the modulation are FP32.
	BF16
)

// String returns "fp32" or "bf16".
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("Precision(%d)", int(p))
}

// WithPrecision sets the layer's precision: [FP32] (the default) or [BF16].
func WithPrecision(p Precision) Option {
	return func(s *settings) error {
		if p != FP32 && p != BF16 {
			return fmt.Errorf("%w: WithPrecision(%v): want FP32 or BF16", ErrConfig, p)
		}
		s.precision, s.precisionSet = p, true
		return nil
	}
}

// resolvePrecision makes s.backend a BF16 one for WithPrecision(BF16), and
// sets s.precision to BF16 for a backend of blas.WithBF16. It fails on
// WithPrecision(FP32) with such a backend, and on an XATTN_BF16 that names
// no kernel this CPU runs.
func (s *settings) resolvePrecision() error {
	_, bf := blas.BF16KernelOf(s.backend)
	switch {
	case bf && s.precisionSet && s.precision != BF16:
		return fmt.Errorf("%w: WithPrecision(%v) with the BF16 backend %s", ErrConfig, s.precision, blas.Kernels(s.backend))
	case bf:
		s.precision = BF16
	case s.precision == BF16:
		if note := blas.BF16DefaultNote(); note != "" {
			return fmt.Errorf("%w: %s", ErrConfig, note)
		}
		be, err := blas.WithBF16(s.backend, blas.BF16Default())
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		s.backend = be
	}
	return nil
}

// bf16Packed returns p for a BF16 layer, whose products read only their
// packed weights, and the zero Packed for an FP32 one (whose products that
// pass none read the weights as they are).
func (l *Layer) bf16Packed(p blas.Packed) blas.Packed {
	if l.plan.Precision == BF16 {
		return p
	}
	return blas.Packed{}
}
