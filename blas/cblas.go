//go:build cgo && !purego

package blas

/*
#cgo noescape xattn_sgemm_batch
#cgo nocallback xattn_sgemm_batch
#cgo noescape xattn_softmax_rows
#cgo nocallback xattn_softmax_rows
#cgo noescape xattn_scale_rows
#cgo nocallback xattn_scale_rows
#cgo noescape xattn_attend
#cgo nocallback xattn_attend
#cgo noescape xattn_exp
#cgo noescape xattn_gemm_avx512
#cgo noescape xattn_pack_kt
#cgo nocallback xattn_pack_kt
#cgo nocallback xattn_gemm_avx512
#cgo nocallback xattn_exp
#cgo nocallback openblas_set_num_threads
#cgo nocallback openblas_get_num_threads
#cgo nocallback openblas_get_config
#cgo nocallback openblas_get_corename

#include <cblas.h>
#include "shim.h"
*/
import "C"

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/netlib/blas/netlib"
)

// haveOpenBLAS reports whether the OpenBLAS backend is compiled in: it is
// with cgo and without the purego tag.
const haveOpenBLAS = true

// Variants of the C row pass (softmax rows, row scaling and the exponential),
// the values of openBLAS.isa. They match the XATTN_ISA_* constants of shim.h.
const (
	isaScalar = int(C.XATTN_ISA_SCALAR) // portable C, any CPU
	isaAVX2   = int(C.XATTN_ISA_AVX2)   // AVX2 and FMA
	isaAVX512 = int(C.XATTN_ISA_AVX512) // AVX-512 F, DQ, BW and VL
)

// isaNames are the names of the variants, as reported by [Info.RowPass].
var isaNames = [...]string{isaScalar: "scalar", isaAVX2: "avx2", isaAVX512: "avx512"}

// detectISA returns the widest variant of the row pass this CPU (and its
// operating system) supports, from cpuid; scalar off x86-64 and with the
// noasm tag, which turns cpuid's detection off.
func detectISA() int {
	switch {
	case cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ, cpuid.AVX512BW, cpuid.AVX512VL):
		return isaAVX512
	case cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3):
		return isaAVX2
	}
	return isaScalar
}

// chooseISA returns the variant the backend runs: detectISA's, or a lower
// one named by the environment variable XATTN_KERNELS ("avx2" or "scalar";
// "avx512" or an empty value keep the detected one), read once at set-up. It
// exists so that tests of package xattn can run the AVX2 and scalar row
// passes and the OpenBLAS-GEMM attention core on an AVX-512 machine (the
// layer test TestNonFiniteKernels re-runs itself under it). A name that is
// unknown, or asks for more than the CPU has, is ignored.
func chooseISA() int {
	isa := detectISA()
	for i, name := range isaNames {
		if name == os.Getenv("XATTN_KERNELS") && i < isa {
			return i
		}
	}
	return isa
}

var (
	setupOnce sync.Once
	// defaultOpenBLAS is the backend [Default] returns, set by setup.
	defaultOpenBLAS Backend
	// sem holds one token per goroutine inside OpenBLAS, set by setup; see
	// concurrencyCap.
	sem chan struct{}
)

// setup runs once per process, when the OpenBLAS backend is first created
// or used. It is the one place that sets OpenBLAS's thread count: to 1,
// process-wide (openblas_set_num_threads affects every user of the library in
// the process), so that every product runs on the goroutine that asked for it
// and package xattn's workers are the only level of parallelism.
func setup() {
	C.openblas_set_num_threads(1)
	sem = make(chan struct{}, concurrencyCap(C.GoString(C.openblas_get_config())))
	defaultOpenBLAS = openBLAS{isa: chooseISA()}
}

