//go:build !(linux && amd64)

package blas

import "errors"

// RequestAMX fails off Linux on x86-64: the AMX kernel is used only where
// the tile data permission can be requested (see amx_linux.go).
func RequestAMX() error {
	return errors.New("AMX tile data needs Linux's arch_prctl permission request (linux/amd64 only)")
}
