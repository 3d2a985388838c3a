//go:build !cgo || purego

package blas

import "fmt"

// haveOpenBLAS reports whether the OpenBLAS backend is compiled in: not with
// CGO_ENABLED=0 or the purego tag.
const haveOpenBLAS = false

// openBLASBackend is never called in this build.
func openBLASBackend() Backend { return Pure() }

// OpenBLASInfo describes the OpenBLAS library linked into the binary; in this
// build there is none and every field is zero.
func OpenBLASInfo() Info { return Info{} }

// OpenBLASVariant fails: this build has no OpenBLAS backend.
func OpenBLASVariant(name string) (Backend, error) {
	return nil, fmt.Errorf("%w: %q: this build has no OpenBLAS backend (CGO_ENABLED=0 or -tags purego)", ErrUnsupported, name)
}

// CheckEnv returns nil: without OpenBLAS in the build, XATTN_KERNELS, which
// names variants of the OpenBLAS backend, has no meaning and is not read.
func CheckEnv() error { return nil }

// Variants returns nil: this build has no OpenBLAS backend.
func Variants() []string { return nil }

// CrewThreads returns 0: this build has no crew.
func CrewThreads() int { return 0 }
