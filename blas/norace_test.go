//go:build !race

package blas

// raceEnabled reports whether the race detector is on; large cases are
// skipped under it.
const raceEnabled = false
