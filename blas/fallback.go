//go:build !cgo || purego

package blas

// haveOpenBLAS reports whether the OpenBLAS backend is compiled in: not with
// CGO_ENABLED=0 or the purego tag.
const haveOpenBLAS = false

// openBLASBackend is never called in this build.
func openBLASBackend() Backend { return Pure() }

// OpenBLASInfo describes the OpenBLAS library linked into the binary; in this
// build there is none and every field is zero.
func OpenBLASInfo() Info { return Info{} }
