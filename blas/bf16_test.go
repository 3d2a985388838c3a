package blas

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xattn/xattn/pure"
)

// This file tests the BF16 products: the conversions of every kernel against
// a rounding reference computed in float64, every kernel this CPU runs
// against the float64 product of the rounded operands (tight) and of the
// operands as given (the bf16 bound), the packed layout's views, errors,
// allocations and concurrent use.

// bf16Ref returns the bf16 bits nearest to f, ties to the even one, from the
// float64 values of the two candidates around f: an independent statement of
// the rounding pure.BF16Bits implements (subnormals to a signed zero, NaN
// quieted, overflow to ±Inf as IEEE rounding would).
func bf16Ref(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	switch {
	case math.IsNaN(float64(f)):
		return uint16(u>>16) | 0x40
	case math.IsInf(float64(f), 0):
		return uint16(u >> 16)
	case u&0x7f800000 == 0:
		return sign
	}
	x := math.Abs(float64(f))
	lo := uint16(u>>16) & 0x7fff // truncation: the candidate below |f|
	val := func(h uint16) float64 {
		if h == 0x7f80 { // the next candidate after the largest finite value
			return math.Ldexp(1, 128)
		}
		return float64(math.Float32frombits(uint32(h) << 16))
	}
	dl, dh := x-val(lo), val(lo+1)-x
	switch {
	case dl < dh, dl == dh && lo&1 == 0:
		return sign | lo
	}
	return sign | (lo + 1)
}

// bf16Patterns returns float32 bit patterns for the conversion tests: every
// upper half with lower halves at the tie, around it and at the ends, and a
// contiguous run of 2^20 patterns from a normal value.
func bf16Patterns() []float32 {
	lows := []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x4000, 0xc000, 0x1234}
	var out []float32
	for hi := uint32(0); hi < 1<<16; hi++ {
		for _, lo := range lows {
			out = append(out, math.Float32frombits(hi<<16|lo))
		}
	}
	for u := uint32(0x3f7f0000); u < 0x3f7f0000+1<<20; u++ {
		out = append(out, math.Float32frombits(u))
	}
	return out
}

// forBF16Kernels runs f for every BF16 kernel, skipping, with the reason,
// those this binary or CPU cannot run.
func forBF16Kernels(t *testing.T, f func(t *testing.T, kn BF16Kernel)) {
	for id, name := range bf16Names {
		t.Run("kernel="+name, func(t *testing.T) {
			kn, err := BF16KernelNamed(name)
			if err != nil {
				t.Skipf("skipped: %v", err)
			}
			if kn.id != id {
				t.Fatalf("BF16KernelNamed(%q) is kernel %d, want %d", name, kn.id, id)
			}
			f(t, kn)
		})
	}
}

func TestBF16Round(t *testing.T) {
	src := bf16Patterns()
	want := make([]uint16, len(src))
	for i, f := range src {
		want[i] = bf16Ref(f)
	}
	got := make([]uint16, len(src))
	forBF16Kernels(t, func(t *testing.T, kn BF16Kernel) {
		clear(got)
		bf16Round(kn.id, got, src)
		bad := 0
		for i := range src {
			if got[i] != want[i] {
				if bad++; bad <= 5 {
					t.Errorf("bf16(%#08x) = %#04x, want %#04x", math.Float32bits(src[i]), got[i], want[i])
				}
			}
		}
		if bad > 0 {
			t.Errorf("%d of %d patterns wrong", bad, len(src))
		}
	})
}

// bf16Case is one product of the kernel tests.
type bf16Case struct {
	m, n, k     int
	alpha, beta float32
	bias        bool
	j0, w       int // a view of columns j0 … j0+w−1 of a k×(j0+w+extra) matrix when w > 0
}

func (c bf16Case) String() string {
	s := fmt.Sprintf("m=%d/n=%d/k=%d/alpha=%g/beta=%g/bias=%v", c.m, c.n, c.k, c.alpha, c.beta, c.bias)
	if c.w > 0 {
		s += fmt.Sprintf("/cols=%d+%d", c.j0, c.w)
	}
	return s
}

