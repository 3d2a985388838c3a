//go:build linux

package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// rssSource says how peakRSS measures, for the report.
const rssSource = "the process's peak resident set (VmHWM of /proc/self/status, reset per case through /proc/self/clear_refs; " +
	"getrusage ru_maxrss, which never resets, where that fails)"

// resetPeakRSS starts a new peak resident set measurement: writing 5 to
// /proc/self/clear_refs resets the kernel's high-water mark (Linux ≥ 4.0).
// It reports whether that worked.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the peak resident set of the process in bytes since the
// last resetPeakRSS: VmHWM, else getrusage's ru_maxrss (since the start of
// the process), else 0.
func peakRSS() int64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		return ru.Maxrss << 10 // kilobytes on Linux
	}
	return 0
}

// childPeakRSS returns the peak resident set of a finished child process in
// bytes, from its rusage, or 0.
func childPeakRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10
	}
	return 0
}
