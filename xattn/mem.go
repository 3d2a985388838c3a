package xattn

import (
	"fmt"
	"sync"
	"unsafe"
)

// memLimit returns the bytes this process can hope to allocate: the
// machine's physical memory, or less under an address-space limit
// (RLIMIT_AS), read once; 0 where neither is known.
var memLimit = sync.OnceValue(systemMemory)

// checkMemMin is the size below which checkMem does not look at the limit.
const checkMemMin = 64 << 20

// checkMem returns an error wrapping ErrShape, with the memory needed, when
// n float32 values for what would take more memory than [memLimit]: a
// request that is legal but cannot be met is an error, not a fatal
// out-of-memory crash. n is a float64 so that sums of sizes cannot overflow.
func checkMem(what string, n float64) error {
	if n <= checkMemMin/4 {
		return nil
	}
	b := uint64(min(4*n, 1<<63))
	if lim := memLimit(); lim > 0 && b > lim {
		return fmt.Errorf("%w: %s needs %s, more than the %s this process can allocate",
			ErrShape, what, bytesString(b), bytesString(lim))
	}
	return nil
}

// bytesString formats b in binary units, as "3.5 GiB".
func bytesString(b uint64) string {
	f, u := float64(b), "B"
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		if f < 1024 {
			break
		}
		f, u = f/1024, unit
	}
	if u == "B" {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%.3g %s", f, u)
}

// overlaps reports whether a and b share memory.
func overlaps(a, b []float32) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, b0 := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return a0 < b0+uintptr(len(b))*4 && b0 < a0+uintptr(len(a))*4
}

// checkOverlap returns an error wrapping ErrShape if the output out shares
// memory with the input in.
func checkOverlap(outName string, out []float32, inName string, in []float32) error {
	if overlaps(out, in) {
		return fmt.Errorf("%w: %s overlaps the %s", ErrShape, outName, inName)
	}
	return nil
}