func bf16Cases(short bool) []bf16Case {
	small := []int{1, 7, 16, 31, 33, 40, 64, 77}
	var cs []bf16Case
	for _, m := range small {
		for _, n := range small {
			for _, k := range small {
				// alpha, beta and bias cycle with the shape, so that every
				// combination meets many shapes.
				i := len(cs)
				cs = append(cs, bf16Case{m: m, n: n, k: k, alpha: []float32{1, 0.5, -2}[i%3],
					beta: []float32{0, 1, 0.25}[i/3%3], bias: i/9%2 == 0})
			}
		}
	}
	big := []bf16Case{
		{m: 320, n: 320, k: 320, alpha: 1}, {m: 320, n: 320, k: 320, alpha: 1, beta: 1, bias: true},
		{m: 64, n: 64, k: 768, alpha: 1, bias: true}, {m: 77, n: 768, k: 40, alpha: 1, beta: 1},
		{m: 33, n: 40, k: 768, alpha: 0.5, beta: 0.25, bias: true}, {m: 768, n: 77, k: 64, alpha: 1, bias: true},
		{m: 96, n: 64, k: 1100, alpha: 1, beta: 1}, {m: 96, n: 96, k: 1100, alpha: 1, bias: true},
		{m: 10, n: 1536, k: 512, alpha: 1, bias: true},
	}
	if !short {
		big = append(big, bf16Case{m: 768, n: 320, k: 768, alpha: 1, bias: true},
			bf16Case{m: 320, n: 768, k: 320, alpha: 0.125, beta: 1, bias: true})
	}
	views := []bf16Case{
		{m: 40, n: 0, k: 64, alpha: 1, bias: true, j0: 16, w: 40},
		{m: 33, k: 77, alpha: 1, beta: 1, j0: 32, w: 45},
		{m: 64, k: 320, alpha: 1, bias: true, j0: 64, w: 64},
		{m: 7, k: 31, alpha: 2, beta: 0.5, j0: 0, w: 7},
	}
	for _, v := range views {
		v.n = v.w
		cs = append(cs, v)
	}
	return append(cs, big...)
}

// bf16Gemm64 returns, in float64, C = alpha·A·B + beta·C + bias for row-major
// m×k A and k×n B (leading dimensions lda, ldb), each operand passed through
// round first, and the error scale |alpha|·(|A|·|B|) + |beta·C| + |bias| of
// every element (C's leading dimension ldc; only the m×n block is written).
func bf16Gemm64(m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int,
	bias []float32, round func(float32) float32) (want, scale []float64) {
	want = make([]float64, len(c))
	scale = make([]float64, len(c))
	for i := range m {
		for j := range n {
			var dot, abs float64
			for r := range k {
				p := float64(round(a[i*lda+r])) * float64(round(b[r*ldb+j]))
				dot += p
				abs += math.Abs(p)
			}
			v, s := float64(alpha)*dot, math.Abs(float64(alpha))*abs
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
				s += math.Abs(float64(beta) * float64(c[i*ldc+j]))
			}
			if bias != nil {
				v += float64(bias[j])
				s += math.Abs(float64(bias[j]))
			}
			want[i*ldc+j], scale[i*ldc+j] = v, s
		}
	}
	return want, scale
}

// roundRef rounds as bf16Ref does, to a float32.
func roundRef(f float32) float32 { return math.Float32frombits(uint32(bf16Ref(f)) << 16) }

func TestGemmBF16(t *testing.T) {
	var kernels []BF16Kernel
	for _, name := range bf16Names {
		kn, err := BF16KernelNamed(name)
		if err != nil {
			t.Logf("kernel=%s skipped: %v", name, err)
			continue
		}
		kernels = append(kernels, kn)
	}
	for i, tc := range bf16Cases(testing.Short()) {
		if raceEnabled && i%7 != 0 {
			continue // the float64 references are slow under the race detector: a seventh of the cases
		}
		t.Run(tc.String(), func(t *testing.T) { testGemmBF16(t, kernels, tc) })
	}
}

