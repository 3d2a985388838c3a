//go:build linux && amd64

package blas

import (
	"fmt"
	"sync"
	"syscall"
	"unsafe"
)

// Linux's arch_prctl codes for the AMX tile data permission
// (arch/x86/include/uapi/asm/prctl.h) and the system call's number.
const (
	archGetXCompPerm = 0x1022
	archReqXCompPerm = 0x1023
	xfeatureTileData = 18
	sysArchPrctl     = 158 // SYS_arch_prctl on linux/amd64
)

var (
	amxOnce sync.Once
	amxErr  error
)

// RequestAMX asks Linux, once per process, for the AMX tile data state
// (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA): without it the first tile
// instruction faults (SIGILL). The permission is process-wide, so every
// thread Go starts later may use the tiles. A refusal is returned, with its
// errno, on every call. The AMX BF16 kernel asks for it itself; a program
// with tile code of its own (xbench's peak probe) calls it first. It does
// not check that the CPU has AMX.
func RequestAMX() error {
	amxOnce.Do(func() {
		if _, _, e := syscall.RawSyscall(sysArchPrctl, archReqXCompPerm, xfeatureTileData, 0); e != 0 {
			amxErr = fmt.Errorf("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) refused: %v", e)
			return
		}
		var mask uint64
		if _, _, e := syscall.RawSyscall(sysArchPrctl, archGetXCompPerm, uintptr(unsafe.Pointer(&mask)), 0); e != 0 {
			amxErr = fmt.Errorf("arch_prctl(ARCH_GET_XCOMP_PERM) failed: %v", e)
			return
		}
		if mask&(1<<xfeatureTileData) == 0 {
			amxErr = fmt.Errorf("arch_prctl granted no tile data (permitted features %#x)", mask)
		}
	})
	return amxErr
}
