package pure

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

type biasKind int

const (
	biasNone      biasKind = iota
	biasBroadcast          // one row for every row, ldbias = 0
	biasFull               // m rows, ldbias > row width; the gaps hold NaN
	biasNegInf             // biasFull, a fifth of the cells and every fourth row −Inf
)

type keepKind int

const (
	keepNone       keepKind = iota
	keepRandom              // m rows, ldkeep > row width, 70% true
	keepFalseRows           // keepRandom, every third row all false
	keepBroadcast           // one row for every row, ldkeep = 0
	keepAllFalse            // every score masked
	keepFalseBlock          // keepRandom, the whole second block false
)

// softmaxCase is one SoftmaxRows configuration. Each row of scores is
// blocks·n wide and is passed in blocks of n columns, carrying the running
// state from block to block, the way attention walks its keys.
type softmaxCase struct {
	name   string
	blocks int // 0 means 1
	pad    int // lds = n + pad
	bias   biasKind
	keep   keepKind
	causal bool
	lim0   func(m, width int) int // with causal; width = blocks·n
	scale  float32                // scores uniform in [−scale, scale); 0 means 4
}

var softmaxCases = []softmaxCase{
	{name: "plain"},
	{name: "lds>n", pad: 5},
	{name: "bias=broadcast", bias: biasBroadcast},
	{name: "bias=ldbias>n", bias: biasFull},
	{name: "bias=-Inf", bias: biasNegInf},
	{name: "keep=random", keep: keepRandom},
	{name: "keep=falseRows", keep: keepFalseRows},
	{name: "keep=broadcast", keep: keepBroadcast},
	{name: "keep=allFalse", keep: keepAllFalse, pad: 2},
	{name: "causal/lim0<0", causal: true, lim0: func(m, w int) int { return -3 }},
	{name: "causal/lim0=inside", causal: true, lim0: func(m, w int) int { return w / 2 }},
	{name: "causal/lim0>n", causal: true, lim0: func(m, w int) int { return w + 4 }},
	{name: "causal/lim0<-m", causal: true, lim0: func(m, w int) int { return -m - 1 }, bias: biasFull},
	{name: "causal/bias=-Inf/keep=falseRows", causal: true, lim0: func(m, w int) int { return 1 }, bias: biasNegInf, keep: keepFalseRows, pad: 1},
	{name: "blocks=2/bias/keep/causal", blocks: 2, pad: 3, bias: biasFull, keep: keepRandom, causal: true, lim0: func(m, w int) int { return w / 2 }},
	{name: "blocks=3/bias=-Inf/keep=falseRows", blocks: 3, bias: biasNegInf, keep: keepFalseRows},
	{name: "blocks=3/keep=falseBlock", blocks: 3, pad: 1, keep: keepFalseBlock},
	{name: "blocks=3/scores=60/causal", blocks: 3, pad: 1, bias: biasBroadcast, causal: true, lim0: func(m, w int) int { return w / 3 }, scale: 60},
	{name: "blocks=3/causal/lim0<0", blocks: 3, keep: keepBroadcast, causal: true, lim0: func(m, w int) int { return -5 }},
}

func TestSoftmaxRows(t *testing.T) {
	dims := []int{0, 1, 7, 16, 77, 130}
	for _, tc := range softmaxCases {
		for _, m := range dims {
			for _, n := range dims {
				t.Run(fmt.Sprintf("%s/m=%d/n=%d", tc.name, m, n), func(t *testing.T) {
					testSoftmaxRows(t, tc, m, n)
				})
			}
		}
	}
}

