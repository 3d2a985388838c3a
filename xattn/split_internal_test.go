package xattn

import (
	"testing"

	"github.com/xattn/xattn/blas"
)

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

// TestKeySpan checks the keys that split keys cut: all of them without a
// structural mask, up to the last query's position with a causal one, and
// from the first query's window on (rounded down to a key block) with a
// window, so that a windowed decoding step over a long cache splits its
// window alone (and visiblePairs counts it).
func TestKeySpan(t *testing.T) {
	for _, tc := range []struct {
		causal                  bool
		tq, off, window, kv, tk int
		lo, hi                  int
	}{
		{false, 1, 0, 0, 64, 10000, 0, 10000},
		{true, 4, 0, 0, 64, 10000, 0, 4},             // top-left causal: the first Tq keys
		{true, 1, 9999, 0, 64, 10000, 0, 10000},      // a decoding step: everything
		{true, 1, 9999, 256, 64, 10000, 9728, 10000}, // its window: 9744 rounded down
		{true, 3, 10, 4, 8, 13, 0, 13},               // the window starts at key 7: block 0
		{true, 2, -5, 3, 8, 13, 0, 0},                // no query sees a key
		{true, 1, 99, 1, 16, 100, 96, 100},
	} {
		a := blas.Attention{Causal: tc.causal, Tq: tc.tq, CausalOffset: tc.off, Window: tc.window, KVBlock: tc.kv}
		lo, hi := keySpan(&a, tc.tk)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("keySpan(%+v, %d) = [%d, %d), want [%d, %d)", tc, tc.tk, lo, hi, tc.lo, tc.hi)
		}
		if tc.window > 0 {
			if got, want := visiblePairs(&a, Shape{Batch: 2, Tq: tc.tq, Tk: tc.tk}), float64(2*tc.tq*min(tc.tk, tc.window)); got != want {
				t.Errorf("visiblePairs = %v, want %v", got, want)
			}
		}
	}
}
