package blas

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

// This file holds plain float64 loops written from the formulas in the doc
// comments of Batch, Rows and Attention, with no code shared with either
// backend, and the helpers that fill and guard test buffers.

// sgemmRef64 returns C_i = alpha·A_i·op(B_i) + beta·C_i + bias for every item
// of g, in float64, as a copy of g.C in which only the M×N blocks are
// written, and the matching error scale: for each element,
// |alpha|·(|A|·|op(B)|)ᵢⱼ + |beta·Cᵢⱼ| + |biasⱼ|. With beta = 0, C is not read.
func sgemmRef64(g *Batch) (want, scale []float64) {
	want = make([]float64, len(g.C))
	scale = make([]float64, len(g.C))
	for i, v := range g.C {
		want[i] = float64(v)
	}
	for it := 0; it < g.Count; it++ {
		for i := 0; i < g.M; i++ {
			for j := 0; j < g.N; j++ {
				var dot, abs float64
				for l := 0; l < g.K; l++ {
					a := float64(g.A[it*g.StrideA+i*g.LDA+l])
					var b float64
					if g.TransB {
						b = float64(g.B[it*g.StrideB+j*g.LDB+l])
					} else {
						b = float64(g.B[it*g.StrideB+l*g.LDB+j])
					}
					dot += a * b
					abs += math.Abs(a * b)
				}
				ci := it*g.StrideC + i*g.LDC + j
				v := float64(g.Alpha) * dot
				s := math.Abs(float64(g.Alpha)) * abs
				if g.Beta != 0 {
					v += float64(g.Beta) * float64(g.C[ci])
					s += math.Abs(float64(g.Beta) * float64(g.C[ci]))
				}
				if g.Bias != nil {
					v += float64(g.Bias[j])
					s += math.Abs(float64(g.Bias[j]))
				}
				want[ci], scale[ci] = v, s
			}
		}
	}
	return want, scale
}

// rowState is the running state of online softmax for one row, in float64.
type rowState struct{ max, sum float64 }

// softmaxRowsRef64 runs one block of the row pass of r in float64 on the
// state st (one per row, max = −Inf and sum = 0 before the first block) and
// returns the probabilities p (M×N, row-major, dense) and the correction
// factors exp(max_old − max_new). r is not modified.
func softmaxRowsRef64(r *Rows, st []rowState) (p, corr []float64) {
	p = make([]float64, r.M*r.N)
	corr = make([]float64, r.M)
	for i := 0; i < r.M; i++ {
		lim := r.N
		if r.Causal {
			lim = min(max(r.Lim0+i, 0), r.N)
		}
		v := make([]float64, r.N)
		valid := make([]bool, r.N)
		m := st[i].max
		for j := 0; j < lim; j++ {
			if r.Keep != nil && !r.Keep[i*r.LDKeep+j] {
				continue
			}
			x := float64(r.S[i*r.LDS+j])
			if r.Bias != nil {
				x += float64(r.Bias[i*r.LDBias+j])
			}
			if math.IsInf(x, -1) {
				continue
			}
			v[j], valid[j] = x, true
			m = math.Max(m, x)
		}
		if math.IsInf(m, -1) {
			corr[i] = 1
			continue
		}
		var acc float64
		for j := range v {
			if valid[j] {
				p[i*r.N+j] = testutil.ExpProb64(v[j] - m)
				acc += p[i*r.N+j]
			}
		}
		corr[i] = testutil.ExpProb64(st[i].max - m)
		st[i].sum = st[i].sum*corr[i] + acc
		st[i].max = m
	}
	return p, corr
}

