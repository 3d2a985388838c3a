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
#cgo nocallback xattn_exp
#cgo noescape xattn_gemm_packed
#cgo nocallback xattn_gemm_packed
#cgo noescape xattn_pack
#cgo nocallback xattn_pack
#cgo nocallback xattn_kernels_for
#cgo nocallback xattn_kernels_info
#cgo nocallback openblas_set_num_threads
#cgo nocallback openblas_get_num_threads
#cgo nocallback openblas_get_config
#cgo nocallback openblas_get_corename

#include <cblas.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
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

// cpuVariant returns the widest variant this CPU (and its operating
// system) runs, from cpuid: the only place the backend looks at the CPU.
// Off x86-64, and with the noasm tag, which turns cpuid's detection off, it
// is the scalar row pass on OpenBLAS's products.
func cpuVariant() choice {
	switch {
	case cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ, cpuid.AVX512BW, cpuid.AVX512VL, cpuid.AVX2, cpuid.FMA3):
		return choice{rows: int(C.XATTN_ROWS_AVX512), gemm: int(C.XATTN_GEMM_AVX512)}
	case cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3):
		return choice{rows: int(C.XATTN_ROWS_AVX2), gemm: int(C.XATTN_GEMM_OPENBLAS)}
	}
	return choice{rows: int(C.XATTN_ROWS_SCALAR), gemm: int(C.XATTN_GEMM_OPENBLAS)}
}

// tableRows and tableGEMMs are the numbers of row passes and GEMM kernels
// of the C tables, which rowNames and gemmNames name.
const (
	tableRows  = int(C.XATTN_ROWS_N)
	tableGEMMs = int(C.XATTN_GEMM_N)
)

// kernels is the C table of a variant, with what Go asks of it.
type kernels struct {
	c          *C.xattn_kernels
	v          choice
	rows, gemm string // the table's names for its row pass and products
	packs      bool   // Pack and PackKeys lay operands out for its products
	blas       bool   // Attend calls into OpenBLAS (takes a token of sem)
	// rowStep and colStep are Steps; colStep is the panel width of the
	// packed operands when packs.
	rowStep, colStep int
}

// newKernels returns the table of v, which the CPU must run.
func newKernels(v choice) *kernels {
	c := C.xattn_kernels_for(C.int(v.rows), C.int(v.gemm))
	var info C.xattn_kernel_info
	C.xattn_kernels_info(c, &info)
	return &kernels{c: c, v: v, rows: C.GoString(info.rows), gemm: C.GoString(info.gemm),
		packs: info.packs != 0, blas: info.blas != 0,
		rowStep: int(info.row_step), colStep: int(info.col_step)}
}

// envVariant returns the variant the environment variable XATTN_KERNELS
// names (see [OpenBLASVariant] for the names), read once at set-up, or the
// CPU's widest when it is unset; when it names no variant, or one the CPU
// lacks, the widest and the error, which [CheckEnv] reports. It exists so
// that tests of package xattn can run the AVX2 and scalar row passes and
// the OpenBLAS-GEMM attention core on an AVX-512 machine.
func envVariant(spec string) (choice, error) {
	best := cpuVariant()
	v, err := parseVariant(spec, best)
	if err != nil {
		return best, fmt.Errorf("XATTN_KERNELS=%q: %w", spec, err)
	}
	return v, nil
}

// CheckEnv returns the error of reading XATTN_KERNELS when the backend was
// set up, or nil: an error wrapping [ErrVariant] when it names no variant,
// [ErrUnsupported] when this CPU cannot run the one it names, the value
// quoted in either. [Default] then runs the CPU's widest variant instead;
// package xattn's New and NewFiLM fail with this error when they would use
// Default. It sets the backend up if it was not yet.
func CheckEnv() error {
	setupOnce.Do(setup)
	return envErr
}

