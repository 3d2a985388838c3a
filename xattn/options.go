package xattn

import (
	"fmt"
	"runtime"

	"github.com/xattn/xattn/blas"
)

// Option adjusts how New builds a Layer. Options validate their arguments:
// New returns an error wrapping ErrConfig for a bad value, never ignores it.
type Option func(*settings) error

type settings struct {
	backend    blas.Backend
	backendSet bool // by WithBackend: else Default's, and XATTN_KERNELS is checked
	plan       Plan
	rope       *RoPE // WithRoPE
	// precision is WithPrecision's (precisionSet), or BF16 for a backend
	// of blas.WithBF16 (resolvePrecision).
	precision    Precision
	precisionSet bool
}

// apply applies opts to s in order, and then returns an error wrapping
// ErrConfig when s uses [blas.Default] and the XATTN_KERNELS that chose its
// kernels names no variant, or one this CPU cannot run (blas.CheckEnv).
func (s *settings) apply(opts []Option) error {
	for _, o := range opts {
		if o == nil {
			return fmt.Errorf("%w: nil Option", ErrConfig)
		}
		if err := o(s); err != nil {
			return err
		}
	}
	if s.backendSet {
		return nil
	}
	if err := blas.CheckEnv(); err != nil {
		return fmt.Errorf("%w: the default backend: %w", ErrConfig, err)
	}
	return nil
}

// WithBackend makes the layer compute with b instead of [blas.Default], for
// instance [blas.Pure] to use the portable Go kernels in a binary that also
// has OpenBLAS. Without it, New and NewFiLM fail with an error wrapping
// ErrConfig when the environment variable XATTN_KERNELS, which chooses
// Default's kernels, names no variant or one this CPU lacks
// ([blas.CheckEnv]).
func WithBackend(b blas.Backend) Option {
	return func(s *settings) error {
		if b == nil {
			return fmt.Errorf("%w: WithBackend(nil)", ErrConfig)
		}
		s.backend, s.backendSet = b, true
		return nil
	}
}

// WithThreads sets how many goroutines, the caller's included, share one
// forward pass. The default is the number of physical cores, at most
// GOMAXPROCS. n must be in [1, [MaxThreads]()], or New returns an error
// wrapping ErrConfig: each thread has its own tiles of scratch, and threads
// beyond what the CPUs can run only add scratch and hand-offs.
//
// With the OpenBLAS backend each goroutine spends its time in cgo calls.
// When GOMAXPROCS equals the thread count (a machine without SMT, where
// GOMAXPROCS defaults to the core count), the runtime hands the P of such a
// call to another OS thread, and the goroutine pays a thread switch to get
// one back: run with GOMAXPROCS at least one above the threads (measured
// 8–12% faster on 2 cores with 2 threads).
func WithThreads(n int) Option {
	return func(s *settings) error {
		if n < 1 || n > MaxThreads() {
			return fmt.Errorf("%w: WithThreads(%d) outside [1, %d] (MaxThreads: 4 per CPU, at least 64)",
				ErrConfig, n, MaxThreads())
		}
		s.plan.Threads = n
		return nil
	}
}

// WithTile sets the tile of the attention core: qBlock query rows against
// kvBlock keys at a time. The default comes from the CPU's cache sizes.
func WithTile(qBlock, kvBlock int) Option {
	return func(s *settings) error {
		if qBlock < 1 || kvBlock < 1 || qBlock > 1<<14 || kvBlock > 1<<16 {
			return fmt.Errorf("%w: WithTile(%d, %d)", ErrConfig, qBlock, kvBlock)
		}
		s.plan.QBlock, s.plan.KVBlock = qBlock, kvBlock
		return nil
	}
}

// WithSerialFLOPs sets the work, in floating-point operations, below which a
// forward pass runs on the calling goroutine alone. 0 hands every call to the
// workers; the default is about 2 MFLOP.
func WithSerialFLOPs(flops float64) Option {
	return func(s *settings) error {
		if !(flops >= 0) || flops > 1e300 {
			return fmt.Errorf("%w: WithSerialFLOPs(%v)", ErrConfig, flops)
		}
		s.plan.SerialFLOPs = flops
		return nil
	}
}

// WithAbsorb allows (the default) or forbids the absorbed form of a forward
// pass: when many context rows meet few query rows, the layer may multiply
// the queries by the key weights and the attention outputs by the value
// weights instead of projecting every context row (Q_h·(C·Wk_gᵀ)ᵀ computed
// as (Q_h·Wk_g)·Cᵀ), which is less work by the ratio of H·Tq to the
// key/value width. It is the same function to float32 rounding, not bit for
// bit: forbid it where [Layer.ForwardInto] must equal [Layer.ForwardContext]
// bit for bit on every shape.
func WithAbsorb(on bool) Option {
	return func(s *settings) error {
		s.plan.Absorb = on
		return nil
	}
}

// MaxThreads returns the largest thread count [WithThreads] accepts: 4 per
// CPU of the machine (runtime.NumCPU), and at least 64.
func MaxThreads() int { return max(64, 4*runtime.NumCPU()) }
