package pure

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

// Accuracy of Exp, measured against float32(math.Exp(float64(x))), the
// correctly rounded result up to a rare double rounding.
//
// An exhaustive run over all 2^32 inputs (amd64, GOAMD64=v1 and v3, the
// latter with fused multiply-adds) measured:
//
//   - normal results: at most 1 ulp from the correctly rounded result (the
//     distance to the exact value is at most 0.990 ulp without FMA, 1.011
//     ulp with FMA); Exp's doc promises 2 ulp;
//   - subnormal results: |Exp(x) − e^x| ≤ 0.7503·2^−149;
//   - Exp returns 0 exactly where the rounded result is 0 (x ≤ expLo) and
//     +Inf exactly where it is +Inf (x ≥ expHi);
//   - Exp is non-decreasing.
//
// The bounds below are those measurements rounded up. The tests sweep the
// whole range with a stride plus dense windows around the boundaries.
const (
	expMaxULP = 1 // distance in ulps from the rounded result, normal results
	expMaxSub = 1 // |Exp(x) − e^x| in units of 2^−149, subnormal results
)

// ordKey maps float32 values to integers in the same order: −x ↦ −bits(x).
// ±0 both map to 0. fromOrdKey is its inverse (0 ↦ +0).
func ordKey(x float32) int64 {
	b := math.Float32bits(x)
	if b>>31 != 0 {
		return -int64(b &^ (1 << 31))
	}
	return int64(b)
}

func fromOrdKey(k int64) float32 {
	if k < 0 {
		return math.Float32frombits(uint32(-k) | 1<<31)
	}
	return math.Float32frombits(uint32(k))
}

// expChecker checks Exp on ascending runs of inputs and records the largest
// errors.
type expChecker struct {
	t        *testing.T
	fails    int
	count    int
	maxULP   uint32
	maxULPX  float32
	maxSub   float64
	maxSubX  float32
	prev     float32 // Exp of the previous input of this run
	havePrev bool
}

func (c *expChecker) errorf(format string, args ...any) {
	c.t.Helper()
	c.fails++
	if c.fails <= 10 {
		c.t.Errorf(format, args...)
	}
}

// run checks Exp at fromOrdKey(k) for k = lo, lo+step, … ≤ hi and that the
// results do not decrease along the run.
func (c *expChecker) run(lo, hi, step int64) {
	c.havePrev = false
	for k := lo; k <= hi; k += step {
		c.check(fromOrdKey(k))
	}
}

func (c *expChecker) check(x float32) {
	c.count++
	got := Exp(x)
	switch {
	case got != got:
		c.errorf("Exp(%v) = NaN", x)
		return
	case math.Signbit(float64(got)):
		c.errorf("Exp(%v) = %v, negative", x, got)
	}
	if c.havePrev && got < c.prev {
		c.errorf("Exp not monotone: Exp(%v) = %v < %v, the result for the previous input", x, got, c.prev)
	}
	c.prev, c.havePrev = got, true

	e := math.Exp(float64(x))
	want := float32(e)
	switch {
	case want == 0 || got == 0:
		if got != want {
			c.errorf("Exp(%v) = %v, want %v", x, got, want)
		}
	case math.IsInf(float64(want), 1) || math.IsInf(float64(got), 1):
		if got != want {
			c.errorf("Exp(%v) = %v, want %v", x, got, want)
		}
	case want < math.Float32frombits(1<<23): // subnormal
		d := math.Abs(float64(got)-e) / math.SmallestNonzeroFloat32
		if d > c.maxSub {
			c.maxSub, c.maxSubX = d, x
		}
		if d > expMaxSub {
			c.errorf("Exp(%v) = %v, want %v (exact %g): error %.4f·2^-149 > %d·2^-149", x, got, want, e, d, expMaxSub)
		}
	default:
		gb, wb := math.Float32bits(got), math.Float32bits(want)
		d := max(gb, wb) - min(gb, wb)
		if d > c.maxULP {
			c.maxULP, c.maxULPX = d, x
		}
		if d > expMaxULP {
			c.errorf("Exp(%v) = %v, want %v: %d ulp > %d ulp", x, got, want, d, expMaxULP)
		}
	}
}

func TestExpAccuracy(t *testing.T) {
	// A prime stride visits every residue of the low mantissa bits.
	stride := int64(257)
	if testing.Short() {
		stride = 4099
	}
	inf := float32(math.Inf(1))
	lnMinNormal := float32(math.Log(0x1p-126))

	type window struct {
		name   string
		center float32
		half   int64 // consecutive float32 values either side
	}
	windows := []window{
		{"zero", 0, 1 << 16}, // ±tiny subnormal x
		{"x=2^-24", 0x1p-24, 1 << 12},
		{"x=-2^-24", -0x1p-24, 1 << 12},
		{"x=-2^-25", -0x1p-25, 1 << 12},
		{"x=expHi", expHi, 1 << 14},
		{"x=ln(MinNormal)", lnMinNormal, 1 << 14},
		{"x=expLo", expLo, 1 << 14},
	}
	// Range reduction switches n at x = (n+½)·ln2, where |r| is largest.
	for n := -151; n <= 128; n++ {
		windows = append(windows, window{fmt.Sprintf("x=(%d+1/2)ln2", n), float32((float64(n) + 0.5) * math.Ln2), 64})
	}

	c := &expChecker{t: t}
	c.run(ordKey(-inf), ordKey(inf), stride)
	for _, w := range windows {
		k := ordKey(w.center)
		c.run(k-w.half, k+w.half, 1)
	}
	t.Logf("%d inputs: max %d ulp (normal) at x=%v, max %.4f·2^-149 (subnormal) at x=%v",
		c.count, c.maxULP, c.maxULPX, c.maxSub, c.maxSubX)
	if c.fails > 10 {
		t.Errorf("%d failures in all", c.fails)
	}
}

