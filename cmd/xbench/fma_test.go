package main

import (
	"runtime"
	"testing"
)

// TestFMAKernels runs every register loop this CPU offers once, short, at
// one and two threads: it must not fault (AMX needs its permission first)
// and must report positive work. Speed is not asserted.
func TestFMAKernels(t *testing.T) {
	ks, skipped := fmaKernels()
	for _, s := range skipped {
		t.Logf("skipped: %s", s)
	}
	if runtime.GOARCH == "amd64" && len(ks) < 2 {
		t.Fatalf("amd64 has at least the sse and scalar loops; got %d", len(ks))
	}
	for _, k := range ks {
		for _, threads := range []int{1, 2} {
			p := measureFMA(k, threads, 1)
			t.Logf("%s %d: %.1f GFLOP/s", k.isa, threads, p.GFLOPs)
			if !(p.GFLOPs > 0) || p.Kind != kindFMA || p.ISA != k.isa || p.Threads != threads {
				t.Errorf("%s at %d threads: %+v", k.isa, threads, p)
			}
		}
	}
}
