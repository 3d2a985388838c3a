//go:build cgo && !purego

package blas

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

// forCrews runs f on the crew of every OpenBLAS variant that has one (its
// products pack and its attention stays out of OpenBLAS), skipping the
// others with the reason.
func forCrews(t *testing.T, f func(t *testing.T, be Backend)) {
	forVariants(t, func(t *testing.T, be Backend) {
		o, ok := be.(openBLAS)
		if !ok {
			if CrewOf(be) != nil {
				t.Fatalf("%s has a crew", be.Name())
			}
			t.Skipf("%s has no crew", be.Name())
		}
		want := o.k.packs && !o.k.blas
		if (CrewOf(be) != nil) != want {
			t.Fatalf("CrewOf(%s) != nil is %v, want %v", Kernels(be), !want, want)
		}
		if !want {
			t.Skipf("variant %s has no crew: its products or its attention run on OpenBLAS", Kernels(be))
		}
		f(t, be)
	})
}

// crewProducts is a phase of products for the crew tests: three packed
// products of different depths, with and without bias, A and C with padded
// rows, C guarded, cut in row and column chunks the way xattn cuts them.
type crewProducts struct {
	gs     []Batch
	chunks []Chunk
	guards []func() bool
}

func newCrewProducts(be Backend, seed uint64) *crewProducts {
	rng := newRand(seed)
	p := &crewProducts{}
	_, cs := be.Steps()
	for i, sh := range []struct{ m, n, k, pad int }{{13, 200, 77, 3}, {20, 130, 40, 0}, {7, 64, 300, 5}} {
		g := Batch{Count: 1, M: sh.m, N: sh.n, K: sh.k, TransB: true, Alpha: 1,
			LDA: sh.k + sh.pad, LDB: sh.k, LDC: sh.n + sh.pad}
		g.A = make([]float32, sh.m*g.LDA)
		g.B = make([]float32, sh.n*sh.k)
		testutil.Fill(rng, g.A, -1, 1)
		testutil.Fill(rng, g.B, -1, 1)
		if i != 1 {
			g.Bias = make([]float32, sh.n)
			testutil.Fill(rng, g.Bias, -1, 1)
		}
		var guard func() bool
		g.C, guard = testutil.Guarded(sh.m*g.LDC, 16)
		for r := range sh.m {
			for j := range sh.n {
				g.C[r*g.LDC+j] = float32(math.NaN()) // never read: Beta 0
			}
		}
		g.Packed = be.Pack(g.B, sh.n, sh.k)
		p.gs = append(p.gs, g)
		p.guards = append(p.guards, guard)
		// Product 0 in column chunks of one step, 1 in rows of 6, 2 whole.
		switch i {
		case 0:
			for c0 := 0; c0 < sh.n; c0 += cs {
				p.chunks = append(p.chunks, Chunk{G: i, R0: 0, R1: sh.m, C0: c0, C1: min(c0+cs, sh.n)})
			}
		case 1:
			for r0 := 0; r0 < sh.m; r0 += 6 {
				p.chunks = append(p.chunks, Chunk{G: i, R0: r0, R1: min(r0+6, sh.m), C0: 0, C1: sh.n})
			}
		default:
			p.chunks = append(p.chunks, Chunk{G: i, R0: 0, R1: sh.m, C0: 0, C1: sh.n})
		}
	}
	return p
}

// want returns what Sgemm gives for each chunk of p alone: the outputs of
// the products.
func (p *crewProducts) want(be Backend) [][]float32 {
	out := make([][]float32, len(p.gs))
	for i := range p.gs {
		out[i] = append([]float32(nil), p.gs[i].C...)
	}
	for _, ch := range p.chunks {
		g := p.gs[ch.G]
		n := ch.C1 - ch.C0
		c := Batch{Count: 1, M: ch.R1 - ch.R0, N: n, K: g.K, TransB: true, Alpha: 1,
			A: g.A[ch.R0*g.LDA:], LDA: g.LDA, B: g.B[ch.C0*g.K:], LDB: g.K,
			C: out[ch.G][ch.R0*g.LDC+ch.C0:], LDC: g.LDC}
		if g.Bias != nil {
			c.Bias = g.Bias[ch.C0:]
		}
		c.Packed, _ = g.Packed.Cols(ch.C0, n)
		be.Sgemm(&c)
	}
	return out
}

// check fails t unless every product of p holds want, bit for bit, with its
// guards intact, and against the float64 reference.
func (p *crewProducts) check(t *testing.T, want [][]float32) {
	t.Helper()
	for i := range p.gs {
		if !p.guards[i]() {
			t.Fatalf("product %d: guard band around C overwritten", i)
		}
		if d := testutil.BitDiff(p.gs[i].C, want[i]); d >= 0 {
			t.Fatalf("product %d: C[%d] = %v, want %v (Sgemm of the chunk alone)", i, d, p.gs[i].C[d], want[i][d])
		}
		ref, scale := sgemmRef64(&p.gs[i])
		g := &p.gs[i]
		for r := range g.M {
			for j := range g.N {
				k := r*g.LDC + j
				if tol := testutil.ProductBound(g.K+2, scale[k]); !(math.Abs(float64(g.C[k])-ref[k]) <= tol) {
					t.Fatalf("product %d: C[%d][%d] = %v, want %v ± %g", i, r, j, g.C[k], ref[k], tol)
				}
			}
		}
	}
}

// reset refills the outputs of p with NaN.
func (p *crewProducts) reset() {
	for i := range p.gs {
		g := &p.gs[i]
		for r := range g.M {
			for j := range g.N {
				g.C[r*g.LDC+j] = float32(math.NaN())
			}
		}
	}
}