// testGemmBF16 runs the product tc on each kernel (the references once).
func testGemmBF16(t *testing.T, kernels []BF16Kernel, tc bf16Case) {
	rng := newRand(uint64(tc.m*1_000_003 + tc.n*1009 + tc.k))
	nb := tc.n // B's columns: the whole matrix a view is taken of
	if tc.w > 0 {
		nb = tc.j0 + tc.w + 13
	}
	lda, ldc := tc.k+5, tc.n+3
	a := make([]float32, (tc.m-1)*lda+tc.k)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	w := make([]float32, tc.k*nb)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	var bias []float32
	if tc.bias {
		bias = make([]float32, nb)
		for i := range bias {
			bias[i] = float32(rng.NormFloat64())
		}
	}
	// C in NaN guard bands: before, in the row gaps (ldc > n) and after.
	const guard = 16
	c0 := make([]float32, guard+(tc.m-1)*ldc+tc.n+guard)
	nan := float32(math.NaN())
	for i := range c0 {
		c0[i] = nan
	}
	c := c0[guard : len(c0)-guard]
	for i := range tc.m {
		for j := range tc.n {
			c[i*ldc+j] = float32(rng.NormFloat64())
			if tc.beta == 0 && (i+j)%5 == 0 {
				c[i*ldc+j] = nan // not read with beta = 0
			}
		}
	}
	var snap snapshot
	snap.floats(a, w, bias)

	p, err := PackBF16(w, tc.k, nb)
	if err != nil {
		t.Fatal(err)
	}
	b, wb, bb := p, w, bias // the operands of the product: B, its float32 form, the bias
	if tc.w > 0 {
		if b, err = p.Cols(tc.j0, tc.w); err != nil {
			t.Fatal(err)
		}
		wb = w[tc.j0:]
		if bias != nil {
			bb = bias[tc.j0:]
		}
	}
	rounded, rscale := bf16Gemm64(tc.m, tc.n, tc.k, tc.alpha, a, lda, wb, nb, tc.beta, c, ldc, bb, roundRef)
	exact, escale := bf16Gemm64(tc.m, tc.n, tc.k, tc.alpha, a, lda, wb, nb, tc.beta, c, ldc, bb, func(f float32) float32 { return f })
	cbuf := make([]float32, len(c0))
	for _, kn := range kernels {
		if kn.id == bf16Pure && tc.m*tc.n*tc.k > 1<<24 {
			continue // the pure kernel is slow; the smaller shapes cover it
		}
		copy(cbuf, c0)
		if err := kn.GemmBF16(tc.m, tc.n, tc.k, tc.alpha, a, lda, b, tc.beta, cbuf[guard:len(cbuf)-guard], ldc, bb); err != nil {
			t.Fatal(err)
		}
		snap.check(t)
		const u = 1.0 / (1 << 24)
		bad := 0
		for i := range cbuf {
			r, j := (i-guard)/ldc, (i-guard)%ldc
			got := cbuf[i]
			if i < guard || i >= len(cbuf)-guard || j >= tc.n || r >= tc.m {
				if !math.IsNaN(float64(got)) {
					t.Fatalf("kernel=%s: C[%d] outside the product written: %g", kn.Name(), i-guard, got)
				}
				continue
			}
			e := i - guard
			// Accumulation in float32: k sums of exact products plus the epilogue.
			tight := float64(2*tc.k+8)*u*rscale[e] + 1e-30
			loose := 1.0/128*escale[e] + tight
			if d := math.Abs(float64(got) - rounded[e]); !(d <= tight) {
				if bad++; bad <= 3 {
					t.Errorf("kernel=%s: C[%d,%d] = %g, rounded reference %g (|Δ| %.3g > %.3g)", kn.Name(), r, j, got, rounded[e], d, tight)
				}
			}
			if d := math.Abs(float64(got) - exact[e]); !(d <= loose) {
				if bad++; bad <= 3 {
					t.Errorf("kernel=%s: C[%d,%d] = %g, exact reference %g (|Δ| %.3g > bf16 bound %.3g)", kn.Name(), r, j, got, exact[e], d, loose)
				}
			}
		}
		if bad > 3 {
			t.Errorf("kernel=%s: %d elements wrong", kn.Name(), bad)
		}
	}
}

// TestGemmBF16Agree holds the kernels this CPU runs to each other on one
// product: any two differ only in the order of their float32 sums.
func TestGemmBF16Agree(t *testing.T) {
	const m, n, k = 70, 96, 600
	rng := newRand(7)
	a, w, bias := make([]float32, m*k), make([]float32, k*n), make([]float32, n)
	for _, s := range [][]float32{a, w, bias} {
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
	}
	p, err := PackBF16(w, k, n)
	if err != nil {
		t.Fatal(err)
	}
	_, scale := bf16Gemm64(m, n, k, 1, a, k, w, n, 0, make([]float32, m*n), n, bias, roundRef)
	ref := make([]float32, m*n)
	if err := (BF16Kernel{bf16Pure}).GemmBF16(m, n, k, 1, a, k, p, 0, ref, n, bias); err != nil {
		t.Fatal(err)
	}
	names := BF16Kernels()
	t.Logf("BF16 kernels: %s; missing: %s", strings.Join(names, ", "), strings.Join(BF16Missing(), "; "))
	for _, name := range names {
		kn, _ := BF16KernelNamed(name)
		c := make([]float32, m*n)
		if err := kn.GemmBF16(m, n, k, 1, a, k, p, 0, c, n, bias); err != nil {
			t.Fatal(err)
		}
		for i := range c {
			if d := math.Abs(float64(c[i] - ref[i])); d > 4*float64(k)*scale[i]/(1<<24)+1e-30 {
				t.Fatalf("%s: C[%d] = %g, pure %g", name, i, c[i], ref[i])
			}
		}
	}
}

