//go:build !linux

package main

import (
	"os"
	"runtime/metrics"
)

// rssSource says how peakRSS measures, for the report.
const rssSource = "the Go runtime's mapped memory at the end of the case (runtime/metrics " +
	"/memory/classes/total:bytes; memory allocated by C, such as OpenBLAS's buffers, is not counted)"

// resetPeakRSS does nothing: there is no portable peak to reset.
func resetPeakRSS() bool { return false }

// peakRSS returns the memory the Go runtime has mapped, as a stand-in for
// the peak resident set where the operating system does not report it.
func peakRSS() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// childPeakRSS returns 0: the peak resident set of a child is not known
// portably.
func childPeakRSS(*os.ProcessState) int64 { return 0 }
