package xattn

import (
	"cmp"
	"fmt"
	"runtime"

	"github.com/klauspost/cpuid/v2"
)

// Plan is how a Layer splits its work: how many goroutines run a forward
// pass, and the tile sizes of the attention core. New derives it from the CPU
// (see [WithThreads] and [WithTile] to override it); [Layer.Plan] reports it.
type Plan struct {
	// Threads is the number of goroutines, the caller's included, that run
	// one forward pass.
	Threads int
	// QBlock and KVBlock are the query rows and keys of one tile of the
	// attention core: each task holds a QBlock×KVBlock block of scores.
	// Both are clamped to the real sequence lengths of a call.
	QBlock, KVBlock int
	// SerialFLOPs is the work below which a forward pass runs entirely on
	// the calling goroutine, with no hand-off to workers.
	SerialFLOPs float64
	// Absorb lets a forward pass move the key and value projections to the
	// queries' side when that is less work (see [WithAbsorb]).
	Absorb bool
	// ISA names the widest vector instruction set the CPU offers to the
	// kernels: "avx512", "avx2" or "generic". It describes the CPU, whatever
	// the backend runs; Kernels names what does.
	ISA string
	// Kernels names the kernels of the Layer's backend, as [blas.Kernels]
	// reports them: "pure", or the OpenBLAS backend's variant, such as
	// "rows=avx512,gemm=avx512".
	Kernels string
	// FiniteCheck makes every call reject non-finite inputs with an error
	// wrapping ErrNonFinite (see [WithFiniteCheck]).
	FiniteCheck bool
	// Precision is the arithmetic of the products and the attention core
	// ([WithPrecision]); with BF16, Kernels ends in the BF16 kernel, as
	// ",bf16=amx".
	Precision Precision
}

// String formats p as "threads=2 tile=64x256 serial<2MFLOP isa=avx512
// kernels=rows=avx512,gemm=avx512", with " absorb=off" before isa when
// Absorb is false, " finite-check" when FiniteCheck is set, " precision=bf16"
// for BF16, and no kernels
// when Kernels is empty.
func (p Plan) String() string {
	absorb := ""
	if !p.Absorb {
		absorb = " absorb=off"
	}
	if p.FiniteCheck {
		absorb += " finite-check"
	}
	if p.Precision != FP32 {
		absorb += " precision=" + p.Precision.String()
	}
	kernels := ""
	if p.Kernels != "" {
		kernels = " kernels=" + p.Kernels
	}
	return fmt.Sprintf("threads=%d tile=%dx%d serial<%.3gMFLOP%s isa=%s%s",
		p.Threads, p.QBlock, p.KVBlock, p.SerialFLOPs/1e6, absorb, p.ISA, kernels)
}

// cpuInfo is what tune needs to know about the CPU. Any field may be unknown:
// cpuid reports unknown caches as −1 and an unknown core count as 0.
type cpuInfo struct {
	physical int // physical cores
	l1d, l2  int // data cache sizes per core, bytes
	isa      string
}

// detectCPU reads the CPU once through cpuid.
func detectCPU() cpuInfo {
	c := cpuInfo{
		physical: cpuid.CPU.PhysicalCores,
		l1d:      cpuid.CPU.Cache.L1D,
		l2:       cpuid.CPU.Cache.L2,
		isa:      "generic",
	}
	switch {
	case cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ):
		c.isa = "avx512"
	case cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3):
		c.isa = "avx2"
	}
	return c
}

// Tiling defaults, used when cpuid knows no better.
const (
	defaultL2     = 256 << 10
	defaultL1D    = 32 << 10
	minKVBlock    = 16
	maxKVBlock    = 1024
	minQBlock     = 8
	maxQBlock     = 256
	serialFLOPs   = 2e6 // about 10–20 µs of work: below it a hand-off costs more than it saves
	maxAutoThread = 256 // never start more workers than this by default
)

// tune derives a plan from the CPU, the GOMAXPROCS value procs and the head
// sizes. It trusts no field of c.
//
// Threads: the physical core count (SMT siblings share the FMA units a GEMM
// saturates), at most procs, else procs. Tiles: with M = L2/16 floats (a
// quarter of L2), the K and V rows of a key block take a quarter of M, so
// KVBlock ≈ M/(4·(dk+dv)) keys, and QBlock ≈ min(KVBlock, 2·(dk+dv)) rows;
// both are rounded to multiples of 16 and 8 and kept in sane bounds. A task
// reads all its keys once per query block, so taller query blocks cut the
// traffic of long key sequences (Perceiver's 16384 keys: 15% faster at
// 256 rows than at 128, measured with the AVX-512 kernel).
func tune(c cpuInfo, procs, dk, dv int) Plan {
	if procs < 1 {
		procs = 1
	}
	threads := c.physical
	if threads <= 0 || threads > procs {
		threads = procs
	}
	threads = min(threads, maxAutoThread)
	l2 := c.l2
	if l2 <= 0 {
		l2 = defaultL2
	}
	if c.l1d <= 0 {
		c.l1d = defaultL1D
	}
	d := max(dk+dv, 1)
	m := l2 / 16
	kv := m / (4 * d)
	kv = min(max(kv/16*16, minKVBlock), maxKVBlock)
	q := min(kv, 2*d)
	q = min(max(q/8*8, minQBlock), maxQBlock)
	isa := cmp.Or(c.isa, "generic") // cpuid named none
	return Plan{Threads: threads, QBlock: q, KVBlock: kv, SerialFLOPs: serialFLOPs, Absorb: true, ISA: isa}
}

// defaultPlan is tune on this machine.
func defaultPlan(dk, dv int) Plan {
	return tune(detectCPU(), runtime.GOMAXPROCS(0), dk, dv)
}
