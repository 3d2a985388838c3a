// Package blas is the seam between package xattn and the kernels that do its
// arithmetic: strided batched SGEMM, the fused softmax row pass of online
// softmax, row rescaling, and the whole attention core of a task list.
//
// # Backends
//
// A [Backend] has two implementations, chosen per xattn.Layer (there is no
// global switch):
//
//   - "openblas": OpenBLAS through cgo. Single products go through
//     gonum.org/v1/netlib; batches, the row pass (AVX-512, AVX2+FMA or scalar
//     C, picked at run time from the CPU) and the attention core run in a small
//     C shim, one cgo crossing per batch or task list, never per row.
//   - "pure": package github.com/xattn/xattn/pure, portable Go on gonum.
//
// [Default] is OpenBLAS when it is compiled in, else pure; [All] lists what
// the binary has, and tests run every backend side by side.
//
// # Kernel variants
//
// The OpenBLAS backend runs one variant, a table of C kernels chosen once
// (shim.h, variants.c): a row pass (row pass, row scale, exponential, finite
// check) in AVX-512, AVX2+FMA or scalar C, and a GEMM kernel for the
// products against packed weights and the attention tiles, the own AVX-512
// kernel or OpenBLAS's. By default it is the widest the CPU runs, from
// cpuid. [OpenBLASVariant] builds a backend value with another, and the
// environment variable XATTN_KERNELS, read once when the backend is set up,
// lowers [Default]'s for the whole process, with the same names:
//
//	avx512         own AVX-512 row pass and GEMM kernel
//	openblas       the CPU's widest row pass, products on OpenBLAS
//	avx2           AVX2+FMA row pass, products on OpenBLAS (CPUs without AVX-512)
//	scalar         portable C row pass, products on OpenBLAS
//	rows=R,gemm=G  R in scalar, avx2, avx512; G in openblas, avx512
//
// [Variants] lists those the CPU runs, [Kernels] names a backend's, and
// [OpenBLASInfo] reports [Default]'s. A name that is unknown, or asks for
// more than the CPU has, is an error: [OpenBLASVariant] returns it, and for
// XATTN_KERNELS [CheckEnv] does (Default then runs the CPU's widest), which
// package xattn's New returns when it would use Default.
// scripts/test.sh runs the layer tests of package xattn once per variant.
//
// # Non-finite values
//
// Every backend and variant follows one rule (see [Attention]): the mask
// alone decides what a query sees, so a masked key changes nothing whatever
// its rows hold; a visible non-finite score makes its row NaN; a non-finite
// value reaches every row that sees it.
//
// # Build
//
// The OpenBLAS backend is compiled when cgo is enabled and the purego tag is
// not set. It needs the C library and its headers, found through pkg-config
// (Debian and Ubuntu: apt-get install libopenblas-dev pkg-config). The link
// flags live in link.go as "#cgo pkg-config: openblas"; PKG_CONFIG_PATH
// points pkg-config at another build, and CGO_CFLAGS / CGO_LDFLAGS add to or
// override the flags it gives. With CGO_ENABLED=0 or -tags purego only the
// pure backend exists and nothing is linked.
//
// # Threads
//
// Every method runs on the calling goroutine. The OpenBLAS backend sets
// OpenBLAS to one thread (openblas_set_num_threads, process-wide) when it is
// first used, so that parallelism has one level only: the caller's. It also
// caps how many goroutines are inside OpenBLAS at once, below the number of
// memory buffers OpenBLAS keeps for concurrent callers.
//
// # Errors
//
// Methods panic with a constant "blas: " message on malformed arguments, the
// same for both backends, before any arithmetic and before C is entered.
package blas