func testSoftmaxRows(t *testing.T, tc softmaxCase, m, n int) {
	rng := rand.New(rand.NewPCG(1, 2))
	negInf := math.Inf(-1)
	blocks := max(tc.blocks, 1)
	w := blocks * n // width of a whole row
	lds := n + tc.pad
	scale := tc.scale
	if scale == 0 {
		scale = 4
	}

	// Whole rows of scores, m×w, split into blocks below.
	scores := make([]float32, m*w)
	for i := range scores {
		scores[i] = scale * (2*rng.Float32() - 1)
	}

	var bias []float32
	ldbias := 0
	switch tc.bias {
	case biasBroadcast:
		bias = make([]float32, w)
		for i := range bias {
			bias[i] = 4*rng.Float32() - 2
		}
	case biasFull, biasNegInf:
		ldbias = w + 5
		bias = make([]float32, m*ldbias)
		for i := range bias {
			r, j := i/ldbias, i%ldbias
			switch {
			case j >= w:
				bias[i] = float32(math.NaN()) // never read
			case tc.bias == biasNegInf && (r%4 == 1 || rng.IntN(5) == 0):
				bias[i] = float32(negInf)
			default:
				bias[i] = 4*rng.Float32() - 2
			}
		}
	}

	var keep []bool
	ldkeep := 0
	switch tc.keep {
	case keepBroadcast:
		keep = make([]bool, w)
		for i := range keep {
			keep[i] = rng.IntN(10) < 7
		}
	case keepRandom, keepFalseRows, keepAllFalse, keepFalseBlock:
		ldkeep = w + 3
		keep = make([]bool, m*ldkeep)
		for i := range keep {
			r, j := i/ldkeep, i%ldkeep
			switch {
			case tc.keep == keepAllFalse,
				tc.keep == keepFalseRows && r%3 == 2,
				tc.keep == keepFalseBlock && j/max(n, 1) == 1:
			default:
				keep[i] = rng.IntN(10) < 7
			}
		}
	}

	lim0 := 0
	if tc.causal {
		lim0 = tc.lim0(m, w)
	}
	biasIn, keepIn := slices.Clone(bias), slices.Clone(keep)

	// Running state, with guard cells past row m.
	mx := make([]float32, m+testutil.GuardLen)
	sum := make([]float32, m+testutil.GuardLen)
	corr := make([]float32, m+testutil.GuardLen)
	for r := range mx {
		mx[r], sum[r], corr[r] = testutil.Guard, testutil.Guard, testutil.Guard
		if r < m {
			mx[r], sum[r], corr[r] = float32(negInf), 0, 42 // corr is output only
		}
	}

	// out accumulates Σ corr-rescaled blocks of s, as a caller's output
	// rows would with V = identity; after the last block, out/sum must be a
	// single softmax over the whole row.
	out := make([]float64, m*w)

	for blk := range blocks {
		g := testutil.NewMatrix(m, n, lds, testutil.GuardLen)
		s := g.Data()
		for r := range m {
			copy(s[r*lds:r*lds+n], scores[r*w+blk*n:])
		}
		var bb []float32
		if bias != nil {
			bb = bias[min(blk*n, len(bias)):] // empty when m = 0
		}
		var kb []bool
		if keep != nil {
			kb = keep[min(blk*n, len(keep)):]
		}
		mOld, sumOld := slices.Clone(mx[:m]), slices.Clone(sum[:m])

		SoftmaxRows(m, n, s, lds, bb, ldbias, kb, ldkeep, tc.causal, lim0-blk*n, mx, sum, corr)

		g.Check(t, fmt.Sprintf("block %d: s", blk))
		for r := range m {
			lim := n
			if tc.causal {
				lim = min(max(lim0-blk*n+r, 0), n)
			}
			var br []float32
			if bb != nil {
				br = bb[r*ldbias : r*ldbias+n]
			}
			var kr []bool
			if kb != nil {
				kr = kb[r*ldkeep : r*ldkeep+n]
			}
			p, mNew, sumW, corrW, vmax := softmaxRowRef64(scores[r*w+blk*n:][:n], br, kr, lim, float64(mOld[r]), float64(sumOld[r]))
			row := s[r*lds : r*lds+n]
			where := fmt.Sprintf("block %d row %d", blk, r)
			for j, v := range row {
				if v != v {
					t.Fatalf("%s: s[%d] = NaN", where, j)
				}
			}
			if mx[r] != mx[r] || sum[r] != sum[r] || corr[r] != corr[r] {
				t.Fatalf("%s: NaN in state: mx=%v sum=%v corr=%v", where, mx[r], sum[r], corr[r])
			}
			if math.IsInf(mNew, -1) {
				// No valid score so far: s = 0, corr = 1, sum and mx kept.
				for j, v := range row {
					if math.Float32bits(v) != 0 {
						t.Fatalf("%s: all masked, s[%d] = %v, want 0", where, j, v)
					}
				}
				if corr[r] != 1 || math.Float32bits(sum[r]) != math.Float32bits(sumOld[r]) || !math.IsInf(float64(mx[r]), -1) {
					t.Fatalf("%s: all masked: corr=%v sum=%v mx=%v, want 1, %v, -Inf", where, corr[r], sum[r], mx[r], sumOld[r])
				}
				continue
			}
			// v_j is rounded to float32 before it is exponentiated, and Exp
			// is within 1 ulp; twice that, relative to the result.
			tol := 0x1p-22 * (1 + vmax + math.Abs(mNew))
			for j, v := range row {
				want := p[j]
				if want == 0 { // masked: exactly 0
					if math.Float32bits(v) != 0 {
						t.Fatalf("%s: masked s[%d] = %v, want 0", where, j, v)
					}
					continue
				}
				if d := math.Abs(float64(v) - want); d > tol*want+testutil.ProbFloor {
					t.Fatalf("%s: s[%d] = %v, want %v (rel error %.3g > %.3g)", where, j, v, want, d/want, tol)
				}
			}
			if d := math.Abs(float64(mx[r]) - mNew); d > 0x1p-23*math.Abs(mNew) {
				t.Fatalf("%s: mx = %v, want %v", where, mx[r], mNew)
			}
			if math.IsInf(float64(mOld[r]), -1) {
				if corr[r] != 0 {
					t.Fatalf("%s: first valid block: corr = %v, want 0", where, corr[r])
				}
			} else if d := math.Abs(float64(corr[r]) - corrW); d > 0x1p-22*(1+math.Abs(float64(mOld[r]))+math.Abs(mNew))*corrW+testutil.ProbFloor {
				t.Fatalf("%s: corr = %v, want %v", where, corr[r], corrW)
			}
			if d := math.Abs(float64(sum[r]) - sumW); d > (tol+float64(n+2)*0x1p-23)*sumW {
				t.Fatalf("%s: sum = %v, want %v (rel error %.3g)", where, sum[r], sumW, d/sumW)
			}
		}
		for r := range m {
			o := out[r*w : r*w+w]
			for j := range blk * n {
				o[j] *= float64(corr[r])
			}
			for j, v := range s[r*lds : r*lds+n] {
				o[blk*n+j] = float64(v)
			}
		}
	}

	for _, st := range []struct {
		name string
		v    []float32
	}{{"mx", mx}, {"sum", sum}, {"corr", corr}} {
		for _, v := range st.v[m:] {
			if !testutil.IsGuard(v) {
				t.Errorf("%s written past row m: %v", st.name, st.v[m:])
				break
			}
		}
	}
	if !testutil.SameBits(bias, biasIn) || !slices.Equal(keep, keepIn) {
		t.Errorf("bias or keep modified")
	}

	// The blocks combined are one softmax over the whole row.
	for r := range m {
		lim := w
		if tc.causal {
			lim = min(max(lim0+r, 0), w)
		}
		var br []float32
		if bias != nil {
			br = bias[r*ldbias : r*ldbias+w]
		}
		var kr []bool
		if keep != nil {
			kr = keep[r*ldkeep : r*ldkeep+w]
		}
		p, mW, sumW, _, vmax := softmaxRowRef64(scores[r*w:][:w], br, kr, lim, negInf, 0)
		o := out[r*w : r*w+w]
		where := fmt.Sprintf("whole row %d", r)
		if sumW == 0 {
			if sum[r] != 0 || !math.IsInf(float64(mx[r]), -1) {
				t.Fatalf("%s: no valid score: sum=%v mx=%v, want 0, -Inf", where, sum[r], mx[r])
			}
			for j, v := range o {
				if v != 0 {
					t.Fatalf("%s: no valid score: combined s[%d] = %v, want 0", where, j, v)
				}
			}
			continue
		}
		if d := math.Abs(float64(mx[r]) - mW); d > 0x1p-23*math.Abs(mW) {
			t.Fatalf("%s: mx = %v, want %v", where, mx[r], mW)
		}
		tol := float64(blocks+1)*0x1p-22*(1+vmax+math.Abs(mW)) + float64(w+2*blocks)*0x1p-23
		if d := math.Abs(float64(sum[r]) - sumW); d > tol*sumW {
			t.Fatalf("%s: sum = %v, want %v (rel error %.3g > %.3g)", where, sum[r], sumW, d/sumW, tol)
		}
		for j := range o {
			got, want := o[j]/float64(sum[r]), p[j]/sumW
			if want == 0 {
				// Masked, or flushed in one pass: the blocks flush each
				// block's probabilities against its own maximum, so a
				// later correction may leave one below the floor.
				if got > testutil.ProbFloor {
					t.Fatalf("%s: masked or flushed P[%d] = %v, want 0", where, j, got)
				}
				continue
			}
			if d := math.Abs(got - want); d > tol*want+testutil.ProbFloor {
				t.Fatalf("%s: P[%d] = %v, want %v (rel error %.3g > %.3g)", where, j, got, want, d/want, tol)
			}
		}
	}
}