// TestBF16Packed checks the packed layout: its size, and that a view of
// columns is the same packed matrix as the columns packed on their own.
func TestBF16Packed(t *testing.T) {
	const k, n = 77, 100
	rng := newRand(3)
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	p, err := PackBF16(w, k, n)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 96 * 112; p.Bytes() != want {
		t.Errorf("Bytes() = %d, want %d (k padded to 96, n to 112)", p.Bytes(), want)
	}
	wt := make([]float32, n*k) // the transpose, for PackBF16Trans
	for r := range k {
		for j := range n {
			wt[j*k+r] = w[r*n+j]
		}
	}
	pt, err := PackBF16Trans(wt, n, k)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pt.data) != fmt.Sprint(p.data) {
		t.Error("PackBF16Trans of the transpose differs from PackBF16")
	}
	pf, err := PackBF16Func(k, n, func(r, j int) float32 { return w[r*n+j] })
	if err != nil || fmt.Sprint(pf.data) != fmt.Sprint(p.data) {
		t.Errorf("PackBF16Func differs from PackBF16 (err %v)", err)
	}
	for _, v := range [][2]int{{0, 100}, {16, 40}, {32, 68}, {96, 4}, {48, 0}} {
		sub := make([]float32, k*v[1])
		for r := range k {
			copy(sub[r*v[1]:], w[r*n+v[0]:r*n+v[0]+v[1]])
		}
		q, err := PackBF16(sub, k, v[1])
		if err != nil {
			t.Fatal(err)
		}
		view, err := p.Cols(v[0], v[1])
		if err != nil {
			t.Fatal(err)
		}
		if view.K() != k || view.N() != v[1] || len(view.data) != len(q.data) {
			t.Fatalf("Cols(%d, %d) is %d×%d in %d values, want %d×%d in %d", v[0], v[1], view.K(), view.N(),
				len(view.data), k, v[1], len(q.data))
		}
		// The padding columns of a view hold its neighbours, which products
		// mask; the rest must be the columns packed alone.
		for i := range q.data {
			if j := i/(pure.BF16Panel*pure.BF16PaddedK(k))*pure.BF16Panel + i%(2*pure.BF16Panel)/2; j < v[1] && view.data[i] != q.data[i] {
				t.Fatalf("Cols(%d, %d): value %d (column %d) differs from the columns packed alone", v[0], v[1], i, j)
			}
		}
	}
}