// attentionRef64 returns the output rows of a in float64, laid out as a.O
// (entries that belong to no output head are 0), computed by the formula on
// [Attention] with a plain softmax over the visible keys; a row with no
// visible key (or only keys with bias −Inf) is 0.
//
// stats holds what Attention.Stats documents, in float64: each row's maximum
// score and the sum of its exponentials relative to it.
func attentionRef64(a *Attention) (out, stats []float64) {
	out = make([]float64, len(a.O))
	stats = make([]float64, 2*a.Batch*a.Heads*a.Tq)
	group := 1
	if a.KVHeads > 0 {
		group = a.Heads / a.KVHeads
	}
	for b := 0; b < a.Batch; b++ {
		for h := 0; h < a.Heads; h++ {
			g := h / group
			for i := 0; i < a.Tq; i++ {
				var js []int
				var ss []float64
				m := math.Inf(-1)
				for j := 0; j < a.Tk; j++ {
					if a.KeyLen != nil && j >= int(a.KeyLen[b]) {
						continue
					}
					if a.Causal && j > i+a.CausalOffset {
						continue
					}
					if a.Window > 0 && j <= i+a.CausalOffset-a.Window {
						continue
					}
					if a.Keep != nil && !a.Keep[b*a.KeepStride[0]+h*a.KeepStride[1]+i*a.KeepStride[2]+j] {
						continue
					}
					var dot float64
					for d := 0; d < a.DK; d++ {
						dot += float64(a.Q[b*a.BatchQ+i*a.LDQ+h*a.DK+d]) * float64(a.K[b*a.BatchK+j*a.LDK+g*a.DK+d])
					}
					s := float64(a.Scale) * dot
					if a.ALiBi != nil {
						s -= float64(a.ALiBi[h]) * float64(i+a.CausalOffset-j)
					}
					if a.Bias != nil {
						s += float64(a.Bias[b*a.BiasStride[0]+h*a.BiasStride[1]+i*a.BiasStride[2]+j])
					}
					if math.IsInf(s, -1) {
						continue
					}
					js = append(js, j)
					ss = append(ss, s)
					m = math.Max(m, s)
				}
				o := out[b*a.BatchO+i*a.LDO+h*a.DV:][:a.DV]
				st := stats[2*((b*a.Heads+h)*a.Tq+i):]
				st[0] = m
				if len(js) == 0 {
					continue
				}
				var den float64
				for n, j := range js {
					w := math.Exp(ss[n] - m)
					den += w
					for d := range o {
						o[d] += w * float64(a.V[b*a.BatchV+j*a.LDV+g*a.DV+d])
					}
				}
				st[1] = den
				for d := range o {
					o[d] /= den
				}
			}
		}
	}
	return out, stats
}

// newRand returns the seeded generator of a test.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 2)) }

// snapshot keeps copies of the inputs of a call; check fails the test if
// any of them changed.
type snapshot struct {
	f [][]float32
	c [][]float32
	b [][]bool
	d [][]bool
	i [][]int32
	j [][]int32
}

func (s *snapshot) floats(xs ...[]float32) {
	for _, x := range xs {
		s.f = append(s.f, x)
		s.c = append(s.c, append([]float32(nil), x...))
	}
}

func (s *snapshot) bools(xs ...[]bool) {
	for _, x := range xs {
		s.b = append(s.b, x)
		s.d = append(s.d, append([]bool(nil), x...))
	}
}

func (s *snapshot) ints(xs ...[]int32) {
	for _, x := range xs {
		s.i = append(s.i, x)
		s.j = append(s.j, append([]int32(nil), x...))
	}
}

// check fails t if an input differs from its copy.
func (s *snapshot) check(t *testing.T) {
	t.Helper()
	for k := range s.f {
		if !testutil.SameBits(s.f[k], s.c[k]) {
			t.Errorf("float input %d modified", k)
		}
	}
	for k := range s.b {
		for i := range s.b[k] {
			if s.b[k][i] != s.d[k][i] {
				t.Errorf("bool input %d modified", k)
				break
			}
		}
	}
	for k := range s.i {
		for i := range s.i[k] {
			if s.i[k][i] != s.j[k][i] {
				t.Errorf("int input %d modified", k)
				break
			}
		}
	}
}
