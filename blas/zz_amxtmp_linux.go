//go:build cgo && !purego && amd64

package blas

import (
	"fmt"
	"sync"
	"syscall"
)

// A stand-in for the GEMM half's AMX permission request, deleted when that
// is merged: Linux's arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA),
// once per process; without it the first tile instruction faults.
const (
	tmpArchReqXCompPerm = 0x1023
	tmpXFeatureTileData = 18
	tmpSysArchPrctl     = 158 // SYS_arch_prctl on linux/amd64
)

var (
	tmpAMXOnce sync.Once
	tmpAMXErr  error
)

func init() {
	amxPermission = func() error {
		tmpAMXOnce.Do(func() {
			if _, _, e := syscall.RawSyscall(tmpSysArchPrctl, tmpArchReqXCompPerm, tmpXFeatureTileData, 0); e != 0 {
				tmpAMXErr = fmt.Errorf("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) refused: %v", e)
			}
		})
		return tmpAMXErr
	}
}