func TestBF16Errors(t *testing.T) {
	w := make([]float32, 12*20)
	p, _ := PackBF16(w, 12, 20)
	a, c := make([]float32, 5*12), make([]float32, 5*20)
	for i := range c {
		c[i] = 7
	}
	kn := BF16Default()
	for _, tc := range []struct {
		name, want string
		err        func() error
	}{
		{"pack k<0", "k=-1", func() error { _, err := PackBF16(w, -1, 20); return err }},
		{"pack n huge", "n=4294967296", func() error { _, err := PackBF16(w, 1, 1<<32); return err }},
		{"pack short w", "len(w)=240", func() error { _, err := PackBF16(w, 12, 21); return err }},
		{"trans short w", "len(w)=240", func() error { _, err := PackBF16Trans(w, 21, 12); return err }},
		{"view j0", "j0=8", func() error { _, err := p.Cols(8, 4); return err }},
		{"view past n", "[16, 16+5)", func() error { _, err := p.Cols(16, 5); return err }},
		{"m<0", "m=-1", func() error { return kn.GemmBF16(-1, 20, 12, 1, a, 12, p, 0, c, 20, nil) }},
		{"n", "n=19", func() error { return kn.GemmBF16(5, 19, 12, 1, a, 12, p, 0, c, 20, nil) }},
		{"k", "k=13", func() error { return kn.GemmBF16(5, 20, 13, 1, a, 13, p, 0, c, 20, nil) }},
		{"lda", "lda=11", func() error { return kn.GemmBF16(5, 20, 12, 1, a, 11, p, 0, c, 20, nil) }},
		{"ldc", "ldc=19", func() error { return kn.GemmBF16(5, 20, 12, 1, a, 12, p, 0, c, 19, nil) }},
		{"short a", "len(a)=60", func() error { return kn.GemmBF16(5, 20, 12, 1, a, 13, p, 0, c, 20, nil) }},
		{"short c", "len(c)=100", func() error { return kn.GemmBF16(5, 20, 12, 1, a, 12, p, 0, c, 21, nil) }},
		{"short bias", "len(bias)=3", func() error { return kn.GemmBF16(5, 20, 12, 1, a, 12, p, 0, c, 20, make([]float32, 3)) }},
		{"zero B", "B holds 0", func() error { return kn.GemmBF16(0, 0, 0, 1, a, 12, BF16Packed{}, 0, c, 20, nil) }},
		{"kernel", `"tpu"`, func() error { _, err := BF16KernelNamed("tpu"); return err }},
	} {
		err := tc.err()
		if tc.name == "zero B" { // a 0×0 product is fine
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
	for i := range c {
		if c[i] != 7 {
			t.Fatalf("a failed call wrote C[%d]", i)
		}
	}
	// k = 0: C = beta·C + bias.
	p0, _ := PackBF16(nil, 0, 3)
	c0 := []float32{1, 2, 3}
	if err := kn.GemmBF16(1, 3, 0, 1, nil, 1, p0, 2, c0, 3, []float32{1, 1, 1}); err != nil || fmt.Sprint(c0) != "[3 5 7]" {
		t.Errorf("k=0: C = %v, err %v; want [3 5 7]", c0, err)
	}
}

// TestBF16Env checks that XATTN_BF16 names a kernel: scripts/test.sh runs
// the tests once per kernel the CPU has with it set, and a name the CPU
// cannot run must not leave the tests on another kernel unnoticed.
func TestBF16Env(t *testing.T) {
	name := os.Getenv("XATTN_BF16")
	t.Logf("BF16Default: %s %s", BF16Default().Name(), BF16DefaultNote())
	if name != "" && name != "best" && BF16Default().Name() != name {
		t.Errorf("XATTN_BF16=%s but BF16Default is %s: %s", name, BF16Default().Name(), BF16DefaultNote())
	}
}

func TestGemmBF16Allocs(t *testing.T) {
	if raceEnabled {
		t.Skip("skipped: the race detector allocates")
	}
	const m, n, k = 40, 64, 96
	a, c, bias := make([]float32, m*k), make([]float32, m*n), make([]float32, n)
	p, _ := PackBF16(make([]float32, k*n), k, n)
	forBF16Kernels(t, func(t *testing.T, kn BF16Kernel) {
		if got := testing.AllocsPerRun(20, func() {
			if err := kn.GemmBF16(m, n, k, 1, a, k, p, 0, c, n, bias); err != nil {
				t.Fatal(err)
			}
		}); got != 0 {
			t.Errorf("%v allocations per call, want 0", got)
		}
	})
}

// TestGemmBF16Concurrent runs one kernel from many goroutines at once, more
// than there are threads, with goroutine preemption on (GODEBUG's default,
// asyncpreemptoff=0) and a CPU profile running, whose SIGPROF lands on
// threads inside the tile code (Linux saves and restores the tile state
// across signals and context switches): each call configures and releases
// its own tiles, so every result must equal the one a single call computes,
// bit for bit.
func TestGemmBF16Concurrent(t *testing.T) {
	if err := pprof.StartCPUProfile(io.Discard); err == nil {
		defer pprof.StopCPUProfile()
	} else {
		t.Logf("no CPU profile (signals) during the test: %v", err)
	}
	const m, n, k = 97, 80, 700
	rng := newRand(11)
	a, w := make([]float32, m*k), make([]float32, k*n)
	for _, s := range [][]float32{a, w} {
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
	}
	p, _ := PackBF16(w, k, n)
	forBF16Kernels(t, func(t *testing.T, kn BF16Kernel) {
		want := make([]float32, m*n)
		if err := kn.GemmBF16(m, n, k, 1, a, k, p, 0, want, n, nil); err != nil {
			t.Fatal(err)
		}
		// Each goroutine runs for about 300 ms (at least 3 calls), so that
		// the profile's signals and the scheduler meet calls in flight.
		g, end := 4*runtime.GOMAXPROCS(0), time.Now().Add(300*time.Millisecond)
		var wg sync.WaitGroup
		errs := make(chan string, g)
		for range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := make([]float32, m*n)
				for it := 0; it < 3 || time.Now().Before(end); it++ {
					if err := kn.GemmBF16(m, n, k, 1, a, k, p, 0, c, n, nil); err != nil {
						errs <- err.Error()
						return
					}
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
							errs <- fmt.Sprintf("C[%d] = %g, alone %g", i, c[i], want[i])
							return
						}
					}
					runtime.Gosched()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}

// TestGemmBF16Chunks checks that a row of C does not depend on how the
// product is split: the whole product and the same product in blocks of
// rows and of column panels (views of B) agree bit for bit, on every kernel,
// for each way the kernels finish a block (alpha = 1 with beta 0 or 1, with
// and without bias, and the general epilogue), with k over one block of the
// AMX strip and over two. xattn relies on it: a context projected once
// equals one projected with the call.
func TestGemmBF16Chunks(t *testing.T) {
	const m, n = 83, 80
	rng := newRand(5)
	for _, k := range []int{200, 700} {
		a, w, bias, c0 := make([]float32, m*k), make([]float32, k*n), make([]float32, n), make([]float32, m*n)
		for _, s := range [][]float32{a, w, bias, c0} {
			for i := range s {
				s[i] = float32(rng.NormFloat64())
			}
		}
		p, _ := PackBF16(w, k, n)
		t.Run(fmt.Sprintf("k=%d", k), func(t *testing.T) {
			forBF16Kernels(t, func(t *testing.T, kn BF16Kernel) {
				for _, mode := range []struct {
					alpha, beta float32
					bias        bool
				}{{1, 0, true}, {1, 0, false}, {1, 1, false}, {1, 1, true}, {0.5, 0.25, true}} {
					var bs []float32
					if mode.bias {
						bs = bias
					}
					whole := slices.Clone(c0)
					if err := kn.GemmBF16(m, n, k, mode.alpha, a, k, p, mode.beta, whole, n, bs); err != nil {
						t.Fatal(err)
					}
					parts := slices.Clone(c0)
					rows := []int{0, 13, 45, 77, m}
					cols := []int{0, 16, 48, n}
					for ri := 0; ri+1 < len(rows); ri++ {
						for ci := 0; ci+1 < len(cols); ci++ {
							r0, r1, j0, j1 := rows[ri], rows[ri+1], cols[ci], cols[ci+1]
							view, err := p.Cols(j0, j1-j0)
							if err != nil {
								t.Fatal(err)
							}
							var bv []float32
							if bs != nil {
								bv = bs[j0:]
							}
							if err := kn.GemmBF16(r1-r0, j1-j0, k, mode.alpha, a[r0*k:], k, view, mode.beta, parts[r0*n+j0:], n, bv); err != nil {
								t.Fatal(err)
							}
						}
					}
					for i := range whole {
						if math.Float32bits(whole[i]) != math.Float32bits(parts[i]) {
							t.Fatalf("k=%d alpha=%g beta=%g bias=%v: C[%d,%d] = %g whole, %g in blocks",
								k, mode.alpha, mode.beta, mode.bias, i/n, i%n, whole[i], parts[i])
						}
					}
				}
			})
		})
	}
}

// TestPackFunc checks that PackFunc packs, from an element function, the
// bits Pack packs from the float32 matrix on every BF16 backend, on shapes
// with partial panels and padded depth, and that the FP32 backends decline
// without calling the function.
func TestPackFunc(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, be := range All() {
		b, err := WithBF16(be, BF16Kernel{bf16Pure})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := PackFunc(be, 3, 3, func(int, int) float32 { t.Fatal("an FP32 backend called at"); return 0 }); ok {
			t.Errorf("%s: PackFunc on an FP32 backend reports packed weights", Kernels(be))
		}
		for _, nk := range [][2]int{{1, 1}, {16, 32}, {17, 33}, {40, 77}, {5, 0}} {
			n, k := nk[0], nk[1]
			w := make([]float32, n*k)
			for i := range w {
				w[i] = float32(rng.NormFloat64())
			}
			got, ok := PackFunc(b, n, k, func(r, c int) float32 { return w[r*k+c] })
			want := b.Pack(w, n, k)
			if !ok || got.layout != want.layout || got.n != want.n || got.k != want.k || !slices.Equal(got.bf.data, want.bf.data) {
				t.Errorf("%s %d×%d: PackFunc = %v (ok %t), Pack = %v", Kernels(b), n, k, got.bf.data, ok, want.bf.data)
			}
		}
	}
}
