package xattn

import "testing"

// TestSplitKeysParts checks when the keys are split and into how many parts.
func TestSplitKeysParts(t *testing.T) {
	for _, tc := range []struct{ tasks, tk, kv, threads, want int }{
		{16, 77, 77, 2, 1},     // enough tasks
		{4, 1500, 256, 2, 1},   // two per thread
		{1, 100000, 256, 2, 4}, // one row, one head: 4 parts for 2 threads
		{2, 1000, 16, 8, 8},
		{1, 30, 16, 8, 1}, // fewer than two key blocks: nothing to split
		{1, 1000, 16, 1, 2},
		{0, 1000, 16, 8, 1},
	} {
		if got := splitKeys(tc.tasks, tc.tk, tc.kv, tc.threads); got != tc.want {
			t.Errorf("splitKeys(%d, %d, %d, %d) = %d, want %d", tc.tasks, tc.tk, tc.kv, tc.threads, got, tc.want)
		}
	}
}