// TestCrewProducts runs phases of products on a crew at 1 to 5 threads,
// many times over (the crew threads join some phases and miss others), and
// holds each against Sgemm of every chunk alone and the float64 reference.
func TestCrewProducts(t *testing.T) {
	forCrews(t, func(t *testing.T, be Backend) {
		p := newCrewProducts(be, 7)
		want := p.want(be)
		cr := CrewOf(be)
		for _, threads := range []int{1, 2, 3, 5} {
			t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
				for range 50 {
					p.reset()
					if !cr.Products(p.gs, p.chunks, threads) {
						t.Fatal("Products = false on packed products")
					}
					p.check(t, want)
				}
			})
		}
		if n := CrewThreads(); n < 4 {
			t.Errorf("CrewThreads() = %d after phases of 5 threads, want at least 4", n)
		}
	})
}

// TestCrewConcurrent runs phases of several crews at once, sharing the crew
// threads (and the tickets of each other's phases): each gets its own
// products right.
func TestCrewConcurrent(t *testing.T) {
	forCrews(t, func(t *testing.T, be Backend) {
		testutil.Parallel(t, 6, func(gi int) func() error {
			p := newCrewProducts(be, uint64(100+gi))
			want := p.want(be)
			cr := CrewOf(be)
			return func() error {
				for it := range 200 {
					p.reset()
					if !cr.Products(p.gs, p.chunks, 2+it%3) {
						return errors.New("Products = false")
					}
					for i := range p.gs {
						if d := testutil.BitDiff(p.gs[i].C, want[i]); d >= 0 || !p.guards[i]() {
							return fmt.Errorf("goroutine %d, round %d, product %d: C[%d] wrong or guards overwritten", gi, it, i, d)
						}
					}
				}
				return nil
			}
		})
	})
}

// TestCrewDeclines checks that Products runs nothing and returns false
// where a product is not packed in the variant's layout, or there are more
// products than a phase takes, and panics on chunks outside their product.
func TestCrewDeclines(t *testing.T) {
	forCrews(t, func(t *testing.T, be Backend) {
		cr := CrewOf(be)
		p := newCrewProducts(be, 3)
		p.gs[1].Packed = Packed{}
		if cr.Products(p.gs, p.chunks, 2) {
			t.Fatal("Products = true with an unpacked product")
		}
		for i := range p.gs {
			g := &p.gs[i]
			if !math.IsNaN(float64(g.C[0])) || !p.guards[i]() {
				t.Fatalf("product %d written by a declined phase", i)
			}
		}
		p = newCrewProducts(be, 3)
		four := append(p.gs, p.gs[0])
		if cr.Products(four, p.chunks, 2) {
			t.Fatal("Products = true with four products")
		}
		for _, bad := range []Chunk{{G: 3}, {G: -1}, {G: 0, R0: 0, R1: 14, C0: 0, C1: 64}, {G: 0, R0: 2, R1: 2, C0: 0, C1: 64},
			{G: 1, R0: 0, R1: 6, C0: 0, C1: 131}} {
			mustPanic(t, errChunk, func() { cr.Products(p.gs, []Chunk{bad}, 2) })
		}
		// A chunk off a column step has no packed view: declined.
		if cr.Products(p.gs, []Chunk{{G: 0, R0: 0, R1: 13, C0: 1, C1: 64}}, 2) {
			t.Fatal("Products = true on a chunk that starts off a column step")
		}
	})
}

// TestCrewAttend runs the attention cases on a crew, in items of 1 and 3
// tasks at 1 to 4 threads, and holds the outputs and statistics against
// Attend over all the tasks, bit for bit (each task is computed alone
// either way), with O's guard band intact. Attend itself is held against
// the float64 reference (TestAttend).
func TestCrewAttend(t *testing.T) {
	forCrews(t, func(t *testing.T, be Backend) {
		cr := CrewOf(be)
		for _, tc := range attnCases() {
			t.Run(tc.name, func(t *testing.T) {
				seed := uint64(len(tc.name)*31 + tc.tk)
				want, _, _ := tc.attention(seed)
				if tc.packKeys {
					be.PackKeys(want)
				}
				want.Stats = make([]float32, 2*max(want.Batch*want.Heads*want.Tq, 1))
				be.Attend(want, 0, want.Tasks(), make([]float32, be.ScratchLen(want)))
				for _, threads := range []int{1, 2, 4} {
					for _, chunk := range []int{1, 3} {
						a, _, checkO := tc.attention(seed)
						if tc.packKeys {
							be.PackKeys(a)
						}
						a.Stats = make([]float32, len(want.Stats))
						n := be.ScratchLen(a)
						scratch := make([]float32, threads*n)
						for i := range scratch {
							scratch[i] = float32(math.NaN())
						}
						if !cr.Attend(a, chunk, threads, scratch) {
							t.Fatal("Attend = false")
						}
						if !checkO() {
							t.Fatal("guard band around O overwritten")
						}
						if d := testutil.BitDiff(a.O, want.O); d >= 0 {
							t.Fatalf("threads=%d chunk=%d: O[%d] = %v, want %v", threads, chunk, d, a.O[d], want.O[d])
						}
						if d := testutil.BitDiff(a.Stats, want.Stats); d >= 0 {
							t.Fatalf("threads=%d chunk=%d: Stats[%d] = %v, want %v", threads, chunk, d, a.Stats[d], want.Stats[d])
						}
					}
				}
			})
		}
		a, _, _ := attnCases()[2].attention(1)
		mustPanic(t, errScratch, func() { cr.Attend(a, 1, 2, make([]float32, 2*be.ScratchLen(a)-1)) })
	})
}