// OpenBLASVariant returns the OpenBLAS backend with the kernels of the
// variant name, one of [Variants] or a "rows=R,gemm=G" pair:
//
//	avx512    the own AVX-512 row pass and GEMM kernel (products against
//	          packed weights and the attention tiles)
//	openblas  the CPU's widest row pass, the products on OpenBLAS
//	avx2      the AVX2+FMA row pass, the products on OpenBLAS
//	scalar    the portable C row pass, the products on OpenBLAS
//	rows=R,gemm=G  R one of scalar, avx2, avx512; G openblas or avx512;
//	          either left out means the CPU's widest
//
// An empty name or "best" is the CPU's widest variant, which [Default] uses
// unless XATTN_KERNELS names another (the same names, read once). It fails,
// naming the variant, on an unknown name or one the CPU cannot run. Without
// OpenBLAS in the build it always fails.
func OpenBLASVariant(name string) (Backend, error) {
	v, err := parseVariant(name, cpuVariant())
	if err != nil {
		return nil, err
	}
	setupOnce.Do(setup)
	return openBLAS{k: newKernels(v)}, nil
}

// Variants returns the names of the variants of the OpenBLAS backend this
// CPU runs, its widest first, for [OpenBLASVariant]; each names different
// kernels. Without OpenBLAS in the build it is empty.
func Variants() []string { return namedVariants(cpuVariant()) }

