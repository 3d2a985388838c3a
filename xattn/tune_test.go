package xattn

import "testing"

// TestTune drives tune with made-up CPUs, unknown fields included.
func TestTune(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cpu        cpuInfo
		procs      int
		dk, dv     int
		threads    int
		qBlk, kBlk int
	}{
		{"epyc/dh=40", cpuInfo{physical: 2, l1d: 48 << 10, l2: 1 << 20, isa: "avx512"}, 2, 40, 40, 2, 160, 192},
		{"epyc/dh=64", cpuInfo{physical: 2, l1d: 48 << 10, l2: 1 << 20, isa: "avx512"}, 2, 64, 64, 2, 128, 128},
		{"big L2/dh=40", cpuInfo{physical: 2, l1d: 48 << 10, l2: 2 << 20, isa: "avx512"}, 2, 40, 40, 2, 160, 400},
		{"unknown caches", cpuInfo{physical: 4, l1d: -1, l2: -1}, 8, 64, 64, 4, 32, 32},
		{"unknown cores", cpuInfo{physical: 0, l1d: 32 << 10, l2: 512 << 10}, 6, 64, 64, 6, 64, 64},
		{"more cores than procs", cpuInfo{physical: 64, l2: 1 << 20}, 4, 64, 64, 4, 128, 128},
		{"zero procs", cpuInfo{}, 0, 8, 8, 1, 32, 256},
		{"tiny head", cpuInfo{physical: 2, l2: 1 << 20}, 2, 1, 1, 2, 8, 1024},
		{"huge head", cpuInfo{physical: 2, l2: 1 << 20}, 2, 4096, 4096, 2, 16, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tune(tc.cpu, tc.procs, tc.dk, tc.dv)
			if p.Threads != tc.threads || p.QBlock != tc.qBlk || p.KVBlock != tc.kBlk {
				t.Fatalf("tune = %v, want threads=%d tile=%dx%d", p, tc.threads, tc.qBlk, tc.kBlk)
			}
			if p.SerialFLOPs <= 0 || p.ISA == "" {
				t.Fatalf("tune = %v: empty fields", p)
			}
		})
	}
}

// TestDefaultPlan logs the plan of this machine.
func TestDefaultPlan(t *testing.T) {
	c := detectCPU()
	t.Logf("cpu: %+v", c)
	for _, d := range []int{40, 64, 160} {
		p := defaultPlan(d, d)
		if p.Threads < 1 || p.QBlock < 1 || p.KVBlock < 1 {
			t.Fatalf("dh=%d: bad plan %v", d, p)
		}
		t.Logf("dh=%d: %v", d, p)
	}
}

// TestQBlock checks the query block of a call: within [1, Tq], a multiple of
// the backend's row step (6 here, the AVX-512 kernel's strips) unless it is all of Tq, no more blocks than the
// plan's tile gives, and two tasks per thread where the rows allow.
func TestQBlock(t *testing.T) {
	for _, tc := range []struct{ q, bh, tq, threads, want int }{
		{160, 16, 4096, 2, 162}, // sd_unet64: 26 blocks of 158 rounded up to strips
		{256, 8, 256, 2, 256},   // perceiver: one block per head
		{256, 64, 32, 2, 32},    // decoder
		{256, 8, 10, 2, 10},     // tiny
		{256, 1, 256, 4, 36},    // one head on 4 threads: 8 blocks
		{256, 1, 1, 8, 1},       // one row: nothing to split
		{7, 1, 13, 1, 12},       // two blocks: 7 rounded up to a strip multiple
	} {
		got := qBlock(tc.q, tc.bh, tc.tq, tc.threads, 6)
		if got != tc.want {
			t.Errorf("qBlock(%d, %d, %d, %d) = %d, want %d", tc.q, tc.bh, tc.tq, tc.threads, got, tc.want)
		}
	}
	for q := 1; q <= 40; q++ {
		for tq := 1; tq <= 100; tq++ {
			for _, th := range []int{1, 2, 3, 16} {
				got := qBlock(q, 3, tq, th, 6)
				if got < 1 || got > tq || (got != tq && got%6 != 0) {
					t.Fatalf("qBlock(%d, 3, %d, %d) = %d", q, tq, th, got)
				}
				if ceilDiv(tq, got) > ceilDiv(tq, min(q, tq)) && 3*ceilDiv(tq, min(q, tq)) >= 2*th {
					t.Fatalf("qBlock(%d, 3, %d, %d) = %d: more blocks than the tile gives", q, tq, th, got)
				}
			}
		}
	}
}
