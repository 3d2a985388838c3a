package xattn

import "syscall"

// systemMemory returns the physical memory of the machine, or the soft
// address-space limit when that is lower.
func systemMemory() uint64 {
	var lim uint64
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		lim = uint64(si.Totalram) * uint64(si.Unit)
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_AS, &rl) == nil && rl.Cur != ^uint64(0) && (lim == 0 || rl.Cur < lim) {
		lim = rl.Cur
	}
	return lim
}