func TestExpSpecial(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		name string
		x    float32
		want float32 // compared bitwise
	}{
		{"x=-Inf", -inf, 0},
		{"x=+Inf", inf, inf},
		{"x=+0", 0, 1},
		{"x=-0", float32(math.Copysign(0, -1)), 1},
		{"x=+SmallestNonzero", math.SmallestNonzeroFloat32, 1},
		{"x=-SmallestNonzero", -math.SmallestNonzeroFloat32, 1},
		{"x=MaxFloat32", math.MaxFloat32, inf},
		{"x=-MaxFloat32", -math.MaxFloat32, 0},
		{"x=expHi", expHi, inf},
		{"x=expHi-1ulp", math.Nextafter32(expHi, 0), 3.4027985e+38},
		{"x=expLo", expLo, 0},
		{"x=expLo+1ulp", math.Nextafter32(expLo, 0), math.SmallestNonzeroFloat32},
		{"x=expLo-1ulp", math.Nextafter32(expLo, -inf), 0},
		{"x=-200", -200, 0},
		{"x=200", 200, inf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Exp(tt.x); math.Float32bits(got) != math.Float32bits(tt.want) {
				t.Errorf("Exp(%v) = %v (%#08x), want %v (%#08x)", tt.x, got, math.Float32bits(got), tt.want, math.Float32bits(tt.want))
			}
		})
	}
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff} {
		t.Run(fmt.Sprintf("x=NaN%#08x", bits), func(t *testing.T) {
			x := math.Float32frombits(bits)
			if got := Exp(x); got == got {
				t.Errorf("Exp(NaN %#08x) = %v, want NaN", bits, got)
			}
		})
	}
}

// TestExpRandom checks random inputs in the range softmax uses, v − max ≤ 0,
// as a quick second opinion on the strided sweep.
func TestExpRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := &expChecker{t: t}
	for range 1 << 16 {
		c.havePrev = false
		c.check(float32(-rng.ExpFloat64() * 8))
	}
	if c.maxULP > expMaxULP {
		t.Errorf("max %d ulp", c.maxULP)
	}
}

func BenchmarkExp(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	xs := make([]float32, 1024)
	for i := range xs {
		xs[i] = float32(-rng.ExpFloat64() * 4) // scores minus their maximum
	}
	// Two loops, not a function value, so that Exp can be inlined as in
	// SoftmaxRows.
	b.Run("impl=pure", func(b *testing.B) {
		var sink float32
		for b.Loop() {
			for _, x := range xs {
				sink += Exp(x)
			}
		}
		reportExp(b, sink, len(xs))
	})
	b.Run("impl=math64", func(b *testing.B) {
		var sink float32
		for b.Loop() {
			for _, x := range xs {
				sink += float32(math.Exp(float64(x)))
			}
		}
		reportExp(b, sink, len(xs))
	})
}

func reportExp(b *testing.B, sink float32, n int) {
	if sink != sink {
		b.Fatal("NaN")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/exp")
}

// TestExpProb checks the row pass's exponential: Exp's bits from ProbLo up,
// 0 below it (no subnormal result for any argument), NaN kept, and the
// threshold the tests' references use.
func TestExpProb(t *testing.T) {
	if ProbLo != testutil.ProbLo {
		t.Fatalf("ProbLo = %v, testutil.ProbLo = %v", float32(ProbLo), testutil.ProbLo)
	}
	if e := ExpProb(ProbLo); e < 0x1p-126 {
		t.Fatalf("ExpProb(ProbLo) = %v is not a normal float32", e)
	}
	// Every float32 in [−110, −80], and a sweep of [−80, 0].
	lo, hi := math.Float32bits(-80), math.Float32bits(-110)
	for b := lo; b <= hi; b++ {
		checkExpProb(t, math.Float32frombits(b))
	}
	for x := float32(-80); x <= 0; x += 1.0 / 1024 {
		checkExpProb(t, x)
	}
	for _, x := range []float32{float32(math.Inf(-1)), -1e30, 0} {
		checkExpProb(t, x)
	}
	if nan := float32(math.NaN()); ExpProb(nan) == ExpProb(nan) {
		t.Fatalf("ExpProb(NaN) = %v, want NaN", ExpProb(nan))
	}
}

func checkExpProb(t *testing.T, x float32) {
	t.Helper()
	got := ExpProb(x)
	switch {
	case x < ProbLo:
		if math.Float32bits(got) != 0 {
			t.Fatalf("ExpProb(%v) = %v, want 0 below ProbLo", x, got)
		}
	case math.Float32bits(got) != math.Float32bits(Exp(x)):
		t.Fatalf("ExpProb(%v) = %v, want Exp's %v", x, got, Exp(x))
	case got < 0x1p-126:
		t.Fatalf("ExpProb(%v) = %v is subnormal", x, got)
	}
}
