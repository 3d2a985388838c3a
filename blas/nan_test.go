package blas

import (
	"fmt"
	"math"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

// The non-finite rule of the row pass and the attention core (rows*.c, attend.c,
// pure.SoftmaxRows): the mask alone decides which keys a row sees; a
// non-finite visible score makes its row NaN (NaN on the visible columns,
// 0 on the masked ones); a masked key's scores and value rows, whatever they
// hold, change nothing; a visible value row's NaN reaches every row that
// sees it, probability 0 (underflow) included, as 0·NaN = NaN.

var nan32 = float32(math.NaN())

// TestSoftmaxRowsNonFinite runs blocks with NaN, +Inf and −Inf scores on
// masked columns (past the causal limit, Keep false, bias −Inf) and on one
// visible column of one row, through every variant: the masked ones change
// no bit of S, Max, Sum or Corr against the same block with zeros there,
// and the visible one makes its row, and only its row, NaN, in this block
// and the next.
func TestSoftmaxRowsNonFinite(t *testing.T) {
	forVariants(t, func(t *testing.T, be Backend) {
		for _, n := range []int{5, 16, 37, 77} {
			for _, bad := range []float32{nan32, float32(math.Inf(1)), float32(math.Inf(-1))} {
				t.Run(fmt.Sprintf("N=%d/value=%v", n, bad), func(t *testing.T) {
					testSoftmaxRowsNonFinite(t, be, n, bad)
				})
			}
		}
	})
}

func testSoftmaxRowsNonFinite(t *testing.T, be Backend, n int, bad float32) {
	const m = 4
	rng := newRand(uint64(n))
	lds := n + 3
	keep := make([]bool, m*n)
	bias := make([]float32, m*n)
	testutil.Fill(rng, bias, -1, 1)
	for i := range keep {
		keep[i] = rng.IntN(4) != 0
		if rng.IntN(5) == 0 {
			bias[i] = float32(math.Inf(-1))
		}
	}
	scores := make([]float32, m*lds)
	testutil.Fill(rng, scores, -3, 3)
	const lim0 = 3 // row r sees columns < 3+r
	// visible reports whether column j of row r is seen.
	visible := func(r, j int) bool {
		return j < lim0+r && keep[r*n+j] && !math.IsInf(float64(bias[r*n+j]), -1)
	}
	// run runs two blocks from a fresh state, S of the first block set by
	// put, and returns S of both and the state after each.
	run := func(put func(s []float32)) (out [2][]float32, st [2][3][]float32) {
		mx, sum, corr := make([]float32, m), make([]float32, m), make([]float32, m)
		for r := range m {
			mx[r] = float32(math.Inf(-1))
		}
		for blk := range 2 {
			s := append([]float32(nil), scores...)
			if blk == 0 {
				put(s)
			}
			be.SoftmaxRows(&Rows{M: m, N: n, S: s, LDS: lds, Bias: bias, LDBias: n, Keep: keep, LDKeep: n,
				Causal: true, Lim0: lim0, Max: mx, Sum: sum, Corr: corr})
			out[blk] = s
			st[blk] = [3][]float32{append([]float32(nil), mx...), append([]float32(nil), sum...), append([]float32(nil), corr...)}
		}
		return out, st
	}
	zero := func(v float32) func(s []float32) {
		return func(s []float32) {
			for r := range m {
				for j := range n {
					if !visible(r, j) {
						s[r*lds+j] = v
					}
				}
			}
		}
	}
	want, wantSt := run(zero(0))
	for blk := range 2 {
		for k, v := range want[blk] {
			if v != v || math.IsInf(float64(v), 0) {
				t.Fatalf("block %d: S[%d] = %v from finite scores, want it finite", blk, k, v)
			}
		}
		for k := range 3 {
			for r, v := range wantSt[blk][k] {
				if v != v || (k > 0 && math.IsInf(float64(v), 0)) {
					t.Fatalf("block %d: state %d of row %d = %v from finite scores", blk, k, r, v)
				}
			}
		}
	}
	got, gotSt := run(zero(bad))
	for blk := range 2 {
		if !testutil.SameBits(got[blk], want[blk]) {
			t.Fatalf("block %d: masked %v scores change S: %v, want %v", blk, bad, got[blk], want[blk])
		}
		for k := range 3 {
			if !testutil.SameBits(gotSt[blk][k], wantSt[blk][k]) {
				t.Fatalf("block %d: masked %v scores change the state: %v, want %v", blk, bad, gotSt[blk], wantSt[blk])
			}
		}
	}

	// One visible non-finite score, in row 2.
	const row = 2
	col := -1
	for j := range n {
		if visible(row, j) {
			col = j
		}
	}
	if col < 0 {
		t.Fatal("row 2 sees nothing: change the seed")
	}
	got, gotSt = run(func(s []float32) { zero(bad)(s); s[row*lds+col] = bad })
	for blk := range 2 {
		for r := range m {
			for j := range lds {
				g, w := got[blk][r*lds+j], want[blk][r*lds+j]
				switch {
				case r != row || j >= n:
					if math.Float32bits(g) != math.Float32bits(w) {
						t.Fatalf("block %d: S[%d,%d] = %v, want %v: only row %d is NaN", blk, r, j, g, w, row)
					}
				case visible(r, j) || blk == 1 && j < lim0+r && keep[r*n+j] && !math.IsInf(float64(bias[r*n+j]), -1):
					if g == g {
						t.Fatalf("block %d: S[%d,%d] = %v, want NaN", blk, r, j, g)
					}
				default:
					if g != 0 || math.Signbit(float64(g)) {
						t.Fatalf("block %d: masked S[%d,%d] = %v in a NaN row, want 0", blk, r, j, g)
					}
				}
			}
			for k, name := range []string{"Max", "Sum", "Corr"} {
				g, w := gotSt[blk][k][r], wantSt[blk][k][r]
				if r == row && g == g {
					t.Fatalf("block %d: %s[%d] = %v, want NaN", blk, name, r, g)
				}
				if r != row && math.Float32bits(g) != math.Float32bits(w) {
					t.Fatalf("block %d: %s[%d] = %v, want %v", blk, name, r, g, w)
				}
			}
		}
	}
}

// attnSees reports whether query i of batch b, head h sees key j in a.
func attnSees(a *Attention, b, h, i, j int) bool {
	switch {
	case a.KeyLen != nil && j >= int(a.KeyLen[b]):
		return false
	case a.Causal && j > i+a.CausalOffset:
		return false
	case a.Window > 0 && j <= i+a.CausalOffset-a.Window:
		return false
	case a.Keep != nil && !a.Keep[b*a.KeepStride[0]+h*a.KeepStride[1]+i*a.KeepStride[2]+j]:
		return false
	case a.Bias != nil && math.IsInf(float64(a.Bias[b*a.BiasStride[0]+h*a.BiasStride[1]+i*a.BiasStride[2]+j]), -1):
		return false
	}
	return true
}

// TestAttendNonFinite puts a non-finite value into one key, one value or one
// query of the attention cases with masks, on every variant, and compares
// the output with the same call with a zero there: an output element the
// rule says the value reaches is NaN, every other one has the bits of the
// zeroed call — except, for a value, the other columns of a reached row,
// which the careful pass sums in another order (held to the tolerance of
// TestAttend). A value row whose probability underflows to 0 still reaches
// the rows that see it.
func TestAttendNonFinite(t *testing.T) {
	var cases []attnCase
	for _, tc := range attnCases() {
		if tc.tk > 0 && tc.dk > 0 && tc.dv > 0 {
			cases = append(cases, tc)
		}
	}
	forVariants(t, func(t *testing.T, be Backend) {
		for _, tc := range cases {
			for _, what := range []string{"key", "value", "query", "value-underflow"} {
				for _, bad := range []float32{nan32, float32(math.Inf(1))} {
					t.Run(fmt.Sprintf("%s/%s=%v", tc.name, what, bad), func(t *testing.T) {
						testAttendNonFinite(t, be, tc, what, bad)
					})
				}
			}
		}
	})
}

func testAttendNonFinite(t *testing.T, be Backend, tc attnCase, what string, bad float32) {
	base, owned, _ := tc.attention(uint64(len(tc.name)*31 + tc.tk))
	group := tc.h / tc.kvh
	b, g, i0, h0 := tc.b-1, tc.kvh-1, tc.tq-1, tc.h-1
	j := tc.tk / 2
	if tc.keyLen != nil {
		j = min(j, max(int(tc.keyLen[b])-1, 0))
	}
	d0 := tc.dv / 2
	if what == "value-underflow" {
		// Key j seen by every row of batch b, far below its rows' maximum:
		// its probability is exactly 0.
		if base.Bias == nil || base.BiasStride[0] == 0 && b > 0 {
			t.Skip("needs a bias of its own for the last batch")
		}
		for h := range tc.h {
			for i := range tc.tq {
				k := b*base.BiasStride[0] + h*base.BiasStride[1] + i*base.BiasStride[2] + j
				if !math.IsInf(float64(base.Bias[k]), -1) {
					base.Bias[k] = -300
				}
			}
		}
	}
	// at returns the element the bad value goes to in a.
	at := func(a *Attention) *float32 {
		switch what {
		case "key":
			return &a.K[b*a.BatchK+j*a.LDK+g*a.DK+tc.dk/2]
		case "query":
			return &a.Q[b*a.BatchQ+i0*a.LDQ+h0*a.DK+tc.dk/2]
		}
		return &a.V[b*a.BatchV+j*a.LDV+g*a.DV+d0]
	}
	run := func(v float32) []float32 {
		a := *base
		a.Q, a.K, a.V = append([]float32(nil), base.Q...), append([]float32(nil), base.K...), append([]float32(nil), base.V...)
		a.O = append([]float32(nil), base.O...)
		*at(&a) = v
		if tc.packKeys {
			be.PackKeys(&a)
		}
		tasks := a.Tasks()
		for c := range tc.chunks {
			scratch := make([]float32, a.ScratchLen())
			for i := range scratch {
				scratch[i] = nan32
			}
			be.Attend(&a, c*tasks/tc.chunks, (c+1)*tasks/tc.chunks, scratch)
		}
		return a.O
	}
	want, got := run(0), run(bad)
	for k, v := range want {
		if owned[k] && (v != v || math.IsInf(float64(v), 0)) {
			t.Fatalf("O[%d] = %v with finite inputs, want it finite", k, v)
		}
	}
	// reached reports whether output row (b, i, h) is reached, and in which
	// columns (all, or d0 alone for a value).
	reached := func(bb, i, h int) bool {
		if bb != b {
			return false
		}
		switch what {
		case "query":
			if i != i0 || h != h0 {
				return false
			}
			for k := range tc.tk {
				if attnSees(base, bb, h, i, k) {
					return true
				}
			}
			return false
		}
		return h/group == g && attnSees(base, bb, h, i, j)
	}
	n := 0
	for bb := range tc.b {
		for i := range tc.tq {
			for h := range tc.h {
				row := bb*base.BatchO + i*base.LDO + h*tc.dv
				hit := reached(bb, i, h)
				if hit {
					n++
				}
				for d := range tc.dv {
					g, w := got[row+d], want[row+d]
					switch {
					case hit && (what == "key" || what == "query" || d == d0):
						if g == g && !(what != "key" && what != "query" && bad > 0 && math.IsInf(float64(g), 1)) {
							t.Fatalf("O[b=%d,i=%d,h=%d,%d] = %v, want non-finite (NaN for NaN)", bb, i, h, d, g)
						}
						if bad != bad && g == g {
							t.Fatalf("O[b=%d,i=%d,h=%d,%d] = %v, want NaN", bb, i, h, d, g)
						}
					case hit:
						if !(math.Abs(float64(g-w)) <= 1e-5) {
							t.Fatalf("O[b=%d,i=%d,h=%d,%d] = %v, want %v ± 1e-5", bb, i, h, d, g, w)
						}
					case math.Float32bits(g) != math.Float32bits(w):
						t.Fatalf("O[b=%d,i=%d,h=%d,%d] = %v, want %v: the %s does not reach it", bb, i, h, d, g, w, what)
					}
				}
			}
		}
	}
	for k, o := range owned {
		if !o && !testutil.IsGuard(got[k]) {
			t.Fatalf("O[%d] = %v outside the heads, want it untouched", k, got[k])
		}
	}
	if n == 0 && what != "query" {
		t.Logf("no row sees key %d", j)
	}
}
