//go:build !amd64

package main

import "runtime"

// fmaKernels has no register-only loops outside amd64: Go code cannot say
// which vector instructions it compiles to, so a loop in Go would measure
// the compiler, not the FMA units. The report says so.
func fmaKernels() (ks []fmaKernel, skipped []string) {
	return nil, []string{"no register FMA probe for " + runtime.GOARCH + " (amd64 assembly only)"}
}
