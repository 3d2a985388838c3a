//go:build cgo && !purego

package blas

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/pure"
)

// variants lists the implementations of the row pass and attention core in
// this binary: every variant table of the OpenBLAS backend (each row pass
// with each GEMM kernel; ok is false for those the CPU lacks), then pure.
func variants() []variant {
	best := cpuVariant()
	var vs []variant
	for g := range gemmNames {
		for r := range rowNames {
			v := choice{rows: r, gemm: g}
			ok := r <= best.rows && g <= best.gemm
			var be Backend = openBLAS{}
			if ok {
				be = openBLAS{k: newKernels(v)}
			}
			vs = append(vs, variant{name: v.short(), be: be, ok: ok, packs: gemmNames[g] == "avx512"})
		}
	}
	return append(vs, variant{name: "pure", be: Pure(), ok: true})
}

func TestOpenBLASInfo(t *testing.T) {
	info := OpenBLASInfo()
	want, _ := envVariant(os.Getenv("XATTN_KERNELS"))
	if info.RowPass != rowNames[want.rows] || info.Variant != want.String() {
		t.Errorf("RowPass, Variant = %q, %q, want %q, %q", info.RowPass, info.Variant, rowNames[want.rows], want)
	}
	if want := map[int]string{0: "openblas", 1: "xattn-avx512"}[want.gemm]; info.Kernel != want {
		t.Errorf("Kernel = %q, want %q", info.Kernel, want)
	}
	if be, ok := Default().(openBLAS); !ok || be.k.v != want {
		t.Errorf("Default() = %#v, want the variant %v", Default(), want)
	}
	t.Logf("%+v; %d goroutines may be inside OpenBLAS at once", info, cap(sem))
}

// TestVariantNames holds the names of the Go side to the enums of shim.h
// and to the tables' own names.
func TestVariantNames(t *testing.T) {
	if len(rowNames) != tableRows || len(gemmNames) != tableGEMMs {
		t.Fatalf("%d row passes and %d GEMM kernels, shim.h has %d and %d", len(rowNames), len(gemmNames), tableRows, tableGEMMs)
	}
	for r := range rowNames {
		for g, gemm := range []string{"openblas", "xattn-avx512"} {
			k := newKernels(choice{rows: r, gemm: g})
			if k.rows != rowNames[r] || k.gemm != gemm || k.packs != (g == 1) || k.blas != (g == 0) {
				t.Errorf("table %v: %+v", k.v, *k)
			}
		}
	}
}

// TestExp holds the exponential of every C variant against math.Exp and
// pure.Exp: within 2 ulp of the correctly rounded result for normal
// results, within the smallest subnormal below, and the special values of
// pure.Exp.
func TestExp(t *testing.T) {
	var xs []float32
	for _, x := range []float64{0, math.Copysign(0, -1), 1, -1, 0.5, -0.5, math.Inf(1), math.Inf(-1), math.NaN(),
		88.72283935546875, 88.7228394, 88.72284, 89, -103.97208404541016, -103.972084, -103.97209, -104,
		-87.33654, -87.3365, -87.34, -100, -149 * math.Ln2, -126 * math.Ln2, 1e-8, -1e-8, 1e-40, 3.4e38, -3.4e38} {
		xs = append(xs, float32(x))
	}
	for u := uint64(0); u < 1<<32; u += 4099 { // every kind of bit pattern
		xs = append(xs, math.Float32frombits(uint32(u)))
	}
	for i := range 1 << 21 { // dense over the finite, non-zero range
		xs = append(xs, float32(-105+194*float64(i)/(1<<21)))
	}
	for _, v := range variants() {
		t.Run("isa="+v.name, func(t *testing.T) {
			o, ok := v.be.(openBLAS)
			if !ok {
				t.Skip("pure.Exp has its own tests")
			}
			if !v.ok {
				t.Skipf("CPU lacks %s", v.name)
			}
			got := make([]float32, len(xs))
			o.exp(got, xs)
			same, bad := 0, 0
			for i, x := range xs {
				g, p := got[i], pure.Exp(x)
				w64 := math.Exp(float64(x))
				w := float32(w64)
				var okv bool
				switch {
				case x != x:
					okv = g != g
				case x > 88.72283935546875:
					okv = math.IsInf(float64(g), 1)
				case x < -103.97208404541016:
					okv = g == 0 && !math.Signbit(float64(g))
				case w < 0x1p-126:
					okv = math.Abs(float64(g)-w64) <= 0x1p-149
				default:
					okv = ulpDiff(g, w) <= 2
				}
				if okv && ulpDiff(g, p) > 1 {
					okv = false
				}
				if !okv {
					t.Errorf("exp(%v) = %v, want %v (pure.Exp %v)", x, g, w, p)
					if bad++; bad > 10 {
						t.FailNow()
					}
				}
				if math.Float32bits(g) == math.Float32bits(p) {
					same++
				}
			}
			t.Logf("%d of %d results bit-identical to pure.Exp", same, len(xs))
		})
	}
}