// concurrencyCap returns how many goroutines may be inside OpenBLAS at once,
// given its openblas_get_config() string.
//
// Each level-3 call that is not served by OpenBLAS's small-matrix kernels
// takes one buffer from a fixed pool for as long as it runs, and OpenBLAS
// aborts the process ("too many memory regions") when the pool runs dry. The
// pool has NUM_BUFFERS = max(50, 2·MAX_CPU_NUMBER) entries (driver/others/
// memory.c and common.h, 0.3.21), MAX_CPU_NUMBER being the build's
// NUM_THREADS, which the config string reports as MAX_THREADS=n; up to n−1
// of OpenBLAS's own pool threads may hold one each. Half of what remains is
// ours, leaving the other half to any other user of OpenBLAS in the process,
// and no more than 32, well past the cores a single call keeps busy. For
// Debian's 0.3.21 (MAX_THREADS=64: 128 buffers, 63 pool threads) this is 32.
// Without MAX_THREADS in the string the cap is 13, safe for every n: the
// free buffers max(50, 2n)−(n−1) are never fewer than 26.
func concurrencyCap(config string) int {
	const most, unknown = 32, 13
	n := 0
	for _, f := range strings.Fields(config) {
		if v, ok := strings.CutPrefix(f, "MAX_THREADS="); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	if n <= 0 {
		return unknown
	}
	free := max(50, 2*n) - (n - 1)
	return min(most, max(1, free/2))
}

// enter waits for a token of sem before a crossing into OpenBLAS; leave
// hands it back. Neither allocates.
func enter() {
	setupOnce.Do(setup)
	sem <- struct{}{}
}

func leave() { <-sem }

// openBLASBackend returns the OpenBLAS backend with the row pass variant
// chosen for this CPU, setting OpenBLAS up on first use.
func openBLASBackend() Backend {
	setupOnce.Do(setup)
	return defaultOpenBLAS
}

// OpenBLASInfo describes the OpenBLAS library linked into the binary and the
// row pass variant the backend uses on this CPU. It sets OpenBLAS up (one
// thread) if the backend was not used yet.
func OpenBLASInfo() Info {
	be := openBLASBackend().(openBLAS)
	info := Info{
		Linked:   true,
		Config:   strings.TrimSpace(C.GoString(C.openblas_get_config())),
		CoreName: C.GoString(C.openblas_get_corename()),
		Threads:  int(C.openblas_get_num_threads()),
		RowPass:  isaNames[be.isa],
		Kernel:   "openblas",
	}
	if be.isa == isaAVX512 {
		info.Kernel = "xattn-avx512"
	}
	return info
}

// openBLAS is the OpenBLAS backend. Every method checks its arguments in Go
// with the checks pure uses, then crosses into C once: single products go
// through netlib's cblas_sgemm, batches and products with a bias through
// xattn_sgemm_batch, and the row passes and the attention core through the
// C shim (shim.c), whose loops run the variant isa of the row pass. Calls
// into OpenBLAS hold a token of sem.
//
// isa must name a variant the CPU supports; the zero value is the portable
// scalar C. Tests build each variant directly.
type openBLAS struct {
	isa int
}

// Name returns "openblas".
func (openBLAS) Name() string { return "openblas" }

// Pack packs w for the AVX-512 kernel of kernel.c when that is the variant
// in use, and returns nil otherwise, or when the padding of its panels of 64
// rows would more than double w (n < 32 rows: a 1×2²⁴ matrix would take 4 GB
// as one panel). Such a product reads w as it is.
func (o openBLAS) Pack(w []float32, n, k int) []float32 {
	checkPack(w, n, k)
	if o.isa != isaAVX512 || n == 0 || k == 0 || packedLen(n, k) > 2*n*k {
		return nil
	}
	return packPanels(w, n, k)
}

// Sgemm computes the products of g: the same result as [Pure]'s Sgemm and
// sgemmRef64 to float32 rounding (OpenBLAS's kernels sum in another order).
// A product with Packed B runs on the AVX-512 kernel of kernel.c, which reads
// the packed weights in place where OpenBLAS would copy all of B on every
// call: the cost that dominates a product of a few rows.
func (o openBLAS) Sgemm(g *Batch) {
	if !checkBatch(g) {
		return
	}
	if g.Packed != nil && o.isa == isaAVX512 && g.K > 0 {
		C.xattn_gemm_avx512(C.int(g.M), C.int(g.N), C.int(g.K), C.float(g.Alpha), fptr(g.A), C.int64_t(g.LDA),
			fptr(g.Packed), 64, C.int64_t(64*g.K), C.float(g.Beta), fptr(g.C), C.int64_t(g.LDC), fptr(g.Bias))
		return
	}
	enter()
	defer leave()
	if g.Count == 1 && g.Bias == nil && g.K > 0 {
		tB := blas.NoTrans
		if g.TransB {
			tB = blas.Trans
		}
		netlib.Implementation{}.Sgemm(blas.NoTrans, tB, g.M, g.N, g.K, g.Alpha, g.A, g.LDA, g.B, g.LDB, g.Beta, g.C, g.LDC)
		return
	}
	C.xattn_sgemm_batch(C.int(g.Count), cbool(g.TransB), C.int(g.M), C.int(g.N), C.int(g.K), C.float(g.Alpha),
		fptr(g.A), C.int(g.LDA), C.int64_t(g.StrideA), fptr(g.B), C.int(g.LDB), C.int64_t(g.StrideB),
		C.float(g.Beta), fptr(g.C), C.int(g.LDC), C.int64_t(g.StrideC), fptr(g.Bias))
}

// SoftmaxRows runs the row pass of r in C: the same result as
// [github.com/xattn/xattn/pure.SoftmaxRows] to float32 rounding (the vector
// variants sum in another order and use fused multiply-adds in the
// exponential). It does not enter OpenBLAS and takes no token.
func (o openBLAS) SoftmaxRows(r *Rows) {
	if !checkRows(r) {
		return
	}
	C.xattn_softmax_rows(C.int(o.isa), C.int(r.M), C.int(r.N), fptr(r.S), C.int(r.LDS),
		fptr(r.Bias), C.int(r.LDBias), bptr(r.Keep), C.int(r.LDKeep),
		cbool(r.Causal), C.int64_t(r.Lim0), fptr(r.Max), fptr(r.Sum), fptr(r.Corr))
}

// ScaleRows scales the rows of c in C: exactly
// [github.com/xattn/xattn/pure.ScaleRows]. It does not enter OpenBLAS and
// takes no token.
func (o openBLAS) ScaleRows(m, n int, c []float32, ldc int, f []float32) {
	if !checkScale(m, n, c, ldc, f) {
		return
	}
	C.xattn_scale_rows(C.int(o.isa), C.int(m), C.int(n), fptr(c), C.int(ldc), fptr(f))
}

// Attend runs tasks [t0, t1) of a in one crossing: the steps of the pure
// backend's attendTask, with cblas_sgemm for both products and the variant
// o.isa of the row pass; the same result to float32 rounding.
func (o openBLAS) Attend(a *Attention, t0, t1 int, scratch []float32) {
	if !checkAttention(a, t0, t1, scratch) {
		return
	}
	p := C.xattn_attention{
		batch: C.int(a.Batch), heads: C.int(a.Heads), kv_heads: C.int(a.KVHeads),
		tq: C.int(a.Tq), tk: C.int(a.Tk), dk: C.int(a.DK), dv: C.int(a.DV),
		scale: C.float(a.Scale),
		ldq:   C.int(a.LDQ), ldk: C.int(a.LDK), ldv: C.int(a.LDV), ldo: C.int(a.LDO),
		batch_q: C.int64_t(a.BatchQ), batch_k: C.int64_t(a.BatchK),
		batch_v: C.int64_t(a.BatchV), batch_o: C.int64_t(a.BatchO),
		causal: cbool(a.Causal), causal_offset: C.int64_t(a.CausalOffset),
		q_block: C.int(a.QBlock), kv_block: C.int(a.KVBlock), head_block: C.int(a.headBlock()),
		kt_batch: C.int64_t(a.KTBatch), kt_head: C.int64_t(a.KTHead),
	}
	for i := range 3 {
		p.keep_stride[i] = C.int64_t(a.KeepStride[i])
		p.bias_stride[i] = C.int64_t(a.BiasStride[i])
	}
	var keyLen *C.int32_t
	if len(a.KeyLen) > 0 {
		keyLen = (*C.int32_t)(unsafe.Pointer(&a.KeyLen[0]))
	}
	if o.isa != isaAVX512 { // the AVX-512 variant never calls into OpenBLAS
		enter()
		defer leave()
	}
	C.xattn_attend(C.int(o.isa), &p, fptr(a.Q), fptr(a.K), fptr(a.V), fptr(a.O), keyLen,
		bptr(a.Keep), fptr(a.Bias), fptr(a.KT), fptr(a.Stats), fptr(scratch), C.int64_t(t0), C.int64_t(t1))
}

// PackKeys packs the keys of a for the AVX-512 kernel when that is the
// variant in use: each key/value head of each batch as the transposed, 64-key
// panels xattn_pack_kt writes, which Attend then reads in place of packing
// every key block of every task. Other variants read K as it is.
func (o openBLAS) PackKeys(a *Attention) bool {
	if o.isa != isaAVX512 || a.Batch <= 0 || a.KVHeads <= 0 || a.Tk <= 0 || a.DK <= 0 {
		return false
	}
	if a.Batch > maxC || a.KVHeads > maxC || a.Tk > maxC || a.DK > maxC || a.LDK > maxC ||
		a.LDK < a.KVHeads*a.DK || a.BatchK < 0 || need(a.Batch, a.BatchK, a.Tk, a.LDK, a.KVHeads*a.DK) > len(a.K) {
		panic(errShortK)
	}
	head := a.DK * ceilDiv(a.Tk, 64) * 64
	kt := make([]float32, a.Batch*a.KVHeads*head)
	for b := range a.Batch {
		for g := range a.KVHeads {
			C.xattn_pack_kt(C.int(a.Tk), C.int(a.DK), fptr(a.K[b*a.BatchK+g*a.DK:]), C.int64_t(a.LDK),
				fptr(kt[(b*a.KVHeads+g)*head:]))
		}
	}
	a.KT, a.KTBatch, a.KTHead = kt, a.KVHeads*head, head
	return true
}

// exp sets dst[i] = e^src[i] for i < min(len(dst), len(src)) with the
// exponential of the variant o.isa, for tests to hold against pure.Exp.
func (o openBLAS) exp(dst, src []float32) {
	n := min(len(dst), len(src))
	if n == 0 {
		return
	}
	C.xattn_exp(C.int(o.isa), C.int(n), fptr(src), fptr(dst))
}

// fptr returns the address of s[0], or nil for an empty s (C gets NULL and
// never reads it: the checks ensure an empty slice is never needed).
func fptr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

// bptr is fptr for a Go bool slice, whose elements are the bytes 0 and 1.
func bptr(s []bool) *C.uchar {
	if len(s) == 0 {
		return nil
	}
	return (*C.uchar)(unsafe.Pointer(&s[0]))
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
