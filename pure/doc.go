// Package pure implements the kernels of xattn in portable Go: a float32 GEMM
// on gonum's Go implementation, a polynomial float32 exponential, and the
// row passes of online softmax.
//
// The package has no cgo, no assembly of its own and no build tags, so it
// compiles everywhere. It is the fallback backend of package xattn when
// OpenBLAS is not compiled in, and the in-binary second opinion that tests
// compare the OpenBLAS backend against.
//
// All matrices are row-major: element (i, j) of an m×n matrix a with leading
// dimension lda is a[i*lda+j], lda ≥ n.
//
// Every function here runs on the calling goroutine only; none starts
// goroutines, so callers own the parallelism.
package pure
