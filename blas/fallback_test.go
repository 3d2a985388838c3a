//go:build !cgo || purego

package blas

// variants lists the implementations of the row pass in this binary: only
// pure, as OpenBLAS is not compiled in.
func variants() []variant {
	return []variant{{name: "pure", be: Pure(), ok: true}}
}