var (
	setupOnce sync.Once
	// defaultOpenBLAS is the backend [Default] returns, set by setup, and
	// envErr the error of XATTN_KERNELS (CheckEnv).
	defaultOpenBLAS Backend
	envErr          error
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
	v, err := envVariant(os.Getenv("XATTN_KERNELS"))
	defaultOpenBLAS, envErr = openBLAS{k: newKernels(v)}, err
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
// kernels of [Default]'s variant. It sets OpenBLAS up (one thread) if the
// backend was not used yet.
func OpenBLASInfo() Info {
	k := openBLASBackend().(openBLAS).k
	return Info{
		Linked:   true,
		Config:   strings.TrimSpace(C.GoString(C.openblas_get_config())),
		CoreName: C.GoString(C.openblas_get_corename()),
		Threads:  int(C.openblas_get_num_threads()),
		RowPass:  k.rows,
		Kernel:   k.gemm,
		Variant:  k.v.String(),
	}
}

// openBLAS is the OpenBLAS backend. Every method checks its arguments in Go
// with the checks pure uses, then crosses into C once: single products go
// through netlib's cblas_sgemm, batches and products with a bias through
// xattn_sgemm_batch, and the row passes and the attention core through the
// C files, with the kernels of the table k. Calls into OpenBLAS hold a
// token of sem.
//
// k must be a variant the CPU runs: newKernels's, never nil.
type openBLAS struct {
	k *kernels
}

// Name returns "openblas".
func (openBLAS) Name() string { return "openblas" }

func (o openBLAS) kernels() string { return o.k.v.String() }

// Pack packs w for the GEMM kernel of the variant when it reads packed
// weights (the AVX-512 kernel of kernel.c, in panels of its colStep
// columns), and returns the zero Packed otherwise, or when the padding of
// its panels would more than double w (n < colStep/2 rows: a 1×2²⁴ matrix
// would take 4 GB as one panel). Such a product reads w as it is.
func (o openBLAS) Pack(w []float32, n, k int) Packed {
	checkPack(w, n, k)
	if !o.k.packs || n == 0 || k == 0 || panelsLen(n, k, o.k.colStep) > 2*n*k {
		return Packed{}
	}
	p := newPanels(1, n, k, o.k.colStep)
	C.xattn_pack(o.k.c, C.int(n), C.int(k), fptr(w), C.int64_t(k), fptr(p.f32))
	return p
}

// Steps returns the variant's cut: its kernel's strip of rows and its
// panel of columns.
func (o openBLAS) Steps() (rows, cols int) { return o.k.rowStep, o.k.colStep }

// Sgemm computes the products of g: the same result as [Pure]'s Sgemm and
// sgemmRef64 to float32 rounding (OpenBLAS's kernels sum in another order).
// A product with Packed B runs on the variant's own kernel (kernel.c), which reads
// the packed weights in place where OpenBLAS would copy all of B on every
// call: the cost that dominates a product of a few rows.
func (o openBLAS) Sgemm(g *Batch) {
	if !checkBatch(g) {
		return
	}
	if pb := o.panels(g.Packed); pb != nil && g.K > 0 {
		C.xattn_gemm_packed(o.k.c, C.int(g.M), C.int(g.N), C.int(g.K), C.float(g.Alpha), fptr(g.A), C.int64_t(g.LDA),
			fptr(pb), C.float(g.Beta), fptr(g.C), C.int64_t(g.LDC), fptr(g.Bias))
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
	rm := C.xattn_rowmask{causal: cbool(r.Causal), lim0: C.int64_t(r.Lim0), window: C.int64_t(r.Window), slope: C.float(r.Slope)}
	C.xattn_softmax_rows(o.k.c, C.int(r.M), C.int(r.N), fptr(r.S), C.int(r.LDS),
		fptr(r.Bias), C.int(r.LDBias), bptr(r.Keep), C.int(r.LDKeep),
		&rm, fptr(r.Max), fptr(r.Sum), fptr(r.Corr))
}

// ScaleRows scales the rows of c in C: exactly
// [github.com/xattn/xattn/pure.ScaleRows]. It does not enter OpenBLAS and
// takes no token.
func (o openBLAS) ScaleRows(m, n int, c []float32, ldc int, f []float32) {
	if !checkScale(m, n, c, ldc, f) {
		return
	}
	C.xattn_scale_rows(o.k.c, C.int(m), C.int(n), fptr(c), C.int(ldc), fptr(f))
}

// Attend runs tasks [t0, t1) of a in C, up to attendTasks tasks per
// crossing: the steps of the pure backend's attendTask, with the products
// and row pass of the variant; the same result to float32 rounding. Go maps
// the tasks (Attention.task) and lays the scratch out (Attention.scratch);
// C reads both.
func (o openBLAS) Attend(a *Attention, t0, t1 int, scratch []float32) {
	if !checkAttention(a, t0, t1, scratch) {
		return
	}
	p, kt := o.cAttention(a)
	if o.k.blas {
		enter()
		defer leave()
	}
	var tasks [attendTasks]C.xattn_task // on the stack: xattn_attend does not keep it
	for t := t0; t < t1; {
		n := fillTasks(a, t, t1, &tasks)
		C.xattn_attend(o.k.c, &p, fptr(a.Q), fptr(a.K), fptr(a.V), fptr(a.O), bptr(a.Keep), fptr(a.Bias),
			fptr(a.ALiBi), fptr(kt), fptr(a.Stats), fptr(scratch), &tasks[0], C.int(n))
		t += n
	}
}

// cAttention is the plain-integer part of a for C and the packed keys the
// variant reads (nil: none), with their strides in it.
func (o openBLAS) cAttention(a *Attention) (C.xattn_attention, []float32) {
	p := cAttentionInts(a)
	kt := o.panels(a.KT)
	if kt != nil {
		p.kt_batch, p.kt_head = C.int64_t(a.KVHeads*a.KT.stride), C.int64_t(a.KT.stride)
	}
	return p, kt
}

// cAttentionInts is the plain-integer part of a for C, with a's scratch
// layout (Attention.scratch); the packed keys' strides are left zero.
func cAttentionInts(a *Attention) C.xattn_attention {
	lay := a.scratch()
	p := C.xattn_attention{
		batch: C.int(a.Batch), heads: C.int(a.Heads), kv_heads: C.int(a.KVHeads),
		tq: C.int(a.Tq), tk: C.int(a.Tk), dk: C.int(a.DK), dv: C.int(a.DV),
		scale: C.float(a.Scale),
		ldq:   C.int(a.LDQ), ldk: C.int(a.LDK), ldv: C.int(a.LDV), ldo: C.int(a.LDO),
		batch_q: C.int64_t(a.BatchQ), batch_k: C.int64_t(a.BatchK),
		batch_v: C.int64_t(a.BatchV), batch_o: C.int64_t(a.BatchO),
		causal: cbool(a.Causal), causal_offset: C.int64_t(a.CausalOffset), window: C.int64_t(a.Window),
		q_block: C.int(a.QBlock), kv_block: C.int(a.KVBlock), head_block: C.int(a.headBlock()),
		scratch_stats: C.int64_t(lay.stats), scratch_keys: C.int64_t(lay.keys),
		scratch_values: C.int64_t(lay.values), scratch_lds: C.int(lay.ldS), scratch_ldv: C.int(lay.ldV),
	}
	for i := range 3 {
		p.keep_stride[i] = C.int64_t(a.KeepStride[i])
		p.bias_stride[i] = C.int64_t(a.BiasStride[i])
	}
	return p
}

// fillTasks writes tasks t, t+1, … of a (Attention.task), up to t1 and at
// most len(tasks), to tasks for one crossing, and returns how many.
func fillTasks(a *Attention, t, t1 int, tasks *[attendTasks]C.xattn_task) int {
	n := min(t1-t, attendTasks)
	for i := range n {
		tasks[i] = cTask(a.task(t + i))
	}
	return n
}

// cTask is task k for C.
func cTask(k task) C.xattn_task {
	return C.xattn_task{b: C.int(k.b), h0: C.int(k.h0), nh: C.int(k.nh), q0: C.int(k.q0),
		mq: C.int(k.mq), lo: C.int(k.lo), hi: C.int(k.hi)}
}

// ScratchLen returns a.ScratchLen().
func (openBLAS) ScratchLen(a *Attention) int { return a.ScratchLen() }

// attendTasks is the most tasks one crossing of Attend carries: enough that
// a crossing's cost is lost among its tasks' work.
const attendTasks = 32

// PackKeys packs the keys of a for the variant's products when they read
// packed keys: each key/value head of each batch as the transposed panels
// of colStep keys that xattn_pack writes, which Attend then reads in place
// of packing every key block of every task. Other variants read K as it is.
func (o openBLAS) PackKeys(a *Attention) bool {
	if !o.k.packs || a.Batch <= 0 || a.KVHeads <= 0 || a.Tk <= 0 || a.DK <= 0 {
		return false
	}
	if a.Batch > maxC || a.KVHeads > maxC || a.Tk > maxC || a.DK > maxC || a.LDK > maxC ||
		a.LDK < a.KVHeads*a.DK || a.BatchK < 0 || need(a.Batch, a.BatchK, a.Tk, a.LDK, a.KVHeads*a.DK) > len(a.K) {
		panic(errShortK)
	}
	kt := newPanels(a.Batch*a.KVHeads, a.Tk, a.DK, o.k.colStep)
	for b := range a.Batch {
		for g := range a.KVHeads {
			C.xattn_pack(o.k.c, C.int(a.Tk), C.int(a.DK), fptr(a.K[b*a.BatchK+g*a.DK:]), C.int64_t(a.LDK),
				fptr(kt.f32[(b*a.KVHeads+g)*kt.stride:]))
		}
	}
	a.KT = kt
	return true
}

func (o openBLAS) packedKeysLen(items, tk, dk, dv int) float64 {
	if !o.k.packs {
		return 0
	}
	return float64(items) * float64(panelsLen(tk, dk, o.k.colStep))
}

// panels returns the values of p when the variant's products read its
// layout, else nil.
func (o openBLAS) panels(p Packed) []float32 {
	if !o.k.packs {
		return nil
	}
	return p.panels(o.k.colStep)
}

// exp sets dst[i] = e^src[i] for i < min(len(dst), len(src)) with the
// exponential of the variant's row pass, for tests to hold against pure.Exp.
func (o openBLAS) exp(dst, src []float32) {
	n := min(len(dst), len(src))
	if n == 0 {
		return
	}
	C.xattn_exp(o.k.c, C.int(n), fptr(src), fptr(dst))
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
