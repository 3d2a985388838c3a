package blas

import (
	"fmt"
	"testing"
)

// BenchmarkBF16 times one single-threaded product of the projection shapes
// on every BF16 kernel this CPU runs, beside the float32 product on packed
// weights of the default backend (kernel=fp32), in GFLOP/s (2·m·n·k a call):
//
//	go test ./blas -run '^$' -bench BF16
func BenchmarkBF16(b *testing.B) {
	shapes := []struct {
		name    string
		m, n, k int
	}{
		{"sd_q", 8192, 320, 320},           // SD UNet query and output projections
		{"perceiver_kv", 16384, 1024, 256}, // perceiver K|V
		{"mid", 256, 512, 512},
		{"tiny", 10, 1536, 512},
	}
	for _, sh := range shapes {
		rng := newRand(1)
		a, w, bias := make([]float32, sh.m*sh.k), make([]float32, sh.n*sh.k), make([]float32, sh.n)
		for _, s := range [][]float32{a, w, bias} {
			for i := range s {
				s[i] = float32(rng.NormFloat64())
			}
		}
		c := make([]float32, sh.m*sh.n)
		flops := 2 * float64(sh.m) * float64(sh.n) * float64(sh.k)
		prefix := fmt.Sprintf("shape=%s/m=%d/n=%d/k=%d", sh.name, sh.m, sh.n, sh.k)
		p, err := PackBF16Trans(w, sh.n, sh.k)
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range BF16Kernels() {
			if name == "pure" || name == "rounded-scalar" {
				continue
			}
			kn, _ := BF16KernelNamed(name)
			b.Run(prefix+"/kernel="+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := kn.GemmBF16(sh.m, sh.n, sh.k, 1, a, sh.k, p, 0, c, sh.n, bias); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
		be := Default()
		g := &Batch{Count: 1, M: sh.m, N: sh.n, K: sh.k, TransB: true, Alpha: 1, A: a, B: w, C: c,
			LDA: sh.k, LDB: sh.k, LDC: sh.n, Bias: bias, Packed: be.Pack(w, sh.n, sh.k)}
		b.Run(prefix+"/kernel=fp32", func(b *testing.B) {
			b.Logf("fp32: %s, packed=%v", Kernels(be), !g.Packed.IsZero())
			b.ReportAllocs()
			for b.Loop() {
				be.Sgemm(g)
			}
			b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
		})
	}
}
