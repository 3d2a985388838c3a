package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestFLOPs checks the work xbench reports for each preset against the
// formula written out by hand:
//
//	2·B·(Tq·Dq·H·dh + 2·Tk·Dc·H·dh + Tq·H·dh·Do) + 4·B·H·Tq·Tk·dh
func TestFLOPs(t *testing.T) {
	want := map[string]float64{
		"sd_unet64": 2*2*(4096*320*320+2*77*768*320+4096*320*320) + 4*2*8*4096*77*40,
		"decoder":   2*8*(32*512*512+2*1500*512*512+32*512*512) + 4*8*8*32*1500*64,
		"perceiver": 2*1*(256*512*512+2*16384*256*512+256*512*512) + 4*1*8*256*16384*64,
		"tiny":      2*1*(10*512*512+2*20*512*512+10*512*512) + 4*1*8*10*20*64,
	}
	for _, p := range presets {
		r := baseResult(benchCase{name: p.name, cfg: p.cfg, shape: p.shape}, "x", "xattn")
		if r.FLOPs != want[p.name] {
			t.Errorf("%s: FLOPs = %g, want %g", p.name, r.FLOPs, want[p.name])
		}
	}
	// sd_unet64 is 4.31 GFLOP a call, as the table prints.
	if got := want["sd_unet64"] / 1e9; math.Abs(got-4.3142) > 1e-3 {
		t.Errorf("sd_unet64 = %.4f GFLOP", got)
	}
}

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		ts          []time.Duration
		med, lo, hi float64
	}{
		{nil, 0, 0, 0},
		{[]time.Duration{3 * ms}, 3, 3, 3},
		{[]time.Duration{5 * ms, 1 * ms, 3 * ms}, 3, 1, 5},
		{[]time.Duration{4 * ms, 1 * ms, 2 * ms, 10 * ms}, 3, 1, 10},
	} {
		med, lo, hi := summarize(tc.ts)
		if med != tc.med || lo != tc.lo || hi != tc.hi {
			t.Errorf("summarize(%v) = %v, %v, %v; want %v, %v, %v", tc.ts, med, lo, hi, tc.med, tc.lo, tc.hi)
		}
	}
}

func TestAgreement(t *testing.T) {
	ref := []float32{0.5, -2, 1}
	for _, tc := range []struct {
		name string
		got  []float32
		ok   bool
		diff float64
	}{
		{"equal", []float32{0.5, -2, 1}, true, 0},
		{"within", []float32{0.5, -2.0001, 1}, true, 1e-4},
		{"beyond", []float32{0.5, -2.001, 1}, false, 1e-3},
		{"short", []float32{0.5, -2}, false, math.Inf(1)},
		{"nan", []float32{float32(math.NaN()), -2, 1}, false, math.NaN()},
	} {
		d, tol, ok := agreement(ref, tc.got)
		if tol != 2e-4 { // 1e-4·max(1, ‖ref‖∞ = 2)
			t.Errorf("%s: tol = %v", tc.name, tol)
		}
		if ok != tc.ok || (!math.IsNaN(tc.diff) && math.Abs(d-tc.diff) > 1e-6) || (math.IsNaN(tc.diff) != math.IsNaN(d)) {
			t.Errorf("%s: agreement = %v, %v; want %v, %v", tc.name, d, ok, tc.diff, tc.ok)
		}
	}
	// A small output still gets the absolute floor 1e-4.
	if _, tol, _ := agreement([]float32{1e-3}, []float32{0}); tol != 1e-4 {
		t.Errorf("tol = %v, want 1e-4", tol)
	}
	var r Result
	setAgreement(&r, ref, []float32{float32(math.NaN()), 0, 0})
	if r.Agree != "FAIL" || r.MaxAbsDiff != -1 {
		t.Errorf("NaN: %+v", r)
	}
}

