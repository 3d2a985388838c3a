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
		{"epyc/dh=40", cpuInfo{physical: 2, l1d: 48 << 10, l2: 1 << 20, isa: "avx512"}, 2, 40, 40, 2, 80, 192},
		{"epyc/dh=64", cpuInfo{physical: 2, l1d: 48 << 10, l2: 1 << 20, isa: "avx512"}, 2, 64, 64, 2, 128, 128},
		{"big L2/dh=40", cpuInfo{physical: 2, l1d: 48 << 10, l2: 2 << 20, isa: "avx512"}, 2, 40, 40, 2, 80, 400},
		{"unknown caches", cpuInfo{physical: 4, l1d: -1, l2: -1}, 8, 64, 64, 4, 32, 32},
		{"unknown cores", cpuInfo{physical: 0, l1d: 32 << 10, l2: 512 << 10}, 6, 64, 64, 6, 64, 64},
		{"more cores than procs", cpuInfo{physical: 64, l2: 1 << 20}, 4, 64, 64, 4, 128, 128},
		{"zero procs", cpuInfo{}, 0, 8, 8, 1, 16, 256},
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