func TestScaleRows(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	tests := []struct {
		name   string
		f      []float32 // factor of row r is f[r%len(f)]
		values []float32 // cell (r, j) starts as values[(r+j)%len(values)]; nil: random
	}{
		{"f=0/row=NaN", []float32{0}, []float32{nan, inf, -inf, testutil.Guard}},
		{"f=0/row=finite", []float32{0}, nil},
		{"f=1/row=NaN", []float32{1}, []float32{nan, -inf, 3, testutil.Guard, float32(math.Copysign(0, -1))}},
		{"f=1/row=finite", []float32{1}, nil},
		{"f=0.7", []float32{0.7}, nil},
		{"f=-2.5", []float32{-2.5}, []float32{1, -inf, 0x1p-149, math.MaxFloat32, 0.3}},
		{"f=tiny", []float32{0x1p-140}, nil},
		{"f=mixed", []float32{0, 1, 0.7, -3, 1e-20, 1, 0}, []float32{nan, 2, inf, -1e30}},
	}
	dims := []struct{ m, n, pad int }{
		{0, 0, 0}, {0, 5, 1}, {3, 0, 2}, {1, 1, 0}, {7, 16, 3}, {16, 7, 0}, {77, 130, 5},
	}
	for _, tc := range tests {
		for _, d := range dims {
			t.Run(fmt.Sprintf("%s/m=%d/n=%d/ldc=%d", tc.name, d.m, d.n, d.n+d.pad), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(1, 2))
				m, n, ldc := d.m, d.n, d.n+d.pad
				g := testutil.NewMatrix(m, n, ldc, testutil.GuardLen)
				c := g.Data()
				for r := range m {
					for j := range n {
						if tc.values == nil {
							c[r*ldc+j] = 8*rng.Float32() - 4
						} else {
							c[r*ldc+j] = tc.values[(r+j)%len(tc.values)]
						}
					}
				}
				f := make([]float32, m)
				for r := range f {
					f[r] = tc.f[r%len(tc.f)]
				}
				c0, f0 := slices.Clone(c), slices.Clone(f)

				ScaleRows(m, n, c, ldc, f)

				g.Check(t, "c")
				if !testutil.SameBits(f, f0) {
					t.Errorf("f modified")
				}
				for r := range m {
					for j := range n {
						got, x := c[r*ldc+j], c0[r*ldc+j]
						var ok bool
						switch f[r] {
						case 0: // exact +0, whatever x was
							ok = math.Float32bits(got) == 0
						case 1: // untouched
							ok = math.Float32bits(got) == math.Float32bits(x)
						default:
							want := x * f[r]
							ok = got == want || (got != got && want != want)
						}
						if !ok {
							t.Fatalf("row %d (f=%v) col %d: %v → %v", r, f[r], j, x, got)
						}
					}
				}
			})
		}
	}
}