// TestAllocs checks that the hot path does not allocate: arguments must not
// escape through the cgo calls (#cgo noescape) and the semaphore must not
// allocate.
func TestAllocs(t *testing.T) {
	f := func(n int) []float32 { s := make([]float32, n); testutil.Fill(newRand(1), s, -1, 1); return s }
	single := &Batch{Count: 1, M: 8, N: 9, K: 10, Alpha: 1, A: f(80), B: f(90), C: f(72), LDA: 10, LDB: 9, LDC: 9}
	batch := &Batch{Count: 3, M: 8, N: 9, K: 10, TransB: true, Alpha: 1, Beta: 1, A: f(240), B: f(270), C: f(216),
		LDA: 10, LDB: 10, LDC: 9, StrideA: 80, StrideB: 90, StrideC: 72}
	biased := &Batch{Count: 1, M: 8, N: 9, K: 10, Alpha: 1, A: f(80), B: f(90), C: f(72), LDA: 10, LDB: 9, LDC: 9, Bias: f(9)}
	keep := make([]bool, 77)
	for i := range keep {
		keep[i] = i%3 != 0
	}
	mx, sum, corr := f(8), f(8), f(8)
	rows := &Rows{M: 8, N: 77, S: f(8 * 77), LDS: 77, Bias: f(77), Keep: keep, Causal: true, Lim0: 40,
		Max: mx, Sum: sum, Corr: corr}
	a := &Attention{Batch: 1, Heads: 2, KVHeads: 1, Tq: 8, Tk: 77, DK: 16, DV: 16, Scale: 0.25,
		Q: f(8 * 32), K: f(77 * 16), V: f(77 * 16), O: f(8 * 32), LDQ: 32, LDK: 16, LDV: 16, LDO: 32,
		KeyLen: []int32{70}, Keep: keep, Bias: f(77), QBlock: 4, KVBlock: 32}
	scratch := f(a.ScratchLen())
	for _, v := range variants() {
		be, ok := v.be.(openBLAS)
		if !ok || !v.ok {
			continue
		}
		for _, tc := range []struct {
			name string
			call func()
		}{
			{"Sgemm/single", func() { be.Sgemm(single) }},
			{"Sgemm/batch", func() { be.Sgemm(batch) }},
			{"Sgemm/bias", func() { be.Sgemm(biased) }},
			{"SoftmaxRows", func() {
				for i := range mx {
					mx[i], sum[i] = float32(math.Inf(-1)), 0
				}
				be.SoftmaxRows(rows)
			}},
			{"ScaleRows", func() { be.ScaleRows(8, 9, single.C, 9, corr) }},
			{"Attend", func() { be.Attend(a, 0, a.Tasks(), scratch) }},
		} {
			t.Run(tc.name+"/isa="+v.name, func(t *testing.T) {
				if n := testing.AllocsPerRun(50, tc.call); n != 0 {
					t.Errorf("%v allocations per call, want 0", n)
				}
			})
		}
	}
}

