package blas

import (
	"fmt"
	"math"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

// BenchmarkSoftmaxRows times the fused row pass on blocks of attention
// scores of realistic sizes (Stable Diffusion's 77 text tokens; a 512-key
// block), for every variant: the C scalar, AVX2 and AVX-512 code of the
// OpenBLAS backend and pure Go. It reports bytes of S per second and
// elements per nanosecond.
func BenchmarkSoftmaxRows(b *testing.B) {
	for _, v := range variants() {
		for _, sh := range []struct {
			m, n int
			mask bool
		}{{64, 77, false}, {64, 512, false}, {64, 512, true}} {
			name := fmt.Sprintf("isa=%s/M=%d/N=%d/mask=%v", v.name, sh.m, sh.n, sh.mask)
			b.Run(name, func(b *testing.B) {
				if !v.ok {
					b.Skipf("CPU lacks %s", v.name)
				}
				r := &Rows{M: sh.m, N: sh.n, S: make([]float32, sh.m*sh.n), LDS: sh.n,
					Max: make([]float32, sh.m), Sum: make([]float32, sh.m), Corr: make([]float32, sh.m)}
				testutil.Fill(newRand(1), r.S, -8, 8)
				if sh.mask {
					r.Bias = make([]float32, sh.n)
					testutil.Fill(newRand(2), r.Bias, -1, 1)
					r.Keep = make([]bool, sh.n)
					for i := range r.Keep {
						r.Keep[i] = i%7 != 0
					}
					r.Causal, r.Lim0 = true, sh.n-sh.m
				}
				reset := func() {
					for i := range r.Max {
						r.Max[i], r.Sum[i] = float32(math.Inf(-1)), 0
					}
				}
				// Each pass rewrites S with values in [0, 1], which the next
				// pass takes as scores: the work per pass stays the same.
				reset()
				v.be.SoftmaxRows(r)
				b.SetBytes(int64(4 * sh.m * sh.n))
				b.ReportAllocs()
				for b.Loop() {
					reset()
					v.be.SoftmaxRows(r)
				}
				b.ReportMetric(float64(sh.m*sh.n)*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "elem/ns")
			})
		}
	}
}

// BenchmarkSgemm times small products of the shapes of attention heads,
// single and batched, and reports GFLOP/s.
func BenchmarkSgemm(b *testing.B) {
	for _, be := range All() {
		for _, sh := range []struct {
			count, m, n, k int
			transB         bool
		}{{1, 64, 64, 64, false}, {1, 64, 77, 40, true}, {8, 64, 40, 77, false}, {8, 64, 77, 40, true}} {
			name := fmt.Sprintf("backend=%s/count=%d/M=%d/N=%d/K=%d/transB=%v", be.Name(), sh.count, sh.m, sh.n, sh.k, sh.transB)
			b.Run(name, func(b *testing.B) {
				// Heads as column blocks: item i is columns i·K… of A, as in a layer.
				g := &Batch{Count: sh.count, M: sh.m, N: sh.n, K: sh.k, TransB: sh.transB, Alpha: 1,
					LDA: sh.count * sh.k, StrideA: sh.k, LDC: sh.count * sh.n, StrideC: sh.n}
				bRows := sh.k
				g.LDB, g.StrideB = sh.count*sh.n, sh.n
				if sh.transB {
					bRows = sh.n
					g.LDB, g.StrideB = sh.count*sh.k, sh.k
				}
				g.A = make([]float32, sh.m*g.LDA)
				g.B = make([]float32, bRows*g.LDB)
				g.C = make([]float32, sh.m*g.LDC)
				testutil.Fill(newRand(1), g.A, -1, 1)
				testutil.Fill(newRand(2), g.B, -1, 1)
				be.Sgemm(g)
				b.ReportAllocs()
				for b.Loop() {
					be.Sgemm(g)
				}
				flops := 2 * float64(sh.count*sh.m*sh.n*sh.k)
				b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
	}
}

// BenchmarkAttend times the attention core of one small layer (Stable
// Diffusion's cross-attention at 8×8 latents: 8 heads of 40, 77 keys) and
// reports GFLOP/s of its two products, 4·B·H·Tq·Tk·dh.
func BenchmarkAttend(b *testing.B) {
	for _, v := range variants() {
		for _, sh := range []struct{ tq, tk, dh, qb, kvb int }{{64, 77, 40, 32, 77}, {64, 256, 64, 32, 64}, {256, 4096, 64, 256, 256}} {
			name := fmt.Sprintf("backend=%s/isa=%s/B=1/H=8/Tq=%d/Tk=%d/dh=%d", v.be.Name(), v.name, sh.tq, sh.tk, sh.dh)
			b.Run(name, func(b *testing.B) {
				if !v.ok {
					b.Skipf("CPU lacks %s", v.name)
				}
				const heads = 8
				a := &Attention{Batch: 1, Heads: heads, KVHeads: heads, Tq: sh.tq, Tk: sh.tk, DK: sh.dh, DV: sh.dh,
					Scale: 1 / float32(math.Sqrt(float64(sh.dh))), LDQ: heads * sh.dh, LDK: heads * sh.dh,
					LDV: heads * sh.dh, LDO: heads * sh.dh, QBlock: sh.qb, KVBlock: sh.kvb}
				a.Q = make([]float32, sh.tq*a.LDQ)
				a.K = make([]float32, sh.tk*a.LDK)
				a.V = make([]float32, sh.tk*a.LDV)
				a.O = make([]float32, sh.tq*a.LDO)
				testutil.Fill(newRand(1), a.Q, -1, 1)
				testutil.Fill(newRand(2), a.K, -1, 1)
				testutil.Fill(newRand(3), a.V, -1, 1)
				scratch := make([]float32, a.ScratchLen())
				v.be.Attend(a, 0, a.Tasks(), scratch)
				b.ReportAllocs()
				for b.Loop() {
					v.be.Attend(a, 0, a.Tasks(), scratch)
				}
				flops := 4 * float64(heads*sh.tq*sh.tk*sh.dh)
				b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
	}
}

// BenchmarkProjection times the products of a layer's projections, C = A·Wᵀ
// + bias against a weight matrix W (N×K), on every backend: as given and,
// where the backend packs, against W from Pack. It reports GFLOP/s.
func BenchmarkProjection(b *testing.B) {
	for _, v := range variants() {
		for _, sh := range []struct{ m, n, k int }{
			{10, 512, 512}, {20, 1024, 512}, {32, 512, 512}, {256, 512, 512},
			{2048, 320, 320}, {154, 640, 768}, {1500, 1024, 512}, {4096, 1024, 256}, {16384, 1024, 256}, {192, 1024, 256},
		} {
			for _, packed := range []bool{false, true} {
				name := fmt.Sprintf("isa=%s/M=%d/N=%d/K=%d/packed=%v", v.name, sh.m, sh.n, sh.k, packed)
				b.Run(name, func(b *testing.B) {
					if !v.ok {
						b.Skipf("CPU lacks %s", v.name)
					}
					g := &Batch{Count: 1, M: sh.m, N: sh.n, K: sh.k, TransB: true, Alpha: 1,
						A: make([]float32, sh.m*sh.k), LDA: sh.k, B: make([]float32, sh.n*sh.k), LDB: sh.k,
						C: make([]float32, sh.m*sh.n), LDC: sh.n, Bias: make([]float32, sh.n)}
					testutil.Fill(newRand(1), g.A, -1, 1)
					testutil.Fill(newRand(2), g.B, -1, 1)
					if packed {
						if g.Packed = v.be.Pack(g.B, sh.n, sh.k); g.Packed.IsZero() {
							b.Skipf("%s does not pack", v.name)
						}
					}
					v.be.Sgemm(g)
					b.ReportAllocs()
					for b.Loop() {
						v.be.Sgemm(g)
					}
					flops := 2 * float64(sh.m*sh.n*sh.k)
					b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
				})
			}
		}
	}
}