func TestBenchLayer(t *testing.T) {
	c := benchCase{name: "small", cfg: xattn.Config{QueryDim: 16, ContextDim: 24, Heads: 2, HeadDim: 8},
		shape: xattn.Shape{Batch: 2, Tq: 5, Tk: 7}, threads: 1}
	p, err := newProblem(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	o := &options{warmup: 1, repeats: 4, budget: time.Second}
	var ys [][]float32
	for _, be := range blas.All() {
		r, y, err := benchLayer(p, be, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != stateOK || r.Repeats != 4 || r.Warmup != 1 || r.MedianMs <= 0 || r.MinMs > r.MedianMs ||
			r.MaxMs < r.MedianMs || r.GFLOPs <= 0 || r.Threads != 1 || r.Impl != be.Name() || len(y) != 2*5*16 {
			t.Errorf("%s: %+v", be.Name(), r)
		}
		ys = append(ys, y)
	}
	for _, y := range ys[1:] {
		if _, _, ok := agreement(ys[0], y); !ok {
			t.Error("backends disagree")
		}
	}
	// Adaptive repeats: at least 3.
	o.repeats, o.budget = 0, time.Nanosecond
	r, _, err := benchLayer(p, blas.Default(), o, nil)
	if err != nil || r.Repeats != 3 {
		t.Errorf("adaptive: %d repeats, %v", r.Repeats, err)
	}
}

func TestMeasurePeak(t *testing.T) {
	pp := newPeakProbe(32, 1, false)
	p := pp.gemm(blas.Pure(), 2)
	if p == nil || p.Kind != kindGemm || p.Threads != 2 || p.N != 32 || p.Rounds < 1 || p.GFLOPs <= 0 ||
		math.Abs(p.PerThread*2-p.GFLOPs) > 1e-9*p.GFLOPs || p.Method == "" || p.ISA != "sse" {
		t.Fatalf("probe = %+v", p)
	}
	if pp.gemm(blas.Pure(), 2) != p {
		t.Error("probe not cached")
	}
	for _, be := range blas.All() {
		q := pp.gemm(be, 1)
		if q == nil || q.Backend != be.Name() || q.Kernel == "" {
			t.Errorf("%s probe = %+v", be.Name(), q)
		}
	}
	if len(pp.list()) != 1+len(blas.All()) {
		t.Errorf("%d probes listed", len(pp.list()))
	}
	if pp.fma("sse", 1) != nil {
		t.Error("register probe ran with the register probes off")
	}
	if newPeakProbe(0, 1, false).gemm(blas.Pure(), 1) != nil {
		t.Error("-peak-n 0 still probes")
	}
	// The register probes: each measured once per thread count, listed.
	fp := newPeakProbe(0, 1, true)
	fp.allFMA(1)
	if len(fp.list()) != len(fp.kernels) {
		t.Errorf("%d register probes for %d loops", len(fp.list()), len(fp.kernels))
	}
	if best := fp.best().FP32; best != "" && fp.fma(best, 1) == nil {
		t.Errorf("no probe of the best ISA %q", best)
	}
	// Measured again, the better reading is kept, and the runs counted.
	if p := fp.fma("scalar", 1); p != nil {
		g0, r0 := p.GFLOPs, p.Rounds
		fp.again("scalar", blas.Pure(), 1)
		if p.Runs != 2 || p.GFLOPs < g0 || p.Rounds <= r0 || fp.fma("scalar", 1) != p {
			t.Errorf("again: %+v (was %v GFLOP/s, %d rounds)", p, g0, r0)
		}
	}
	gp := newPeakProbe(32, 1, false)
	gp.again("sse", blas.Pure(), 1) // first time: measured once
	gp.again("sse", blas.Pure(), 1)
	if l := gp.list(); len(l) != 1 || l[0].Runs != 2 || l[0].Kind != kindGemm {
		t.Errorf("gemm again: %+v", l)
	}
}

func TestPickBackends(t *testing.T) {
	if b, err := pickBackends("", "fp32"); err != nil || len(b) != 1 || b[0].Name() != blas.Default().Name() {
		t.Errorf("default: %v %v", b, err)
	}
	if b, err := pickBackends("all", "fp32"); err != nil || len(b) != len(blas.All()) {
		t.Errorf("all: %v %v", b, err)
	}
	if b, err := pickBackends("pure", "fp32"); err != nil || b[0].Name() != "pure" {
		t.Errorf("pure: %v %v", b, err)
	}
	_, err := pickBackends("openblas", "fp32")
	if (err == nil) != (blas.Default().Name() == "openblas") {
		t.Errorf("openblas: %v", err)
	}
	// -precision all: every backend, then each in BF16, named apart.
	b, err := pickBackends("all", "all")
	if err != nil || len(b) != 2*len(blas.All()) {
		t.Fatalf("all, all: %v %v", b, err)
	}
	for i, be := range b {
		_, bf := blas.BF16KernelOf(be)
		if bf != (i >= len(blas.All())) || strings.HasSuffix(implName(be), "-bf16") != bf {
			t.Errorf("backend %d: %s (%s), BF16 %t", i, implName(be), blas.Kernels(be), bf)
		}
	}
}