// TestConcurrency runs many more goroutines than the semaphore admits
// through products large enough to take OpenBLAS memory buffers, and checks
// each against the same product run alone.
func TestConcurrency(t *testing.T) {
	const n = 128 // above OpenBLAS's small-matrix paths
	mk := func(seed uint64) *Batch {
		g := &Batch{Count: 1, M: n, N: n, K: n, Alpha: 1, A: make([]float32, n*n), B: make([]float32, n*n),
			C: make([]float32, n*n), LDA: n, LDB: n, LDC: n}
		rng := newRand(seed)
		testutil.Fill(rng, g.A, -1, 1)
		testutil.Fill(rng, g.B, -1, 1)
		return g
	}
	be := Default()
	want := mk(1)
	be.Sgemm(want)
	goroutines := 4 * cap(sem)
	if testing.Short() {
		goroutines = cap(sem) + 2
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := mk(1)
			g.Count, g.StrideA, g.StrideB, g.StrideC = 1, 0, 0, 0
			for range 2 {
				be.Sgemm(g)
				// The batch path (one C loop, two items reading the same A and B).
				h := *g
				h.Count, h.C, h.StrideC = 2, make([]float32, 2*n*n), n*n
				be.Sgemm(&h)
				if !testutil.SameBits(h.C[:n*n], want.C) || !testutil.SameBits(h.C[n*n:], want.C) {
					errs <- fmt.Errorf("goroutine %d: batch result differs from the lone product", i)
					return
				}
			}
			if !testutil.SameBits(g.C, want.C) {
				errs <- fmt.Errorf("goroutine %d: result differs from the lone product", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestConcurrencyCap(t *testing.T) {
	for _, tc := range []struct {
		config string
		want   int
	}{
		{"OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64", 32},
		{"OpenBLAS 0.3.26 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=512", 32},
		{"OpenBLAS 0.3.21 Haswell MAX_THREADS=2", 24},
		{"OpenBLAS MAX_THREADS=25", 13},
		{"OpenBLAS MAX_THREADS=1", 25},
		{"OpenBLAS 0.2.20 Haswell", 13},
		{"MAX_THREADS=x", 13},
		{"", 13},
	} {
		if got := concurrencyCap(tc.config); got != tc.want {
			t.Errorf("concurrencyCap(%q) = %d, want %d", tc.config, got, tc.want)
		}
	}
	// Whatever the build, the cap leaves half the free buffers alone.
	for n := 1; n <= 4096; n++ {
		got := concurrencyCap(fmt.Sprintf("OpenBLAS MAX_THREADS=%d", n))
		free := max(50, 2*n) - (n - 1)
		if got < 1 || 2*got > free || 2*concurrencyCap("") > free {
			t.Fatalf("MAX_THREADS=%d: cap %d (unknown build: %d) with %d free buffers", n, got, concurrencyCap(""), free)
		}
	}
}

// TestSoftmaxRowsNilS checks that the C row pass needs no S when N = 0, as
// checkRows allows.
func TestSoftmaxRowsNilS(t *testing.T) {
	for _, v := range variants() {
		if _, ok := v.be.(openBLAS); !ok || !v.ok {
			continue
		}
		mx, sum, corr := []float32{float32(math.Inf(-1)), 2}, []float32{0, 3}, []float32{7, 7}
		v.be.SoftmaxRows(&Rows{M: 2, N: 0, LDS: 1, Max: mx, Sum: sum, Corr: corr})
		if corr[0] != 1 || corr[1] != 1 || sum[1] != 3 || mx[1] != 2 {
			t.Errorf("isa=%s: max %v sum %v corr %v", v.name, mx, sum, corr)
		}
	}
}

// TestEnvVariant checks how XATTN_KERNELS is read: unset is the CPU's
// widest; an unknown name, or one beyond the CPU, is the widest and an error
// that quotes the value and wraps ErrVariant or ErrUnsupported.
func TestEnvVariant(t *testing.T) {
	best := cpuVariant()
	if v, err := envVariant(""); v != best || err != nil {
		t.Errorf("envVariant(\"\") = %v, %v, want %v, nil", v, err, best)
	}
	if v, err := envVariant("scalar"); v != (choice{0, 0}) || err != nil {
		t.Errorf("envVariant(scalar) = %v, %v", v, err)
	}
	for _, spec := range []string{"avx1024", "rows=avx2,gemm=cuda", "AVX2", " avx2", "rows=avx2,bogus=1"} {
		v, err := envVariant(spec)
		if v != best || !errors.Is(err, ErrVariant) || !strings.Contains(err.Error(), fmt.Sprintf("XATTN_KERNELS=%q", spec)) {
			t.Errorf("envVariant(%q) = %v, %v; want %v and an error wrapping ErrVariant that quotes it", spec, v, err, best)
		}
	}
	if best.rows < 2 {
		if _, err := envVariant("avx512"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("envVariant(avx512) on a CPU without it: %v, want ErrUnsupported", err)
		}
	}
}

// TestCheckEnv runs a child process with XATTN_KERNELS set to a name that
// names nothing: CheckEnv reports it, and Default runs the widest variant.
func TestCheckEnv(t *testing.T) {
	if spec, ok := os.LookupEnv("XATTN_TEST_CHECK_ENV"); ok {
		err := CheckEnv()
		if !errors.Is(err, ErrVariant) || !strings.Contains(err.Error(), spec) {
			t.Fatalf("XATTN_KERNELS=%s: CheckEnv() = %v, want an error naming it", spec, err)
		}
		if got := Default().(openBLAS).k.v; got != cpuVariant() {
			t.Fatalf("Default() runs %v, want the widest, %v", got, cpuVariant())
		}
		return
	}
	if err := CheckEnv(); err != nil && os.Getenv("XATTN_KERNELS") == "" {
		t.Fatalf("CheckEnv() = %v with XATTN_KERNELS unset", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCheckEnv$", "-test.count=1")
	cmd.Env = append(os.Environ(), "XATTN_KERNELS=avx9000", "XATTN_TEST_CHECK_ENV=avx9000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
