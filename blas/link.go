//go:build cgo && !purego

package blas

// This file holds the only link flags of the module. The OpenBLAS backend
// needs OpenBLAS's C library and headers, found through pkg-config:
//
//	apt-get install libopenblas-dev pkg-config     (Debian, Ubuntu)
//
// gonum.org/v1/netlib has no link flags of its own, so this directive is also
// what links it. To use another OpenBLAS, point PKG_CONFIG_PATH at the
// directory holding its openblas.pc, or add to the flags pkg-config gives with
// CGO_CFLAGS and CGO_LDFLAGS (for example CGO_LDFLAGS="-L/opt/OpenBLAS/lib
// -Wl,-rpath,/opt/OpenBLAS/lib"). To build without any C, use CGO_ENABLED=0
// or -tags purego.

// #cgo pkg-config: openblas
import "C"
